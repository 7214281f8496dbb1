"""Contract suites for plugin authors: one per component kind, reused by the built-ins.

Subclass the suite for your component and name it; pytest collects the inherited tests::

    from orchestrator.testing import ModelContract

    class TestMLP(ModelContract):
        name = "mlp"

The plugin must be installed (its entry point visible), because the suites load it exactly as
``python -m orchestrator`` does. The end-to-end test trains for one epoch with a real Hydra
config and a real SQLite MLflow store under pytest's ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest

from .components import INPUT_KINDS, TASKS, Dataset
from .plugins import Provided, get_catalog

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

#: Example inputs for each input kind: (features,) and (channels, height, width).
EXAMPLE_SHAPES = {"tabular": (5,), "image": (1, 8, 8)}


def default_settings(provided: Provided):
    """The component's schema with all defaults: what a bare ``group=name`` builds."""
    return provided.component.schema()


def train_once(tmp_path: Path, *overrides: str):
    """Compose the config as the CLI does (``trainer.max_epochs=1`` unless you say otherwise),
    train one run into a SQLite MLflow store under ``tmp_path``, and return its ``RunResult``."""
    from .config import compose
    from .runner import run

    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return run(compose([f"tracking.uri={store}", "trainer.max_epochs=1", *overrides]))


class ComponentContract:
    """What every component must do. Set ``name``; ``group`` is set by each kind's suite."""

    group: ClassVar[str] = ""
    name: ClassVar[str] = ""

    @pytest.fixture
    def provided(self) -> Provided:
        return get_catalog().get(self.group, self.name)

    def test_is_registered_by_an_installed_distribution(self, provided):
        assert provided.plugin.distribution not in ("", "unknown")
        assert provided.plugin.version not in ("", "unknown")

    def test_has_a_description(self, provided):
        assert provided.component.description.strip()

    def test_schema_builds_with_defaults_alone(self, provided):
        default_settings(provided)  # raises if a field has no default

    def test_schema_fields_are_typed(self, provided):
        import dataclasses

        for f in dataclasses.fields(provided.component.schema):
            assert f.type not in (None, "Any"), f"{f.name} has no type"


class ModelContract(ComponentContract):
    group: ClassVar[str] = "model"

    def shapes(self, provided):
        return [EXAMPLE_SHAPES[kind] for kind in provided.component.inputs]

    def test_declares_known_inputs_and_tasks(self, provided):
        assert set(provided.component.inputs) <= set(INPUT_KINDS) and provided.component.inputs
        assert set(provided.component.tasks) <= set(TASKS) and provided.component.tasks

    @pytest.mark.parametrize("output_dim", [1, 3])
    def test_output_shape_follows_output_dim(self, provided, output_dim):
        import torch

        for shape in self.shapes(provided):
            module = provided.component.build(default_settings(provided), shape, output_dim)
            assert isinstance(module, torch.nn.Module)
            out = module(torch.randn(4, *shape))
            assert tuple(out.shape) == (4, output_dim)

    def test_gradients_reach_every_parameter(self, provided):
        import torch

        shape = self.shapes(provided)[0]
        module = provided.component.build(default_settings(provided), shape, 2)
        module(torch.randn(8, *shape)).pow(2).sum().backward()
        for name, p in module.named_parameters():
            assert p.grad is not None, f"no gradient reaches {name}"

    def test_trains_end_to_end_on_its_default_data(self, provided, tmp_path):
        from .tracking_api import open_tracker

        result = train_once(tmp_path, f"model={self.name}")
        # Read back through the tracker interface: whichever tracker plugin is installed.
        run = open_tracker(get_catalog().pm.hook, result.tracking_uri).find_run(result.run_id)
        assert run.status == "FINISHED"
        assert run.tags["orchestrator.model.distribution"] == provided.provenance


class OptimizerContract(ComponentContract):
    group: ClassVar[str] = "optimizer"

    def test_steps_downhill_on_a_quadratic(self, provided):
        import torch

        w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        optimizer = provided.component.build(default_settings(provided), [w])
        assert isinstance(optimizer, torch.optim.Optimizer)
        start = w.detach().pow(2).sum().item()
        for _ in range(5):
            optimizer.zero_grad()
            w.pow(2).sum().backward()
            optimizer.step()
        assert w.detach().pow(2).sum().item() < start

    def test_batch_size_is_null_or_positive(self, provided):
        batch_size = getattr(default_settings(provided), "batch_size", None)
        assert batch_size is None or int(batch_size) >= 1

    def test_trains_end_to_end(self, provided, tmp_path):
        result = train_once(tmp_path, f"optimizer={self.name}")
        assert result.metrics


