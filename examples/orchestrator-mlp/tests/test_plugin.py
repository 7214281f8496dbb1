"""The plugin's tests: orchestrator's contract suites, plus what is particular to it."""

from __future__ import annotations

import mlflow

from orchestrator.testing import DataContract, ModelContract, train_once


class TestMLP(ModelContract):
    name = "mlp"


class TestMoons(DataContract):
    name = "moons"


def test_mlp_separates_the_moons(tmp_path):
    result = train_once(tmp_path, "model=mlp", "optimizer=adam", "trainer.max_epochs=30")
    assert result.metrics["test/accuracy"] >= 0.95


def test_callback_and_run_end_hook_reach_the_run(tmp_path):
    result = train_once(tmp_path, "model=mlp", "model.hidden=[8]")
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert "time/epoch_seconds" in run.data.metrics
    assert run.data.tags["orchestrator_mlp.hidden"] == "[8]"


def test_yaml_preset_is_an_option(tmp_path):
    result = train_once(tmp_path, "model=mlp_wide")
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.data.params["model.hidden"] == "[256, 256]"
