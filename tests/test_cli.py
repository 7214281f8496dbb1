"""The command line as a user meets it: real ``python -m orchestrator`` processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import all_runs, cli, store_uri


def test_cnn_adam_trains_and_lands_in_mlflow(tmp_path):
    result = cli("model=cnn", "optimizer=adam", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the default store: SQLite under ./mlruns of the directory the command ran from
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FINISHED"
    assert run.info.run_id in result.stdout
    assert run.data.tags["orchestrator.data"] == "digits"
    assert run.data.metrics["test/accuracy"] > 0.5
    # artifacts live under ./mlruns too, beside the database
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert tmp_path / "mlruns" in artifacts.parents
    import yaml

    config = yaml.safe_load((artifacts / "config.yaml").read_text())
    assert config["model"]["_name_"] == "cnn" and config["optimizer"]["_name_"] == "adam"
    assert (artifacts / "overrides.txt").read_text().split() == [
        "model=cnn", "optimizer=adam", "trainer.max_epochs=2"
    ]


def test_console_script_is_the_same_app(tmp_path):
    import subprocess

    script = Path(sys.executable).with_name("orchestrator")
    out = subprocess.run([str(script), "model=logistic", "--cfg", "job"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "_name_: logistic" in out.stdout and "_name_: classification" in out.stdout


def test_cfg_job_prints_the_composed_config_and_trains_nothing(tmp_path):
    result = cli("model=cnn", "model.hidden=32", "trainer.max_epochs=3", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hidden: 32" in result.stdout and "max_epochs: 3" in result.stdout
    assert "_name_: digits" in result.stdout
    assert not (tmp_path / "mlruns").exists()


def test_help_lists_groups_and_plugin_options(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for expected in ("model: cnn, linear, logistic", "optimizer: adam, gd, minibatch",
                     "regularizer: elasticnet, l1, l2, none", "data: classification, csv, digits, regression",
                     "trainer: auto, cpu, ddp, ddp_cpu, gpu",
                     "experiment: cnn_digits, linear_regression, logistic_regression, softmax_digits",
                     "hparams_search: cnn_optuna, linear_optuna"):
        assert expected in result.stdout


def test_gpu_asked_for_without_one_is_refused_before_any_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = cli("trainer=gpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "trainer settings are refused" in result.stderr and "gpu" in result.stderr.lower()
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or all_runs(store_uri(tmp_path)) == []
