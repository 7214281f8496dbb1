"""``orchestrator sweep resume <parent run id>``: the jobs of a sweep that did not finish (FAILED,
KILLED, never started) run again under the same parent, with the recorded overrides and launcher;
FINISHED ones are not trained again, and the parent's summary covers every job once. Real
subprocess sweeps into a SQLite store; the refusals on runs written with chosen tags."""

from __future__ import annotations

import csv
import io
import json
import sys
import time

import mlflow
import pytest

from conftest import all_runs, cli, make_distribution, store_uri, with_site

QUICK = ["trainer.max_epochs=1", "data.n_samples=80", "tracking.log_model=false", "tracking.plots=false"]
TRAINED = "`Trainer.fit` stopped"  # Lightning's line when a fit ends

# A plugin that breaks the job with the seed named in the environment: it fails (FAIL_SEED) or
# its process is killed with SIGKILL (KILL_SEED: with the basic launcher, the whole sweep).
BREAKER = """
import os
import signal

from orchestrator import hookimpl


@hookimpl
def on_run_start(run, cfg):
    if str(cfg.seed) == os.environ.get("FAIL_SEED"):
        raise ConnectionError("the store went away")
    if str(cfg.seed) == os.environ.get("KILL_SEED"):
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    make_distribution(folder, "breaker", "1.0", {"breaker": "breaker"}, {"breaker.py": BREAKER})
    return folder


def sweep_runs(uri: str):
    """``(parent, children oldest first)`` of the store's one sweep."""
    runs = sorted(all_runs(uri), key=lambda r: r.info.start_time)
    (parent,) = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def summary_rows(uri: str, parent_id: str) -> list[dict]:
    mlflow.set_tracking_uri(uri)
    return list(csv.DictReader(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent_id}/summary.csv"))))


def seed(run) -> str:
    return run.data.params["seed"]


def test_a_failed_job_trains_again_under_the_same_parent_with_the_same_launcher(tmp_path, site):
    started = time.monotonic()
    first = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3", *QUICK, cwd=tmp_path,
                env=with_site(site, FAIL_SEED="1"))
    sweep_seconds = time.monotonic() - started
    assert first.returncode == 1 and "1 of 4 jobs failed" in first.stderr, first.stderr[-3000:]
    uri = store_uri(tmp_path)
    parent, before = sweep_runs(uri)
    assert sorted((seed(c), c.info.status) for c in before) == [
        ("0", "FINISHED"), ("1", "FAILED"), ("2", "FINISHED"), ("3", "FINISHED")]
    mlflow.set_tracking_uri(uri)
    recorded = json.loads(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/sweep.json"))
    assert recorded["hydra"][:2] == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert recorded["task"][0] == "seed=0,1,2,3"

    started = time.monotonic()
    resumed = cli("sweep", "resume", parent.info.run_id, cwd=tmp_path, env=with_site(site))  # no failure now
    resume_seconds = time.monotonic() - started
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out  # the recorded launcher and its settings
    assert out.count(TRAINED) == 1 and out.count("not trained again (sweep resume)") == 3
    print(f"\n4-job sweep (joblib, 2 workers): {sweep_seconds:.1f} s; resume training 1 job: {resume_seconds:.1f} s")

    parent_after, after = sweep_runs(uri)
    assert parent_after.info.run_id == parent.info.run_id and parent_after.info.status == "FINISHED"
    new = [c for c in after if c.info.run_id not in {b.info.run_id for b in before}]
    assert [(seed(c), c.info.status) for c in new] == [("1", "FINISHED")]  # one new child: the failed job
    old = {c.info.run_id: c for c in after}
    for child in before:  # the finished ones untouched; the failed one kept, superseded
        again = old[child.info.run_id]
        assert (again.info.status, again.info.end_time, again.data.metrics) == (
            child.info.status, child.info.end_time, child.data.metrics)
        assert again.data.tags.get("orchestrator.retried") == ("true" if seed(child) == "1" else None)
    tags = parent_after.data.tags
    assert (tags["orchestrator.sweep.children"], tags["orchestrator.sweep.failed"],
            tags["orchestrator.sweep.retried"], tags["orchestrator.sweep.resumed"]) == ("4", "0", "1", "1")
    rows = summary_rows(uri, parent.info.run_id)
    assert sorted((r["job"], r["status"]) for r in rows) == [(str(n), "FINISHED") for n in range(4)]
    finished_before = {c.info.run_id for c in before if c.info.status == "FINISHED"}
    assert {r["run_id"] for r in rows} == finished_before | {new[0].info.run_id}
    assert "error" not in tags  # the parent's summary is complete: nothing failed


def test_a_killed_sweep_is_closed_then_resumed_training_only_the_jobs_that_did_not_finish(tmp_path, site):
    started = time.monotonic()
    killed = cli("-m", "seed=0,1,2,3", *QUICK, cwd=tmp_path, env=with_site(site, KILL_SEED="2"))
    killed_seconds = time.monotonic() - started
    assert killed.returncode == -9, killed.stderr[-3000:]  # job 2 killed the launching process
    uri = store_uri(tmp_path)
    parent, before = sweep_runs(uri)
    assert parent.info.status == "RUNNING"
    assert sorted((seed(c), c.info.status) for c in before) == [("0", "FINISHED"), ("1", "FINISHED"), ("2", "RUNNING")]

    started = time.monotonic()
    resumed = cli("sweep", "resume", parent.info.run_id, cwd=tmp_path, env=with_site(site))
    resume_seconds = time.monotonic() - started
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"closed the parent {parent.info.run_id} as KILLED" in resumed.stdout, resumed.stdout
    assert out.count(TRAINED) == 2
    print(f"\nkilled sweep (2 of 4 jobs done): {killed_seconds:.1f} s; resume training 2 jobs: {resume_seconds:.1f} s")

    parent_after, after = sweep_runs(uri)
    assert parent_after.info.status == "FINISHED"
    new = [c for c in after if c.info.run_id not in {b.info.run_id for b in before}]
    assert sorted((seed(c), c.info.status) for c in new) == [("2", "FINISHED"), ("3", "FINISHED")]
    (dead,) = [c for c in after if c.info.status == "KILLED"]
    assert seed(dead) == "2" and dead.data.tags["orchestrator.retried"] == "true"
    tags = parent_after.data.tags
    assert (tags["orchestrator.sweep.children"], tags["orchestrator.sweep.failed"]) == ("4", "0")
    rows = summary_rows(uri, parent.info.run_id)
    assert sorted((r["job"], r["status"]) for r in rows) == [(str(n), "FINISHED") for n in range(4)]
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in before if c.info.status == "FINISHED"} | {
        c.info.run_id for c in new}


