"""Job keys and sweep.reuse: every run is tagged with a key of what it trains (config without
tracking/sweep/resume/display settings, data digest, plugin versions); with sweep.reuse=true a job
whose key matches a FINISHED run is recorded, not trained, and returns the same metric."""

from __future__ import annotations

import csv
import io

import mlflow
import pytest
from omegaconf import OmegaConf

from conftest import all_runs, cli, store_uri

TINY = ["data.n_samples=80", "tracking.log_model=false", "tracking.plots=false"]
FOUR = ["model=linear,logistic", "optimizer=gd,adam"]
TRAINED = "`Trainer.fit` stopped"  # Lightning's line when a fit ends


def sweeps(uri: str):
    """``[(parent, children sorted by job number)]``, oldest sweep first."""
    runs = all_runs(uri)
    parents = sorted((r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"),
                     key=lambda r: r.info.start_time)
    return [(p, sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id),
                       key=lambda r: int(r.data.tags["orchestrator.sweep.job"]))) for p in parents]


def by_choice(children):
    return {(c.data.tags["orchestrator.model"], c.data.tags["orchestrator.optimizer"]): c for c in children}


def history(uri: str, run_id: str, key: str) -> int:
    return len(mlflow.MlflowClient(uri).get_metric_history(run_id, key))


def artifact_text(uri: str, run_id: str, name: str) -> str:
    mlflow.set_tracking_uri(uri)
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{name}")