class RegularizerContract(ComponentContract):
    group: ClassVar[str] = "regularizer"

    def test_penalty_is_a_non_negative_differentiable_scalar(self, provided):
        import torch

        penalty = provided.component.build(default_settings(provided))
        if penalty is None:
            return  # "no penalty"
        layer = torch.nn.Linear(3, 2)
        value = torch.as_tensor(penalty(layer))
        assert value.ndim == 0 and value.item() >= 0
        value.backward()
        assert layer.weight.grad is not None

    def test_penalty_is_zero_for_zero_weights(self, provided):
        import torch

        penalty = provided.component.build(default_settings(provided))
        if penalty is None:
            return
        layer = torch.nn.Linear(3, 2)
        with torch.no_grad():
            layer.weight.zero_()
        assert float(torch.as_tensor(penalty(layer)).detach()) == 0.0


class DataContract(ComponentContract):
    group: ClassVar[str] = "data"

    @pytest.fixture
    def settings(self) -> dict:
        """Override to set what the defaults lack (a CSV needs a path, for instance)."""
        return {}

    def load(self, provided, settings, seed=0) -> Dataset:
        from dataclasses import replace

        return provided.component.build(replace(default_settings(provided), **settings), seed)

    def test_schema_subclasses_data_config(self, provided):
        from .components import DataConfig

        assert issubclass(provided.component.schema, DataConfig)

    def test_returns_consistent_arrays(self, provided, settings):
        import numpy as np

        from .datasets import is_table, is_text

        data = self.load(provided, settings)
        assert isinstance(data, Dataset)
        x, y = np.asarray(data.x), np.asarray(data.y)
        assert x.ndim in (2, 4) and y.shape == (len(x),) and len(x) >= 10
        assert data.task in TASKS
        if is_table(data.x):  # a table: its numeric columns finite, its text columns one-hot encoded
            x = np.asarray(data.x[[c for c in data.x.columns if not is_text(data.x[c])]])
        assert np.isfinite(x.astype(float)).all()
        if data.task == "classification":
            assert data.num_classes and data.num_classes >= 2
            assert set(np.unique(y)) <= set(range(data.num_classes))

    def test_same_seed_same_data(self, provided, settings):
        import numpy as np

        first, second = self.load(provided, settings, seed=3), self.load(provided, settings, seed=3)
        if hasattr(first.x, "equals"):  # a table (a DataFrame): missing values compare equal
            assert first.x.equals(second.x)
        else:
            np.testing.assert_array_equal(np.asarray(first.x), np.asarray(second.x))
        np.testing.assert_array_equal(np.asarray(first.y), np.asarray(second.y))

    def test_declared_input_kind_and_task_match_the_data(self, provided, settings):
        """A declaration (``Data(..., input_kind=, task=)``) lets the framework refuse a bad
        pairing before loading; it must say what the data really is."""
        from dataclasses import replace

        import numpy as np

        from .settings import declared

        cfg = replace(default_settings(provided), **settings)
        kind, task = declared(provided, cfg)
        data = self.load(provided, settings)
        loaded_kind = "image" if np.asarray(data.x).ndim == 4 else "tabular"
        assert kind in (None, loaded_kind), f"declares input_kind={kind!r}, yields {loaded_kind}"
        assert task in (None, data.task), f"declares task={task!r}, yields {data.task}"



def run_settings(provided: Provided, task: str = "regression", **changes):
    """The option's settings as a run on ``task`` hands them to ``build``: the schema's defaults
    with ``changes``, a ``monitor`` left null made the task's ranking metric (and ``mode`` its
    direction), and a ``monitor`` the task does not publish refused (``OrchestratorError``)."""
    from dataclasses import replace

    from .runner import watching
    from .task import Task

    where = f"{provided.component.group}.{provided.component.name}"
    settings = replace(default_settings(provided), **changes)
    return watching(settings, Task.of(task, num_classes=3 if task == "classification" else None), where)


