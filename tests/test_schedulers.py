"""Learning-rate schedules: a config group like the others, built by plugins, logged per epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from conftest import all_runs, catalog_with, cli, store_uri

FAST = ["tracking.plots=false", "tracking.log_model=false", "data.n_samples=200"]


def _lr(tmp_path, run_id) -> list[float]:
    import mlflow

    history = mlflow.MlflowClient(store_uri(tmp_path)).get_metric_history(run_id, "train/lr")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def _train(compose, catalog, tmp_path, *overrides):
    from orchestrator.runner import run

    result = run(compose("model=logistic", "optimizer=adam", "optimizer.lr=0.01", "trainer.max_epochs=6",
                         *FAST, *overrides), catalog=catalog)
    return result, _lr(tmp_path, result.run_id)


def test_without_a_schedule_the_rate_stays_and_is_logged_each_epoch(compose, catalog, tmp_path):
    _, lr = _train(compose, catalog, tmp_path)
    assert lr == pytest.approx([0.01] * 6)


def test_step_decays_every_step_size_epochs(compose, catalog, tmp_path):
    _, lr = _train(compose, catalog, tmp_path, "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5")
    assert lr == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])  # the rate each epoch trained at


def test_cosine_warms_up_then_decays_to_its_floor(compose, catalog, tmp_path):
    _, lr = _train(compose, catalog, tmp_path, "scheduler=cosine", "scheduler.warmup_epochs=2",
                   "scheduler.min_lr_fraction=0.1")
    assert lr[0] < lr[1] < lr[2]  # warm-up, stepped each batch
    assert lr[2] == pytest.approx(0.01, rel=0.05)
    assert lr[2] > lr[3] > lr[4] > lr[5] >= 0.001


def test_onecycle_rises_then_anneals_below_its_start(compose, catalog, tmp_path):
    _, lr = _train(compose, catalog, tmp_path, "scheduler=onecycle")
    peak = lr.index(max(lr))
    assert lr[0] == pytest.approx(0.01 / 25)  # starts at max_lr / div_factor
    assert 0 < peak < 5 and max(lr) <= 0.01 + 1e-12 and lr[-1] < max(lr) / 10


def test_plateau_lowers_the_rate_when_the_monitored_metric_stalls(compose, catalog, tmp_path):
    # patience 0 and a metric that can only get worse after the first epoch with a huge rate
    _, lr = _train(compose, catalog, tmp_path, "scheduler=plateau", "scheduler.patience=0",
                   "scheduler.factor=0.5", "optimizer.lr=5.0")
    assert lr[0] == 5.0 and min(lr) < 5.0 and all(b <= a for a, b in zip(lr, lr[1:]))


def test_a_monitor_the_task_does_not_publish_is_refused_before_a_run(tmp_path):
    result = cli("model=logistic", "scheduler=plateau", "scheduler.monitor=val/r2", *FAST, cwd=tmp_path)
    assert result.returncode == 2
    assert "val/r2" in result.stderr and "val/accuracy" in result.stderr and "scheduler.monitor=" in result.stderr
    assert all(r.info.status != "RUNNING" for r in all_runs(store_uri(tmp_path)))


def test_an_unknown_schedule_names_the_available_ones(tmp_path):
    result = cli("scheduler=warmcosine", *FAST, cwd=tmp_path)
    assert result.returncode == 2
    for name in ("warmcosine", "cosine", "onecycle", "plateau", "step"):
        assert name in result.stderr, result.stderr


def test_a_plugin_adds_a_schedule(tmp_path):
    """A third party's schedule through the same hook as the built-ins: its option, settings and
    builder, found by the catalogue and used by the trainer."""
    from orchestrator import Scheduler, check, hookimpl
    from orchestrator.config import compose
    from orchestrator.runner import run

    @dataclass
    class HalvingConfig:
        every: int = check(1, ge=1)

    def build(cfg, optimizer, total_steps, max_epochs):
        import torch

        assert total_steps > max_epochs > 0
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.every, gamma=0.5)

    class Plugin:
        @hookimpl
        def register_components(self):
            return [Scheduler("halving", HalvingConfig, build, "Halve the rate.")]

    catalog = catalog_with(Plugin(), "halving", "orchestrator-halving")
    cfg = compose([f"tracking.uri={store_uri(tmp_path)}", "model=logistic", "optimizer=adam",
                   "optimizer.lr=0.01", "trainer.max_epochs=3", "scheduler=halving", *FAST], catalog)
    result = run(cfg, catalog=catalog)
    assert _lr(tmp_path, result.run_id) == pytest.approx([0.01, 0.005, 0.0025])
    run_tags = next(r for r in all_runs(store_uri(tmp_path)) if r.info.run_id == result.run_id).data.tags
    assert run_tags["orchestrator.scheduler"] == "halving"
    assert run_tags["orchestrator.scheduler.distribution"].startswith("orchestrator-halving")
    assert math.isfinite(result.metrics["test/loss"])