def test_the_job_key_follows_training_settings_seed_and_data_not_tracking(tmp_path):
    swept = cli("-m", "seed=0,1", "data.n_samples=80,90", "trainer.max_epochs=2,3", "tracking.log_model=false",
                "tracking.plots=false", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr[-3000:]
    # the same config again in another process, with what only changes the record or the terminal
    single = cli("seed=0", "data.n_samples=80", "trainer.max_epochs=2", "tracking.log_model=false",
                 "tracking.plots=true", "tracking.run_name=another-name", "trainer.enable_progress_bar=false",
                 "sweep.mode=max", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    uri = store_uri(tmp_path)
    ((_, children),) = sweeps(uri)
    keys = {}
    for child in children:
        params = child.data.params
        setting = (params["seed"], params["data.n_samples"], params["trainer.max_epochs"])
        keys[setting] = child.data.tags["orchestrator.job_key"]
    assert len(keys) == 8 and len(set(keys.values())) == 8  # seed, data and a training setting each change it
    assert all(len(key) == 16 and int(key, 16) >= 0 for key in keys.values())
    (alone,) = [r for r in all_runs(uri) if "mlflow.parentRunId" not in r.data.tags
                and r.data.tags.get("orchestrator.sweep") != "parent"]
    assert alone.info.run_name == "another-name"
    assert alone.data.tags["orchestrator.job_key"] == keys[("0", "80", "2")]  # stable, tracking.* aside
    assert "orchestrator.reused_from" not in alone.data.tags  # sweep.reuse is off by default


def test_the_key_changes_with_the_plugin_version(compose, catalog):
    from dataclasses import replace

    from orchestrator.jobs import job_key
    from orchestrator.settings import validate

    cfg = compose("model=linear", "data=regression")
    checked = validate(cfg, catalog)
    key = job_key(cfg, "0123456789abcdef", checked.chosen, checked.callbacks)
    other = compose("model=linear", "data=regression", "tracking.plots=false", "sweep.reuse=true",
                    "trainer.enable_model_summary=true")
    validate(other, catalog)  # as a run does: the epochs left null become the optimizer's
    assert key == job_key(other, "0123456789abcdef", checked.chosen)
    assert key == job_key(compose("model=linear", "data=regression", "trainer.max_epochs=40"), "0123456789abcdef",
                          checked.chosen)  # the same job as gd's default epochs named
    assert key != job_key(cfg, "0123456789abcdee", checked.chosen)
    provided = checked.chosen["model"]
    newer = replace(provided, plugin=replace(provided.plugin, version=provided.plugin.version + ".post1"))
    assert key != job_key(cfg, "0123456789abcdef", {**checked.chosen, "model": newer})


def test_an_identical_sweep_with_reuse_trains_nothing_and_returns_the_same_metrics(tmp_path):
    first = cli("-m", *FOUR, "trainer.max_epochs=3", *TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert TRAINED in first.stdout + first.stderr
    again = cli("-m", *FOUR, "trainer.max_epochs=3", *TINY, "sweep.reuse=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert TRAINED not in again.stdout + again.stderr  # no Trainer was fitted
    plain = cli("-m", *FOUR, "trainer.max_epochs=3", *TINY, cwd=tmp_path)  # sweep.reuse left false
    assert plain.returncode == 0, plain.stderr[-3000:]
    uri = store_uri(tmp_path)
    (_, originals), (parent, reused), (_, retrained) = sweeps(uri)
    assert len(originals) == len(reused) == len(retrained) == 4
    originals, reused, retrained = by_choice(originals), by_choice(reused), by_choice(retrained)
    for choice, child in reused.items():
        original = originals[choice]
        assert child.info.status == "FINISHED" and child.info.run_id != original.info.run_id
        assert child.data.tags["orchestrator.reused_from"] == original.info.run_id
        assert child.data.tags["orchestrator.job_key"] == original.data.tags["orchestrator.job_key"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id  # the sweep's tree is complete
        for key in ("val/loss", "test/loss", "train/loss"):
            assert child.data.metrics[key] == original.data.metrics[key]
        assert history(uri, original.info.run_id, "train/loss") == 3
        assert history(uri, child.info.run_id, "train/loss") == 1  # the final value, copied: no epochs
        assert {**child.data.params, "sweep.reuse": "False"} == original.data.params  # its config, recorded
        # without sweep.reuse: trained again, same key, same metrics (CPU, same seed)
        again_trained = retrained[choice]
        assert "orchestrator.reused_from" not in again_trained.data.tags
        assert again_trained.data.tags["orchestrator.job_key"] == original.data.tags["orchestrator.job_key"]
        assert history(uri, again_trained.info.run_id, "train/loss") == 3
    assert TRAINED in plain.stdout + plain.stderr
    # the summary marks every job reused, linked to the run that trained it, with its metrics
    assert parent.data.tags["orchestrator.sweep.reused"] == "4" and parent.data.metrics["sweep/reused"] == 4
    rows = list(csv.DictReader(io.StringIO(artifact_text(uri, parent.info.run_id, "summary.csv"))))
    assert {r["reused_from"] for r in rows} == {c.info.run_id for c in originals.values()}
    for row in rows:
        original = next(c for c in originals.values() if c.info.run_id == row["reused_from"])
        assert float(row["test/loss"]) == original.data.metrics["test/loss"]
    summary = artifact_text(uri, parent.info.run_id, "summary.txt")
    assert "Reused (4 of 4 jobs" in summary and "reused_from" in summary
    assert all(f"reused run {c.info.run_id}" in summary for c in originals.values())
    # the best run is the reused child, and its metric is the original's
    best = parent.data.metrics["best/regression/val/loss"]
    assert best == min(c.data.metrics["val/loss"] for c in originals.values()
                       if c.data.tags["orchestrator.task"] == "regression")


def test_a_sweep_with_one_job_changed_reuses_three_and_trains_one(tmp_path):
    first = cli("-m", "seed=0,1,2,3", "trainer.max_epochs=3", *TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = cli("-m", "seed=0,1,2,7", "trainer.max_epochs=3", *TINY, "sweep.reuse=true", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    uri = store_uri(tmp_path)
    (_, originals), (parent, children) = sweeps(uri)
    originals = {c.data.params["seed"]: c for c in originals}
    children = {c.data.params["seed"]: c for c in children}
    for seed in ("0", "1", "2"):
        assert children[seed].data.tags["orchestrator.reused_from"] == originals[seed].info.run_id
        assert history(uri, children[seed].info.run_id, "train/loss") == 1
    assert "orchestrator.reused_from" not in children["7"].data.tags
    assert history(uri, children["7"].info.run_id, "train/loss") == 3  # trained
    assert children["7"].data.tags["orchestrator.job_key"] not in {
        c.data.tags["orchestrator.job_key"] for c in originals.values()}
    assert parent.data.tags["orchestrator.sweep.reused"] == "3"
    assert second.stdout.count(TRAINED) + second.stderr.count(TRAINED) == 1
    rows = list(csv.DictReader(io.StringIO(artifact_text(uri, parent.info.run_id, "summary.csv"))))
    assert sorted(bool(r["reused_from"]) for r in rows) == [False, True, True, True]


def test_failed_runs_are_never_reused_and_optuna_trials_get_the_reused_value(tmp_path):
    search = ["hparams_search=linear_optuna", "regularizer=l2", "regularizer.strength=choice(0.001)", *TINY,
              "sweep.reuse=true"]
    # lr=4.0 diverges: its run is FAILED, so the same trial in the next sweep trains again
    diverging = [*search, "optimizer.lr=choice(4.0)", "trainer.max_epochs=40"]
    assert cli(*diverging, "hydra.sweeper.n_trials=1", cwd=tmp_path).returncode == 1  # its one job failed
    again = cli(*diverging, "hydra.sweeper.n_trials=2", cwd=tmp_path)  # the study continues: one more trial
    assert again.returncode == 1 and "diverged" in again.stderr
    # three identical trials (a study of their own): the first trains, the other two reuse it
    found = cli(*search, "hydra.sweeper.n_trials=3", "optimizer.lr=choice(0.05)", "trainer.max_epochs=5",
                "hydra.sweeper.study_name=reused", cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-3000:]
    assert "Failed experiment" not in found.stdout + found.stderr  # every trial returned a value
    uri = store_uri(tmp_path)
    (_, failed_first), (_, failed_again), (parent, trials) = sweeps(uri)
    assert [c.info.status for c in failed_first + failed_again] == ["FAILED", "FAILED"]
    assert "orchestrator.reused_from" not in failed_again[0].data.tags
    trained, *reused = trials
    assert "orchestrator.reused_from" not in trained.data.tags
    assert [c.data.tags["orchestrator.reused_from"] for c in reused] == [trained.info.run_id] * 2
    results = OmegaConf.load(f"{parent.data.tags['orchestrator.sweep_dir']}/optimization_results.yaml")
    assert float(results.best_value) == pytest.approx(trained.data.metrics["val/loss"])
    assert parent.data.metrics["best_value"] == pytest.approx(trained.data.metrics["val/loss"])


def test_reuse_against_a_store_that_cannot_be_reached_exits_2_and_writes_nothing(tmp_path):
    """Nothing listens on the port: the sweep is refused before any job, naming the store."""
    import socket

    with socket.socket() as s:  # a free loopback port, closed again: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("-m", "seed=0,1", "sweep.reuse=true", f"tracking.uri=http://127.0.0.1:{port}", *TINY,
                 cwd=tmp_path, env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and f"127.0.0.1:{port}" in error
    assert "Traceback" not in result.stderr and not (tmp_path / "mlruns").exists()
