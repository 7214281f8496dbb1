"""A sweep's recorder (orchestrator.recorder): the jobs of a basic-launcher sweep hand their
figures and their run's end to a second process. What a user relies on: when the command
returns every run is complete (FINISHED only with its figures and model), a figure that cannot
be drawn makes its run FAILED with the reason, and a recorder that dies loses nothing."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from conftest import cli, store_uri
from orchestrator import recorder
from orchestrator.lifecycle import FAILED, FINISHED
from orchestrator.tracking import MLflowTracker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_sweep_returns_with_every_run_complete(tmp_path):
    result = cli("-m", "model=linear,logistic", "seed=0,1", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(store_uri(tmp_path))
    experiment = client.get_experiment_by_name("orchestrator")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    mlflow.set_tracking_uri(store_uri(tmp_path))
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == FINISHED
        task_plot = ("plots/confusion_matrix.png" if child.data.tags["orchestrator.task"] == "classification"
                     else "plots/predicted_vs_true.png")
        assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/learning_curves.png", task_plot}
        mlflow.pyfunc.load_model(f"runs:/{run_id}/model")


@pytest.fixture
def store(tmp_path):
    tracker = MLflowTracker(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    yield tracker
    recorder.wait(timeout=60)


def a_run(tracker: MLflowTracker, points: int = 3):
    run = tracker.start_run("orchestrator", "a run", {})
    run.log_points([(key, 1.0 / (step + 1), 0, step) for step in range(points) for key in ("train/loss", "val/loss")])
    return run


def regression_plots(n: int = 20) -> dict:
    truth = np.linspace(0.0, 1.0, n)
    return {"task": "regression", "num_classes": None, "y_true": truth, "y_pred": truth + 0.01}


def status_of(tracker: MLflowTracker, run_id: str) -> tuple[str, dict, set]:
    record = tracker.client.get_run(run_id)
    figures = {a.path for a in tracker.client.list_artifacts(run_id, "plots")}
    return record.info.status, record.data.tags, figures


def test_the_recorder_draws_and_ends_each_run_it_is_handed(store):
    recorder.start(store.uri)
    runs = [a_run(store) for _ in range(3)]
    for run in runs:
        recorder.finish(store, run, regression_plots())
    recorder.wait()
    assert not recorder.active()
    for run in runs:
        status, _, figures = status_of(store, run.run_id)
        assert status == FINISHED
        assert figures == {"plots/learning_curves.png", "plots/predicted_vs_true.png"}


def test_a_figure_that_cannot_be_drawn_fails_its_run_with_the_reason(store):
    recorder.start(store.uri)
    good, bad = a_run(store), a_run(store)
    broken = {**regression_plots(), "task": "classification", "num_classes": 3,
              "y_true": np.array([0, 1, 7]), "y_pred": np.array([0, 1, 2])}  # class 7 of 3
    recorder.finish(store, bad, broken)
    recorder.finish(store, good, regression_plots())
    recorder.wait()
    status, tags, _ = status_of(store, bad.run_id)
    assert status == FAILED
    assert "IndexError" in tags["error"]
    assert status_of(store, good.run_id)[0] == FINISHED


def test_runs_held_by_a_recorder_that_died_are_drawn_and_ended_by_the_sweep(store):
    recorder.start(store.uri)
    first = a_run(store)
    recorder.finish(store, first, regression_plots())
    pool = recorder._pool
    for process in list(pool._processes.values()):  # the recorder process dies (OOM killer, kill -9)
        process.kill()
        process.join()
    later = a_run(store)
    recorder.finish(store, later, regression_plots())  # handed over after it died
    recorder.wait(timeout=60)
    for run in (first, later):
        status, tags, figures = status_of(store, run.run_id)
        assert status == FINISHED, tags.get("error")
        assert figures == {"plots/learning_curves.png", "plots/predicted_vs_true.png"}
