"""Full-batch fits train 16 epochs per Lightning step where nothing acts between epochs: every
epoch is still validated and logged as its own, with exactly the values one epoch per step gives
(a callback, here lr_monitor, makes the fit take one epoch per step)."""

import os

import pytest

from conftest import store_uri

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

KEYS = ("train/loss", "train/penalty", "train/lr", "val/loss", "epoch")


@pytest.fixture
def train(tmp_path, compose):
    import mlflow

    from orchestrator import run

    client = mlflow.MlflowClient(store_uri(tmp_path))

    def _train(*overrides):
        result = run(compose("tracking.log_model=false", "tracking.plots=false", *overrides))
        history = {k: [(m.step, m.value) for m in client.get_metric_history(result.run_id, k)] for k in KEYS}
        return result, history

    return _train


@pytest.mark.parametrize("overrides", [
    ["model=linear", "regularizer=l2", "trainer.max_epochs=37"],
    ["model=logistic", "data=digits", "optimizer=adam", "optimizer.batch_size=null", "trainer.max_epochs=18"],
])
def test_several_epochs_a_step_log_exactly_what_one_epoch_a_step_logs(train, overrides):
    several, history = train(*overrides)
    one, reference = train(*overrides, "callbacks=[lr_monitor]")
    epochs = int(overrides[-1].split("=")[1])
    assert len(history["val/loss"]) == epochs and [s for s, _ in history["val/loss"]] == list(range(1, epochs + 1))
    assert history == reference
    assert {k: v for k, v in several.metrics.items() if k.startswith("test/")} == \
           {k: v for k, v in one.metrics.items() if k.startswith("test/")}


def test_only_full_batch_fits_without_callbacks_or_schedule_train_several_epochs_a_step(catalog, compose):
    from orchestrator.runner import prepare

    def per_step(*overrides):
        return prepare(compose(*overrides), catalog).training.module.epochs_per_step

    assert per_step("optimizer=gd", "trainer.max_epochs=40") == 16
    assert per_step("optimizer=gd", "trainer.max_epochs=40", "callbacks=[early_stopping]") == 1
    assert per_step("optimizer=gd", "trainer.max_epochs=40", "scheduler=step") == 1
    assert per_step("optimizer=minibatch", "trainer.max_epochs=40") == 1
    assert per_step("optimizer=gd", "trainer.max_epochs=40", "+trainer.gradient_clip_val=1.0") == 1
    assert per_step("optimizer=gd", "trainer.max_epochs=40", "trainer.precision=bf16-mixed") == 1
    assert per_step("optimizer=gd", "trainer.max_epochs=1") == 1


def test_a_fit_resumed_from_its_checkpoint_continues_at_the_next_epoch(tmp_path, catalog, compose):
    """21 epochs (a step of 16, one of 5), checkpointed, then resumed to 40: the same weights as
    40 epochs in one go, whatever Lightning's own loop counters say."""
    import torch

    from orchestrator.runner import prepare

    def fit(epochs, folder, resume_from=None):
        prepared = prepare(compose("optimizer=gd", "regularizer=l2", f"trainer.max_epochs={epochs}"), catalog,
                           output_dir=str(tmp_path / folder))
        prepared.training.run(None, resume_from=resume_from)
        return prepared.training

    first = fit(21, "a")
    assert first.module._next_epoch == 21 and first.trainer.current_epoch == 2  # 21 epochs in 2 steps
    path = tmp_path / "last.ckpt"
    first.trainer.save_checkpoint(str(path))
    saved = torch.load(path, weights_only=True)
    assert (saved["orchestrator_epochs_per_step"], saved["orchestrator_next_epoch"]) == (16, 21)

    resumed, whole = fit(40, "b", resume_from=str(path)), fit(40, "c")
    assert resumed.module._next_epoch == whole.module._next_epoch == 40
    for a, b in zip(resumed.module.parameters(), whole.module.parameters()):
        assert torch.equal(a, b)


def test_resuming_a_several_epochs_checkpoint_with_callbacks_is_refused(tmp_path, catalog, compose):
    from orchestrator import OrchestratorError
    from orchestrator.runner import prepare

    first = prepare(compose("optimizer=gd", "trainer.max_epochs=20"), catalog, output_dir=str(tmp_path))
    first.training.run(None)
    path = tmp_path / "last.ckpt"
    first.training.trainer.save_checkpoint(str(path))
    with_callback = prepare(compose("optimizer=gd", "trainer.max_epochs=30", "callbacks=[lr_monitor]"), catalog,
                            output_dir=str(tmp_path / "b"))
    with pytest.raises(OrchestratorError, match="16 full-batch epochs in each Lightning step"):
        with_callback.training.run(None, resume_from=str(path))
