"""Every sensible built-in model x optimizer x regularizer, trained by a real sweep of
``python -m orchestrator -m`` on tiny data, leaves one complete FINISHED MLflow run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import all_runs, cli, store_uri

MODELS = {"linear": "regression", "logistic": "classification", "cnn": "digits"}
OPTIMIZERS = ["gd", "minibatch", "adam"]
REGULARIZERS = ["none", "l1", "l2", "elasticnet"]
COMBINATIONS = list(itertools.product(MODELS, OPTIMIZERS, REGULARIZERS))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One multirun over all combinations (each model on its own default data)."""
    root = tmp_path_factory.mktemp("sweep")
    result = cli(
        "-m",
        f"model={','.join(MODELS)}",
        f"optimizer={','.join(OPTIMIZERS)}",
        f"regularizer={','.join(REGULARIZERS)}",
        "trainer.max_epochs=2",
        cwd=root,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    uri = store_uri(root)
    runs = {
        (r.data.tags["orchestrator.model"], r.data.tags["orchestrator.optimizer"], r.data.tags["orchestrator.regularizer"]): r
        for r in all_runs(uri) if r.data.tags.get("orchestrator.sweep") != "parent"
    }
    return uri, runs, result


def test_sweep_made_one_run_per_combination(sweep):
    uri, runs, _ = sweep
    assert len(all_runs(uri)) == len(COMBINATIONS) + 1  # and the sweep's parent run
    assert set(runs) == set(COMBINATIONS)


@pytest.mark.parametrize("model,optimizer,regularizer", COMBINATIONS)
def test_combination_run_is_complete(sweep, model, optimizer, regularizer):
    import mlflow

    uri, runs, _ = sweep
    run = runs[(model, optimizer, regularizer)]
    assert run.info.status == "FINISHED"
    # the resolved config as params, the chosen plugins as tags
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["model._name_"] == model
    assert params["optimizer.lr"]
    assert params["trainer.max_epochs"] == "2"
    assert tags["orchestrator.data"] == MODELS[model]
    assert tags["orchestrator.model.plugin"] == "builtin.models"
    assert tags["orchestrator.model.distribution"].startswith("orchestrator==")
    # train/val per epoch, test at the end
    for key in ("train/loss", "train/penalty", "val/loss", "test/loss"):
        assert np.isfinite(metrics[key]), key
    client = mlflow.MlflowClient(uri)
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2
    if regularizer == "none":
        assert metrics["train/penalty"] == 0
    else:
        assert metrics["train/penalty"] > 0
    if MODELS[model] == "regression":
        assert {"test/mse", "test/mae", "test/r2"} <= set(metrics)
    else:
        assert {"test/accuracy", "test/f1"} <= set(metrics)
    # a loadable model
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    example = loaded.input_example
    assert len(loaded.predict(example)) == len(example)
