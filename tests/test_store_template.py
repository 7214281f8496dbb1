"""A new SQLite store starts as a copy of a migrated template: it must be the store MLflow itself
would have made, which its client, its UI and its upgrade command open as usual."""

import os
import sqlite3
import subprocess
import sys

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def schema(path):
    """Every table and index of a SQLite database with its definition's clauses (as a sorted list:
    a migration that rebuilds a table writes its constraints in no fixed order, even two stores
    MLflow migrates in place differ so), and its migration head."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        objects = sorted((kind, name, tuple(sorted(part.strip().rstrip(",") for part in (sql or "").splitlines())))
                         for kind, name, sql in rows)
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return objects, head


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(folder))
    return folder


def test_a_store_from_the_template_is_the_store_mlflow_makes(tmp_path, cache, monkeypatch):
    import mlflow

    from orchestrator import tracking

    copied = tmp_path / "copied" / "mlflow.db"
    tracking.ensure_store(f"sqlite:///{copied}")
    assert list(cache.glob("mlflow-*-store.db")), "no template was made"
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", "/proc/no-such-cache")  # no template: migrated in place
    migrated = tmp_path / "migrated" / "mlflow.db"
    tracking.ensure_store(f"sqlite:///{migrated}")

    (copied_objects, copied_head), (migrated_objects, migrated_head) = schema(copied), schema(migrated)
    assert copied_head == migrated_head
    assert set(copied_objects) ^ set(migrated_objects) == set()
    # MLflow's own Default experiment, at the copy's artifact location (not the template's)
    (default,) = mlflow.MlflowClient(f"sqlite:///{copied}").search_experiments()
    (expected,) = mlflow.MlflowClient(f"sqlite:///{migrated}").search_experiments()
    assert (default.experiment_id, default.name, default.artifact_location) == \
           (expected.experiment_id, expected.name, expected.artifact_location)


def test_a_copied_store_takes_runs_and_mlflow_db_upgrade(tmp_path, cache):
    import mlflow

    from orchestrator import tracking

    store = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{store}"
    tracking.ensure_store(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}")  # makes the template
    tracking.ensure_store(uri)  # a copy of it
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("e")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "m", 1.5)
    client.set_terminated(run.info.run_id)
    upgrade = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri],
                             capture_output=True, text=True, timeout=300)
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    again = mlflow.MlflowClient(uri).get_run(run.info.run_id)
    assert again.data.metrics == {"m": 1.5} and again.info.status == "FINISHED"


def test_a_template_that_cannot_be_written_falls_back_to_migrating(tmp_path, monkeypatch):
    from orchestrator import tracking

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", "/proc/no-such-cache")
    assert tracking.store_template() is None
    store = tmp_path / "mlflow.db"
    tracking.ensure_store(f"sqlite:///{store}")
    assert schema(store)[1]
