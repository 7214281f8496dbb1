"""Multirun sweeps: one parent MLflow run per sweep with a nested child per job, for the basic
and the joblib launcher and the Optuna sweeper; experiment presets; output folders; plots."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import mlflow
import pytest

from conftest import all_runs, cli, store_uri


def parent_and_children(uri: str):
    runs = all_runs(uri)
    parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1  # every other run is nested under the parent
    return parent, children


def artifact_text(uri: str, run_id: str, name: str) -> str:
    mlflow.set_tracking_uri(uri)
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{name}")


def test_basic_sweep_is_one_parent_with_a_child_per_job_and_a_summary(tmp_path):
    result = cli("-m", "model=linear,logistic", "optimizer=gd,minibatch,adam", "trainer.max_epochs=2",
                 "tracking.log_model=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = store_uri(tmp_path)
    parent, children = parent_and_children(uri)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "sweep model=linear,logistic optimizer=gd,minibatch,adam trainer.max_epochs=2 tracking.log_model=false"
    assert parent.data.params["sweep.optimizer"] == "gd,minibatch,adam"
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(int(c.data.tags["orchestrator.sweep.job"]) for c in children) == list(range(6))
    # two tasks: each summarised by its own metric, with its own best run
    by_id = {c.info.run_id: c for c in children}
    best_regression = by_id[parent.data.tags["best_run_id.regression"]]
    best_classification = by_id[parent.data.tags["best_run_id.classification"]]
    assert best_regression.data.tags["orchestrator.task"] == "regression"
    assert parent.data.metrics["best/regression/val/loss"] == min(
        c.data.metrics["val/loss"] for c in children if c.data.tags["orchestrator.task"] == "regression")
    assert parent.data.metrics["best/classification/val/accuracy"] == max(
        c.data.metrics["val/accuracy"] for c in children if c.data.tags["orchestrator.task"] == "classification")
    assert best_classification.data.tags["orchestrator.model"] == "logistic"
    rows = list(csv.DictReader(io.StringIO(artifact_text(uri, parent.info.run_id, "summary.csv"))))
    assert {r["run_id"] for r in rows} == set(by_id)
    summary = artifact_text(uri, parent.info.run_id, "summary.txt")
    assert "regression (3 runs, ranked by val/loss, min)" in summary
    assert "classification (3 runs, ranked by val/accuracy, max)" in summary
    assert summary.strip() in result.stdout  # the terminal shows the same table
    plots = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/sweep_classification.png", "plots/sweep_regression.png"}


def test_joblib_sweep_nests_runs_from_worker_processes(tmp_path):
    result = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=logistic",
                 "optimizer=gd,adam", "regularizer=none,l2", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = parent_and_children(store_uri(tmp_path))
    assert parent.data.tags["orchestrator.launcher"] == "JoblibLauncher"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]


def test_optuna_search_survives_a_diverging_trial_and_logs_the_best_parameters(tmp_path):
    result = cli("hparams_search=linear_optuna", "hydra.sweeper.n_trials=10",
                 "hydra.sweeper.sampler.n_startup_trials=10",
                 "optimizer.lr=choice(0.05,0.2,0.5,4.0)",
                 "trainer.max_epochs=40", "tracking.log_model=false", "tracking.plots=false", cwd=tmp_path)
    parent, children = parent_and_children(store_uri(tmp_path))
    assert len(children) == 10
    failed = [c for c in children if c.info.status == "FAILED"]
    assert failed, "no trial diverged"
    assert all("diverged" in c.data.tags["error"] and c.data.params["optimizer.lr"] == "4.0" for c in failed)
    assert result.returncode == 1 and f"{len(failed)} of 10 jobs failed" in result.stderr
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["orchestrator.sweeper"] == "OptunaSweeper"
    assert parent.data.params["best_params.optimizer.lr"] in {"0.05", "0.2", "0.5"}
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert parent.data.metrics["best_value"] == pytest.approx(min(c.data.metrics["val/loss"] for c in finished))


@pytest.mark.parametrize("preset,expected", [
    ("linear_regression", {"model": "linear", "optimizer": "gd", "data": "regression", "max_epochs": 1000}),
    ("logistic_regression", {"model": "logistic", "optimizer": "gd", "data": "classification"}),
    ("softmax_digits", {"model": "logistic", "optimizer": "adam", "data": "digits"}),
    ("cnn_digits", {"model": "cnn", "optimizer": "adam", "data": "digits", "max_epochs": 20}),
])
def test_experiment_presets_are_one_word_recipes(compose, preset, expected):
    cfg = compose(f"experiment={preset}")
    for group in ("model", "optimizer", "data"):
        assert cfg[group]._name_ == expected[group]
    if "max_epochs" in expected:
        assert cfg.trainer.max_epochs == expected["max_epochs"]
    assert cfg.tracking.run_name == preset


def test_experiment_preset_trains(tmp_path):
    result = cli("experiment=logistic_regression", "trainer.max_epochs=50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.run_name == "logistic_regression" and run.data.metrics["test/accuracy"] > 0.75


def test_runs_started_in_the_same_instant_get_their_own_output_folders(tmp_path):
    command = [sys.executable, "-m", "orchestrator", "--cfg", "hydra", "--resolve"]
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    dirs = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        line = next(l for l in out.splitlines() if l.strip().startswith("dir: outputs/"))
        dirs.add(line.split("dir:")[1].strip())
    assert len(dirs) == 2


def test_runs_log_plots_for_their_task(tmp_path):
    result = cli("-m", "model=linear,logistic", "trainer.max_epochs=3", "tracking.log_model=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    uri = store_uri(tmp_path)
    _, children = parent_and_children(uri)
    client = mlflow.MlflowClient(uri)
    for child in children:
        plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
        task_plot = ("plots/confusion_matrix.png" if child.data.tags["orchestrator.task"] == "classification"
                     else "plots/predicted_vs_true.png")
        assert plots == {"plots/learning_curves.png", task_plot}
    # not a terminal: no progress bar in the output
    assert "Epoch 0:" not in result.stdout + result.stderr


COUNT_COMPOSITIONS = '''
import sys

from hydra._internal.config_loader_impl import ConfigLoaderImpl

compositions = []
compose = ConfigLoaderImpl.load_sweep_config


def counted(self, master_config, sweep_overrides):
    compositions.append(list(sweep_overrides))
    return compose(self, master_config, sweep_overrides)


ConfigLoaderImpl.load_sweep_config = counted
from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = ["orchestrator", *sys.argv[1:]]
    try:
        main()
    finally:
        print("compositions:", len(compositions))
'''


def test_each_job_of_a_basic_sweep_is_composed_once_and_gets_its_own_config(tmp_path):
    """Hydra checks that every job composes, then launches each: the composition made for the
    check is the one launched (sweep.compose_each_job_once), so three jobs cost three."""
    script = tmp_path / "count.py"
    script.write_text(COUNT_COMPOSITIONS)
    result = subprocess.run([sys.executable, str(script), "-m", "seed=3,4,5", "model=linear", "data.n_samples=200",
                             "trainer.max_epochs=1", "tracking.plots=false", "tracking.log_model=false"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compositions: 3" in result.stdout
    _, children = parent_and_children(store_uri(tmp_path))
    assert sorted((c.data.tags["orchestrator.sweep.job"], c.data.params["seed"]) for c in children) == \
        [("0", "3"), ("1", "4"), ("2", "5")]


def test_runs_carry_mlflow_s_own_tags_and_their_model_is_in_their_experiment(tmp_path):
    """Runs are created with MLflow's client (so the sweep's recorder can end them), with the
    user, source and name tags MLflow's fluent API would add; each logged model is in its run's
    experiment, where runs:/<id>/model finds it."""
    result = cli("-m", "model=linear", "seed=0,1", "trainer.max_epochs=2", "tracking.experiment=tagged",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = store_uri(tmp_path)
    _, children = parent_and_children(uri)
    client = mlflow.MlflowClient(uri)
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.runName"] == child.info.run_name
        assert tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
        (model,) = client.search_logged_models([child.info.experiment_id],
                                               filter_string=f"source_run_id = '{child.info.run_id}'")
        assert model.experiment_id == child.info.experiment_id
