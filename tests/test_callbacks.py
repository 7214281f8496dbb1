"""Callbacks from the command line: ``callbacks=[early_stopping,model_checkpoint,lr_monitor,swa]``,
typed settings, Lightning's own behaviour, the best model tested and logged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conftest import all_runs, catalog_with, cli, store_uri

FAST = ["tracking.plots=false", "data.n_samples=300"]


def _run(compose, catalog, *overrides):
    from orchestrator.runner import run

    return run(compose("model=logistic", "optimizer=adam", "optimizer.lr=0.05", *FAST, *overrides), catalog=catalog)


def _record(tmp_path, run_id):
    return next(r for r in all_runs(store_uri(tmp_path)) if r.info.run_id == run_id)


def test_early_stopping_ends_training_when_the_metric_stalls(compose, catalog, tmp_path):
    result = _run(compose, catalog, "callbacks=[early_stopping]", "callbacks.early_stopping.patience=1",
                  "callbacks.early_stopping.monitor=val/loss", "trainer.max_epochs=500",
                  "tracking.log_model=false")
    epochs = _record(tmp_path, result.run_id).data.metrics["epoch"]
    assert epochs < 499  # stopped long before max_epochs
    assert _record(tmp_path, result.run_id).data.tags["orchestrator.callbacks"] == "early_stopping"


def test_model_checkpoint_logs_the_best_and_the_run_tests_and_logs_that_model(compose, catalog, tmp_path):
    import mlflow
    import torch

    # a learning rate so large that later epochs are worse than an early one
    result = _run(compose, catalog, "callbacks=[model_checkpoint]", "trainer.max_epochs=12", "optimizer.lr=3.0",
                  "callbacks.model_checkpoint.monitor=val/loss")
    run = _record(tmp_path, result.run_id)
    best_epoch = int(run.data.metrics["best/epoch"])
    assert "best/val/loss" in run.data.metrics
    assert run.data.tags["orchestrator.model.selected"].startswith(f"best checkpoint: epoch {best_epoch}, val/loss=")
    client = mlflow.MlflowClient(store_uri(tmp_path))
    [artifact] = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    best = torch.load(client.download_artifacts(run.info.run_id, artifact, str(tmp_path)), weights_only=True)
    assert best["epoch"] == best_epoch
    logged = mlflow.pytorch.load_model(result.model_uri)
    weights = {k.removeprefix("model."): v for k, v in best["state_dict"].items()}
    for name, value in logged.model.state_dict().items():
        assert torch.equal(value.cpu(), weights[name].cpu()), name  # the logged model is the best one


def test_lr_monitor_and_swa_are_lightnings_own(compose, catalog, tmp_path):
    result = _run(compose, catalog, "callbacks=[lr_monitor,swa]", "trainer.max_epochs=5",
                  "callbacks.swa.swa_lr=0.01", "tracking.log_model=false")
    metrics = _record(tmp_path, result.run_id).data.metrics
    assert 0.01 <= metrics["lr-Adam"] < 0.05  # SWA anneals from optimizer.lr to its own, as LR monitor saw


@pytest.mark.parametrize("args,named", [
    (["callbacks=[early_stop]"], ["early_stop", "early_stopping", "model_checkpoint"]),
    (["callbacks=[early_stopping]", "callbacks.early_stopping.monitor=val/r2"], ["val/r2", "val/accuracy"]),
    (["callbacks=[early_stopping]", "callbacks.early_stopping.patience=-1"], ["patience", "-1"]),
    (["+trainer.check_val_every_n_epoch=2"], ["check_val_every_n_epoch", "every training epoch"]),
    (["+trainer.limit_val_batches=0.5"], ["limit_val_batches", "no effect"]),
    (["trainer.num_sanity_val_steps=2"], ["num_sanity_val_steps", "no effect"]),
])
def test_bad_callback_settings_exit_2_with_one_paragraph(tmp_path, args, named):
    result = cli("model=logistic", *FAST, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for text in named:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert all(r.info.status != "RUNNING" for r in all_runs(store_uri(tmp_path)))


def test_a_plugin_adds_a_callback_with_a_schema(tmp_path):
    from orchestrator import Callback, check, hookimpl
    from orchestrator.config import compose
    from orchestrator.runner import run

    seen = []

    @dataclass
    class CountConfig:
        every: int = check(1, ge=1)

    def build(cfg):
        import pytorch_lightning as pl

        class Count(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.current_epoch % cfg.every == 0:
                    seen.append(trainer.current_epoch)

        return Count()

    class Plugin:
        @hookimpl
        def register_components(self):
            return [Callback("count_epochs", CountConfig, build, "Count epochs.")]

    catalog = catalog_with(Plugin(), "counting", "orchestrator-counting")
    cfg = compose([f"tracking.uri={store_uri(tmp_path)}", "model=logistic", "trainer.max_epochs=4",
                   "callbacks=[count_epochs,lr_monitor]", "callbacks.count_epochs.every=2",
                   "tracking.log_model=false", *FAST], catalog)
    result = run(cfg, catalog=catalog)
    assert seen == [0, 2]
    assert "lr-SGD" in _record(tmp_path, result.run_id).data.metrics


def test_callbacks_work_under_ddp_where_other_ranks_have_no_run(tmp_path):
    """Rank 1 logs nothing, yet LearningRateMonitor needs a logger there too; the best
    checkpoint is found across ranks and logged once."""
    result = cli("model=cnn", "optimizer=adam", "trainer=ddp_cpu", "trainer.max_epochs=3",
                 "callbacks=[lr_monitor,model_checkpoint]", "tracking.plots=false", "tracking.log_model=false",
                 cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FINISHED" and "lr-Adam" in run.data.metrics and "best/epoch" in run.data.metrics
