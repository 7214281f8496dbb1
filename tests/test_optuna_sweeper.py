"""The Optuna sweeper shipped with orchestrator (``hydra/sweeper=optuna``, on current Optuna):
its study in a database that a second run of the same command continues, pruning, several
objectives, and what the parent run records. Real ``python -m orchestrator`` processes on a
SQLite store under ``tmp_path``."""

from __future__ import annotations

import json

import mlflow
import pytest

from conftest import all_runs, cli, store_uri

#: A small, fast search: every trial trains a few epochs on 80 points, nothing else is logged.
SMALL = ["hparams_search=linear_optuna", "data.n_samples=80", "tracking.log_model=false", "tracking.plots=false"]


def study(tmp_path, name="linear_optuna"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")


def parents(uri):
    runs = all_runs(uri)
    found = sorted((r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"),
                   key=lambda r: r.info.start_time)
    return [(p, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]) for p in found]


def artifact_paths(uri, run_id, folder):
    return {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run_id, folder)}


def test_the_search_space_syntax_maps_to_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from orchestrator.optuna_search import search_space

    distributions, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(0.001, 0.1))", "model.dropout": "interval(0.0, 0.5)",
         "model.hidden": "choice(32, 64, 128)", "trainer.max_epochs": "range(2, 8, 2)", "seed": "interval(1, 9)"},
        ["model.hidden=choice(16,32)", "trainer.min_epochs=1"])
    assert distributions["optimizer.lr"] == FloatDistribution(0.001, 0.1, log=True)
    assert distributions["model.dropout"] == FloatDistribution(0.0, 0.5)
    assert distributions["model.hidden"] == CategoricalDistribution([16, 32])  # the command line wins
    assert distributions["trainer.max_epochs"] == IntDistribution(2, 6, step=2)  # stop excluded, as Hydra's range
    assert distributions["seed"] == FloatDistribution(1.0, 9.0)  # Hydra's interval is floats: range() for integers
    assert fixed == {"trainer.min_epochs": "1"}