class SchedulerContract(ComponentContract):
    """``build(cfg, optimizer, total_steps, max_epochs)`` gives a torch LR scheduler or None."""

    group: ClassVar[str] = "scheduler"
    #: What ``build`` is given: a fit of ``EPOCHS`` epochs of ``STEPS_PER_EPOCH`` optimizer steps.
    EPOCHS: ClassVar[int] = 4
    STEPS_PER_EPOCH: ClassVar[int] = 5

    def build(self, provided, settings, lr: float = 0.1):
        import torch

        w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        optimizer = torch.optim.SGD([w], lr=lr)
        total = self.EPOCHS * self.STEPS_PER_EPOCH
        return w, optimizer, provided.component.build(settings, optimizer, total, self.EPOCHS)

    def test_declares_when_it_is_stepped(self, provided):
        assert provided.component.interval in ("epoch", "step")
        assert provided.component.monitor is None or isinstance(provided.component.monitor, str)

    def test_schedules_the_optimizer_it_is_given(self, provided):
        from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

        _, optimizer, scheduler = self.build(provided, run_settings(provided))
        if scheduler is None:
            return  # "a constant learning rate"
        assert isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)), type(scheduler)
        assert scheduler.optimizer is optimizer

    def test_learning_rate_stays_finite_and_positive_through_the_fit(self, provided):
        """Stepped as the trainer steps it, ``total_steps`` optimizer steps in all: the rate of
        every step is finite and positive (a decay to 0 may reach it at the very last step)."""
        import math

        from torch.optim.lr_scheduler import ReduceLROnPlateau

        w, optimizer, scheduler = self.build(provided, run_settings(provided))
        if scheduler is None:
            return
        metric = (1.0,) if isinstance(scheduler, ReduceLROnPlateau) else ()  # a metric that stalls
        rates = []
        for _ in range(self.EPOCHS):
            for _ in range(self.STEPS_PER_EPOCH):
                rates.append(optimizer.param_groups[0]["lr"])
                optimizer.zero_grad()
                w.pow(2).sum().backward()
                optimizer.step()
                if provided.component.interval == "step":
                    scheduler.step(*metric)
            if provided.component.interval == "epoch":
                scheduler.step(*metric)
        assert all(math.isfinite(r) for r in rates), rates
        assert all(r > 0 for r in rates[:-1]) and rates[-1] >= 0, rates

    @pytest.mark.parametrize("task", TASKS)
    def test_a_metric_driven_schedule_watches_a_published_metric(self, provided, task):
        """``ReduceLROnPlateau`` needs a metric: the option's ``monitor`` (a schema field
        ``monitor`` overrides it), one the task publishes each epoch."""
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        from .task import Task

        settings = run_settings(provided, task)
        _, _, scheduler = self.build(provided, settings)
        if not isinstance(scheduler, ReduceLROnPlateau):
            return
        monitor = getattr(settings, "monitor", provided.component.monitor)
        assert monitor in Task.of(task, num_classes=3).monitorable(), monitor
        if hasattr(settings, "mode"):
            assert scheduler.mode == settings.mode

    def test_trains_end_to_end_and_logs_the_rate(self, provided, tmp_path):
        import math

        from .tracking_api import open_tracker

        result = train_once(tmp_path, f"scheduler={provided.component.name}")
        run = open_tracker(get_catalog().pm.hook, result.tracking_uri).find_run(result.run_id)
        assert run.status == "FINISHED"
        assert run.tags["orchestrator.scheduler.distribution"] == provided.provenance
        assert math.isfinite(run.metrics["train/lr"]) and run.metrics["train/lr"] > 0


class CallbackContract(ComponentContract):
    """``build(cfg)`` gives a ``pytorch_lightning.Callback``, chosen with ``callbacks=[name]``."""

    group: ClassVar[str] = "callbacks"

    @pytest.mark.parametrize("task", TASKS)
    def test_builds_a_lightning_callback(self, provided, task):
        from pytorch_lightning import Callback

        callback = provided.component.build(run_settings(provided, task))
        assert isinstance(callback, Callback), type(callback)

    @pytest.mark.parametrize("task", TASKS)
    def test_a_watched_metric_is_its_checked_monitor_setting(self, provided, task):
        """A callback that watches a metric (its ``monitor``) takes it from a schema field
        ``monitor``, which a run checks against the metrics the task publishes (null: the
        task's ranking metric), and follows its ``mode``."""
        from .errors import OrchestratorError

        settings = run_settings(provided, task)
        callback = provided.component.build(settings)
        if getattr(callback, "monitor", None) is None:
            return  # watches nothing
        assert hasattr(settings, "monitor"), "the watched metric is not a schema field `monitor`"
        assert callback.monitor == settings.monitor
        if hasattr(settings, "mode") and hasattr(callback, "mode"):
            assert callback.mode == settings.mode
        other = provided.component.build(run_settings(provided, task, monitor="train/loss"))
        assert other.monitor == "train/loss"
        with pytest.raises(OrchestratorError, match="not a metric"):
            run_settings(provided, task, monitor="val/unpublished")

    def test_trains_end_to_end(self, provided, tmp_path):
        from .tracking_api import open_tracker

        name = provided.component.name
        result = train_once(tmp_path, f"callbacks=[{name}]")
        run = open_tracker(get_catalog().pm.hook, result.tracking_uri).find_run(result.run_id)
        assert run.status == "FINISHED"
        assert run.tags["orchestrator.callbacks"] == name