# Refusals: exit status 2, one paragraph, nothing written.

@pytest.fixture
def store(tmp_path):
    from orchestrator.tracking import MLflowTracker

    tracker = MLflowTracker(store_uri(tmp_path))
    experiment = tracker.client.create_experiment("orchestrator")

    def make(tags: dict, parent: str | None = None, record: bool = False) -> str:
        tags = {k: str(v) for k, v in tags.items()}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run_id = tracker.client.create_run(experiment, tags=tags).info.run_id
        if record:
            from orchestrator.sweep_resume import record as record_command

            record_command(tracker.attach(run_id), ["seed=0,1"], [])
        return run_id

    return tracker, make


def refused(monkeypatch, capsys, cwd, *args: str) -> str:
    """Run ``orchestrator sweep resume ARGS`` in this process; return its one-line refusal."""
    from orchestrator import sweep_resume
    from orchestrator.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["orchestrator", "sweep", "resume", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    err = capsys.readouterr().err
    assert ended.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: sweep resume"), err  # one paragraph
    assert sweep_resume.active is None
    return err


def test_resume_refuses_what_is_not_a_sweep_it_can_resume(tmp_path, store, monkeypatch, capsys):
    from orchestrator import orphans

    tracker, make = store
    parent = make({"orchestrator.sweep": "parent", "mlflow.runName": "sweep seed=0,1"}, record=True)
    tracker.client.set_terminated(parent, "FINISHED")
    child = make({"orchestrator.sweep.job": "0"}, parent=parent)
    alone = make({})
    old = make({"orchestrator.sweep": "parent"})  # a parent recorded before sweep.json existed
    live = make({"orchestrator.sweep": "parent", **orphans.owner_tags()}, record=True)  # this process: alive
    before = {r.info.run_id: (r.info.status, dict(r.data.tags)) for r in all_runs(store_uri(tmp_path))}

    err = refused(monkeypatch, capsys, tmp_path, child)
    assert f"{child}: that run is not a sweep's parent run" in err
    assert f"job 0 of sweep {parent}: orchestrator sweep resume {parent}" in err
    assert f"newest first: {live} (RUNNING" in err and f"{parent} (FINISHED, sweep seed=0,1)" in err  # available
    err = refused(monkeypatch, capsys, tmp_path, alone)
    assert "a run of its own" in err and f"orchestrator rerun {alone}" in err
    err = refused(monkeypatch, capsys, tmp_path, "0123456789abcdef")
    assert "0123456789abcdef: no run with that id in sqlite:///" in err and parent in err
    err = refused(monkeypatch, capsys, tmp_path, old)
    assert "records no command line (artifact sweep.json" in err and "sweep.reuse=true" in err
    err = refused(monkeypatch, capsys, tmp_path, live)
    assert "the sweep is still running: its parent" in err and "is running" in err
    err = refused(monkeypatch, capsys, tmp_path, parent, "model=cnn")
    assert "'model=cnn' is not understood" in err
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow would retry for minutes
    err = refused(monkeypatch, capsys, tmp_path, parent, "tracking.uri=http://127.0.0.1:9")
    assert "the store http://127.0.0.1:9 (given as tracking.uri) cannot be read" in err and "Nothing was started" in err
    after = {r.info.run_id: (r.info.status, dict(r.data.tags)) for r in all_runs(store_uri(tmp_path))}
    assert after == before  # nothing written

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    err = refused(monkeypatch, capsys, elsewhere, parent)
    assert f"there is no store at {elsewhere / 'mlruns' / 'mlflow.db'}" in err and "tracking.uri=" in err
    assert list(elsewhere.iterdir()) == []  # no empty store created


def test_resume_finds_the_store_given_after_the_id_as_a_subprocess(tmp_path, store):
    tracker, make = store
    alone = make({})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("sweep", "resume", alone, f"tracking.uri={store_uri(tmp_path)}", cwd=elsewhere)
    assert result.returncode == 2 and "is not a sweep's parent run" in result.stderr, result.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []


# Kills the launching process when the N-th run starts (counted in a file): an Optuna search
# under the basic launcher dies mid-way, one trial RUNNING.
COUNTER = """
import os
import signal
from pathlib import Path

from orchestrator import hookimpl


@hookimpl
def on_run_start(run, cfg):
    if not os.environ.get("KILL_AT"):
        return
    counter = Path(os.environ["KILL_COUNTER"])
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    if count == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resuming_a_killed_optuna_search_continues_its_study_under_the_same_parent(tmp_path):
    import optuna

    site = tmp_path / "site"
    make_distribution(site, "counter", "1.0", {"counter": "counter"}, {"counter.py": COUNTER})
    search = ["hparams_search=linear_optuna", "hydra.sweeper.n_trials=4", "trainer.max_epochs=2",
              "data.n_samples=80", "tracking.log_model=false", "tracking.plots=false"]
    killed = cli(*search, cwd=tmp_path, env=with_site(site, KILL_AT="3", KILL_COUNTER=str(tmp_path / "count")))
    assert killed.returncode == -9, killed.stderr[-3000:]
    uri = store_uri(tmp_path)
    parent, before = sweep_runs(uri)
    assert sorted(c.info.status for c in before) == ["FINISHED", "FINISHED", "RUNNING"]

    resumed = cli("sweep", "resume", parent.info.run_id, cwd=tmp_path, env=with_site(site))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    parent_after, after = sweep_runs(uri)
    assert parent_after.info.status == "FINISHED"
    finished = [c for c in after if c.info.status == "FINISHED"]
    assert len(finished) == 4  # the two trials done before the kill, and two more: n_trials in all
    assert {c.info.run_id for c in before if c.info.status == "FINISHED"} <= {c.info.run_id for c in finished}
    study = optuna.load_study(study_name="linear_optuna", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert parent_after.data.metrics["best_value"] == pytest.approx(min(c.data.metrics["val/loss"] for c in finished))
    best = study.best_trial.params  # a resumed search's best parameters are tags: params cannot change
    assert float(parent_after.data.tags["best_params.optimizer.lr"]) == pytest.approx(best["optimizer.lr"])