def test_a_second_run_continues_the_study_up_to_n_trials_and_the_parent_records_the_search(tmp_path):
    first = cli(*SMALL, "hydra.sweeper.n_trials=2", "trainer.max_epochs=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "mlruns" / "optuna.db").is_file()  # sweep.storage=null: beside the MLflow store
    second = cli(*SMALL, "hydra.sweeper.n_trials=3", "trainer.max_epochs=3", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 trial(s) ended before, 1 to run (n_trials=3)" in second.stderr
    third = cli(*SMALL, "hydra.sweeper.n_trials=3", "trainer.max_epochs=3", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "3 trial(s) ended before, 0 to run" in third.stderr
    found = study(tmp_path)
    assert [t.state.name for t in found.trials] == ["COMPLETE"] * 3
    assert len({tuple(sorted(t.params.items())) for t in found.trials}) == 3  # a continued seeded sampler asks anew
    uri = store_uri(tmp_path)
    sweeps = parents(uri)
    assert [len(children) for _, children in sweeps] == [2, 1, 0]
    for parent, children in sweeps:
        assert parent.info.status == "FINISHED" and parent.data.tags["orchestrator.sweeper"] == "OptunaSweeper"
        assert all(c.info.status == "FINISHED" for c in children)
    parent, children = sweeps[1]
    assert children[0].data.tags["optuna.trial"] == "2" and children[0].data.tags["optuna.study_name"] == "linear_optuna"
    # the best of the whole study, whichever run of the command found it
    assert parent.data.metrics["best_value"] == pytest.approx(found.best_value)
    assert parent.data.params["best_params.optimizer.lr"] == str(found.best_params["optimizer.lr"])
    assert parent.data.tags["optuna.best_trial"] == str(found.best_trial.number)
    assert parent.data.metrics["optuna/complete"] == 3
    assert artifact_paths(uri, parent.info.run_id, "optuna") >= {
        "optuna/param_importances.json", "optuna/parallel_coordinate.png", "optuna/best_params.json"}
    mlflow.set_tracking_uri(uri)
    importances = json.loads(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/optuna/param_importances.json"))
    assert set(importances["val/loss"]) == {"optimizer.lr", "regularizer.strength"}


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]],
                         ids=["in-process", "joblib"])
def test_pruned_trials_stop_early_end_finished_tagged_and_are_left_out_of_the_ranking(tmp_path, launcher):
    pruning = ["sweep.pruner=median", "+hydra.sweeper.pruner_kwargs.n_startup_trials=1", "trainer.max_epochs=5"]
    good = cli(*SMALL, *pruning, "hydra.sweeper.n_trials=1", "optimizer.lr=0.3", cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-3000:]
    # a learning rate far too small: worse than the first trial at every epoch, so pruned
    slow = cli(*SMALL, *pruning, *launcher, "hydra.sweeper.n_trials=3", "optimizer.lr=0.0001", cwd=tmp_path)
    assert slow.returncode == 0, slow.stderr[-3000:]
    found = study(tmp_path)
    assert [t.state.name for t in found.trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    uri = store_uri(tmp_path)
    (_, (kept,)), (parent, pruned) = parents(uri)
    assert len(pruned) == 2
    for run in pruned:
        assert run.info.status == "FINISHED" and run.data.tags["pruned"] == "true"
        stopped = int(run.data.tags["pruned_at_epoch"])
        assert stopped < 4  # stopped before trainer.max_epochs
        history = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "val/loss")
        assert len(history) == stopped + 1
    assert "pruned" not in kept.data.tags
    assert parent.data.tags["orchestrator.sweep.pruned"] == "2" and parent.data.tags["orchestrator.sweep.failed"] == "0"
    assert "best_run_id" not in parent.data.tags  # every run of this sweep was pruned: none ranks
    assert "Pruned (sweep.pruner; left out of the ranking)" in slow.stdout


def test_several_metrics_make_a_multi_objective_study_whose_pareto_front_the_parent_records(tmp_path):
    result = cli(*SMALL, "sweep.metric=[val/loss,time/fit_seconds]", "sweep.mode=null", "hydra.sweeper.n_trials=4",
                 "trainer.max_epochs=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = study(tmp_path)
    assert [d.name for d in found.directions] == ["MINIMIZE", "MINIMIZE"]
    assert len(found.trials) == 4 and all(t.state.name == "COMPLETE" for t in found.trials)
    uri = store_uri(tmp_path)
    ((parent, children),) = parents(uri)
    assert len(children) == 4
    assert "best_run_id" not in parent.data.tags and "best_value" not in parent.data.metrics
    front = {t.number for t in found.best_trials}
    assert set(map(int, parent.data.tags["optuna.pareto_front.trials"].split(","))) == front
    mlflow.set_tracking_uri(uri)
    recorded = json.loads(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/optuna/pareto_front.json"))
    by_trial = {c.data.tags["optuna.trial"]: c for c in children}
    for point in recorded:
        run = by_trial[str(point["trial"])]
        assert point["run_id"] == run.info.run_id
        assert point["values"]["val/loss"] == pytest.approx(run.data.metrics["val/loss"])
    # two workers took trials: jobs ran side by side, or (tiny jobs on a busy machine, that may
    # not overlap) at least in two worker processes, neither of them the sweeping one
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    pids = {c.data.tags.get("orchestrator.pid") for c in children}
    assert parent.data.tags.get("orchestrator.pid") not in pids
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])) or len(pids) >= 2


@pytest.mark.parametrize("args,words", [
    (["sweep.pruner=mediann"], ["sweep.pruner='mediann'", "none, median, hyperband", "did you mean 'median'"]),
    (["sweep.pruner=median", "sweep.metric=[val/loss,time/fit_seconds]", "sweep.mode=null"],
     ["sweep.pruner=median cannot be used with 2 objectives", "sweep.pruner=none"]),
    (["tracking.uri=http://127.0.0.1:9"], ["sweep.storage is required", "http://127.0.0.1:9", "postgresql"]),
    (["hydra.sweeper.direction=maximize"], ["contradicts sweep.mode=min"]),
], ids=["unknown pruner", "pruner with two objectives", "tracking server without storage", "direction and mode"])
def test_a_search_that_cannot_work_is_refused_before_anything_is_recorded(tmp_path, args, words):
    result = cli(*SMALL, "hydra.sweeper.n_trials=2", *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    assert not (tmp_path / "mlruns").exists()


def test_the_grid_sampler_ends_the_search_when_its_grid_is_done(tmp_path):
    """Optuna's grid sampler stops its study once every point has been tried: the search ends
    there, before n_trials, with every grid point a FINISHED run."""
    result = cli("hparams_search=cnn_optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=6",
                 "trainer.max_epochs=1", "tracking.log_model=false", "tracking.plots=false",
                 "optimizer.lr=choice(0.003,0.01)", "model.hidden=choice(32)", "model.dropout=choice(0.0)",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ((parent, children),) = parents(store_uri(tmp_path))
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.003", "0.01"]
    assert all(c.info.status == "FINISHED" for c in children) and parent.info.status == "FINISHED"
    assert len(study(tmp_path, "cnn_optuna").trials) == 2
