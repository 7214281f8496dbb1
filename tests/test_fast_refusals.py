"""Issue #11, fast refusals: whatever the config alone decides is refused before torch,
pytorch_lightning or mlflow is imported and before any MLflow store is created. Real processes,
their imports read with ``python -X importtime``; no timings here (``python -m bench.refusals``
measures them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import all_runs, store_uri

HEAVY = ("torch", "pytorch_lightning", "mlflow")

# (arguments, words the one-paragraph message must hold)
REFUSALS = [
    (["optimizer.lr=-1"], ["optimizer.lr=-1.0", "> 0"]),
    (["optimizer.lr=abc"], ["optimizer.lr='abc'", "Float"]),
    (["optimizer=minibatch", "optimizer.batch_size=0"], ["optimizer.batch_size=0", ">= 1"]),
    (["regularizer=l2", "regularizer.strength=-0.1"], ["regularizer.strength=-0.1", ">= 0"]),
    (["model=cnn", "model.activation=relux"], ["model.activation='relux'", "did you mean 'relu'"]),
    (["model=nosuch"], ["Unknown model 'nosuch'", "cnn, linear, logistic"]),
    (["+model.nosuch=1"], ["model.nosuch is not a setting", "Settings of model=linear: bias"]),
    (["model=cnn", "+model.hiden=3"], ["model.hiden is not a setting", "did you mean 'hidden'"]),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], ["leaves nothing to train on"]),
    (["trainer.acclerator=gpu"], ["trainer.acclerator", "did you mean 'accelerator'"]),
    (["+trainer.acclerator=gpu"], ["trainer.acclerator is not a Lightning Trainer argument",
                                   "did you mean 'accelerator'"]),
    (["trainer.accelerator=quantum"], ["trainer.accelerator='quantum'", "auto, gpu, cpu, cuda"]),
    (["trainer.accelerator=tpux"], ["trainer settings are refused", "'tpux'", "did you mean 'tpu'"]),
    (["trainer.precision=12"], ["trainer.precision=12", "32-true", "16-mixed", "bf16-mixed"]),
    (["trainer.precision=16-mix"], ["trainer.precision='16-mix'", "did you mean '16-mixed'"]),
    (["trainer.max_epochs=4.5"], ["trainer.max_epochs=4.5 is not a whole number of epochs", "range(a,b)"]),
    (["+trainer.logger=false"], ["trainer.logger cannot be set", "MLflow logger"]),
    (["model=cnn", "data=regression"], ["model=cnn cannot train on data=regression", "takes image inputs",
                                        "gives tabular inputs", "Leave data= out to use digits"]),
    (["model=linear", "data=classification"], ["model=linear cannot train on data=classification",
                                               "learns regression", "classification task"]),
    (["model=linear", "data=digits"], ["model=linear cannot train on data=digits", "image inputs"]),
    # data=csv declares its task where data.task sets it: refused before the file is read (it
    # is missing); left out, the task is inferred once the file is read (tests/test_csv_task.py)
    (["model=logistic", "data=csv", "data.path=missing.csv", "data.target=y", "data.task=regression"],
     ["model=logistic cannot train on data=csv with data.task=regression", "learns only classification",
      "Set data.task=classification", "leave data.task out", "model=linear"]),
    (["model=cnn", "data=csv", "data.path=missing.csv", "data.target=y", "data.task=classification"],
     ["model=cnn cannot train on data=csv", "tabular inputs"]),
    (["+tracking.nosuch=1"], ["tracking.nosuch is not a setting", "Settings of tracking:", "experiment"]),
    (["+sweep.metrc=val/loss"], ["sweep.metrc is not a setting", "did you mean 'metric'"]),
    (["tracking.model_format=onnx"], ["tracking.model_format='onnx'", "pickle, pt2"]),
    (["tracking.flush_seconds=0"], ["tracking.flush_seconds=0", "> 0"]),
    (["+nonsense=1"], ["nonsense is not a setting", "Top-level settings:", "seed"]),
]


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` lines: ``import time: self | total | name``."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def run_importtime(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,words", REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_refused_from_the_config_alone_before_anything_heavy(tmp_path, args, words):
    result = run_importtime(*args, cwd=tmp_path)
    message = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2, "\n".join(message)[-2000:]
    assert len(message) == 1 and message[0].startswith("Error: "), message  # one paragraph
    for word in words:
        assert word in message[0], f"{word!r} missing from: {message[0]}"
    imported = imported_modules(result.stderr)
    assert not imported & set(HEAVY), f"imported before refusing: {sorted(imported & set(HEAVY))}"
    assert not (tmp_path / "mlruns").exists()
    assert not list(tmp_path.rglob("mlflow.db"))


def test_a_refused_job_of_a_sweep_is_a_failed_child_and_the_others_train(tmp_path):
    from conftest import cli

    result = cli("-m", "model=linear,cnn", "data=regression", "trainer.max_epochs=1", "data.n_samples=80",
                 "tracking.log_model=false", "tracking.plots=false", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    runs = all_runs(store_uri(tmp_path))
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]
    (failed,) = [r for r in children if r.info.status == "FAILED"]
    assert "model=cnn cannot train on data=regression" in failed.data.tags["error"]


# ---------------------------------------------------------------------------------------------
# The declarations the early checks rely on


CSV = "x1,x2,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40))
BUILT_IN_DATA = [
    ("regression", {}),
    ("classification", {}),
    ("digits", {}),
    ("csv", {"path": "table.csv", "target": "y", "task": "regression"}),
    ("csv", {"path": "table.csv", "target": "y", "task": "classification"}),
]


@pytest.mark.parametrize("name,values", BUILT_IN_DATA, ids=[f"{n}-{v.get('task', '')}" for n, v in BUILT_IN_DATA])
def test_declared_input_kind_and_task_match_what_built_in_data_yields(catalog, workdir, name, values):
    from orchestrator.datasets import split
    from orchestrator.settings import declared

    (workdir / "table.csv").write_text(CSV)
    provided = catalog.get("data", name)
    settings = provided.component.schema(**values)
    input_kind, task = declared(provided, settings)
    assert input_kind is not None and task is not None, f"data={name} should declare both"
    splits = split(provided.component.build(settings, 0), settings, 0, name)
    assert (input_kind, task) == (splits.input_kind, splits.task)


def test_every_built_in_data_option_is_covered(catalog):
    built_in = {n for n, p in catalog.options["data"].items() if p.plugin.distribution == "orchestrator"}
    assert built_in == {name for name, _ in BUILT_IN_DATA}


def test_data_declarations_are_optional_and_checked():
    from dataclasses import dataclass

    from orchestrator import Data, DataConfig

    @dataclass
    class Cfg(DataConfig):
        pass

    old_style = Data("old", Cfg, lambda cfg, seed: None, "positional, as third-party plugins write it")
    assert old_style.input_kind is None and old_style.task is None
    assert Data("new", Cfg, print, input_kind="image", task=lambda cfg: "regression").input_kind == "image"
    with pytest.raises(TypeError, match="input_kind='video'"):
        Data("bad", Cfg, print, input_kind="video")
    with pytest.raises(TypeError, match="task='ranking'"):
        Data("bad", Cfg, print, task="ranking")


def test_a_declaration_the_data_contradicts_is_named(catalog):
    from orchestrator import OrchestratorError
    from orchestrator.settings import Settings, check_loaded

    chosen = {"data": catalog.get("data", "regression"), "model": catalog.get("model", "linear")}
    settings = Settings(chosen, {"data": "regression", "model": "linear"}, {}, {}, None, None, 0,
                        input_kind="tabular", task="regression")
    with pytest.raises(OrchestratorError, match="declares task='regression' but gave 'classification'"):
        check_loaded(settings, "tabular", "classification", (2,))
    check_loaded(settings, "tabular", "regression", (2,))


# ---------------------------------------------------------------------------------------------
# What is read from Lightning's source agrees with Lightning


def test_trainer_arguments_read_from_source_match_the_trainer():
    import inspect

    import pytorch_lightning as pl

    from orchestrator.settings import lightning_trainer_arguments

    expected = set(inspect.signature(pl.Trainer).parameters)
    assert lightning_trainer_arguments() == expected


def test_accelerators_read_from_source_match_lightnings_registry():
    from pytorch_lightning.accelerators import AcceleratorRegistry

    from orchestrator.settings import lightning_accelerators

    assert set(lightning_accelerators()) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}


def test_precisions_read_from_source_match_lightning():
    from typing import get_args

    from lightning_fabric.connector import _PRECISION_INPUT

    from orchestrator.settings import lightning_precisions

    expected = {value for alias in get_args(_PRECISION_INPUT) for value in get_args(alias)}
    assert set(lightning_precisions()) == expected
    assert {"32-true", "16-mixed", "bf16-mixed", "64-true", 32, "bf16"} <= expected


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", 16, "16", 64, None])
def test_precisions_lightning_accepts_pass(value):
    from orchestrator.settings import check_trainer_values

    check_trainer_values({"precision": value, "accelerator": "cpu"})


@pytest.mark.parametrize("value", [12, 32.0, True, "fp16", "CPU"])
def test_values_lightning_refuses_are_refused(value):
    from orchestrator import OrchestratorError
    from orchestrator.settings import check_trainer_values

    key = "accelerator" if value == "CPU" else "precision"
    with pytest.raises(OrchestratorError, match=f"trainer.{key}="):
        check_trainer_values({key: value})


def test_validate_returns_the_checked_settings(catalog, compose):
    from orchestrator.settings import validate

    settings = validate(compose("model=cnn", "optimizer=adam", "optimizer.lr=0.01"), catalog)
    assert settings.names == {"data": "digits", "model": "cnn", "optimizer": "adam", "regularizer": "none",
                              "scheduler": "none"}
    assert settings.callbacks == {}
    assert settings.groups["optimizer"].lr == 0.01
    assert (settings.input_kind, settings.task) == ("image", "classification")
    assert settings.tracking.experiment == "orchestrator"


def test_epochs_left_null_are_the_optimizers_and_recorded_in_the_config(catalog, compose):
    """trainer.max_epochs: null (the default) trains as many epochs as the optimizer needs (40
    full-batch steps of gd, 12 epochs of Adam); the config then holds that number, so a run's
    params, its job key and a rerun see what was trained. A number given is kept."""
    from orchestrator.settings import validate

    for optimizer, epochs in (("gd", 40), ("adam", 12), ("minibatch", 20)):
        cfg = compose(f"optimizer={optimizer}")
        assert cfg.trainer.max_epochs is None
        assert validate(cfg, catalog).trainer["max_epochs"] == epochs and cfg.trainer.max_epochs == epochs
    cfg = compose("optimizer=adam", "trainer.max_epochs=3")
    assert validate(cfg, catalog).trainer["max_epochs"] == 3


def test_refusal_benchmark_runs_and_checks_every_refusal(tmp_path):
    """The benchmark's own checks (not its timings: those are for people to read)."""
    import json

    out = tmp_path / "refusals.json"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "bench.refusals", "--quick", "--json", str(out)],
                            cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "/ floor" in result.stdout and "model=cnn data=regression" in result.stdout
    report = json.loads(out.read_text())
    assert len(report["refusals"]) >= 8
    for command, row in report["refusals"].items():
        assert row["returncode"] == 2 and row["one_paragraph"], command
        assert row["heavy_imports"] == [] and row["store"] == [], command
