"""fp16 mixed precision with full-batch gradient descent: no epoch lost to the loss scale.

GradScaler starts at 2**16 and skips every step whose scaled gradients overflow fp16. With
``optimizer=gd`` a step is an epoch: on an H100, two epochs of ``model=linear optimizer=gd
trainer.precision=16-mixed`` were both skipped and the run ended untrained (test loss 8.75 against
1.30 in fp32). fp16 autocast and GradScaler run on the CPU too, so this is tested here: Lightning
turns ``16-mixed`` into bf16 on the CPU, so the fp16 plugin is passed as the GPU would get it.
"""

from __future__ import annotations

import copy

import pytest


def _fit(prepared, tmp_path, plugin=None):
    from orchestrator.lightning.trainer import Training

    cfg, module = prepared.cfg, prepared.training.module
    args = {k: v for k, v in dict(cfg.trainer).items() if not (plugin and k == "precision")}
    training = Training(copy.deepcopy(prepared.model), prepared.splits, make_optimizer=module.make_optimizer,
                        penalty=module.penalty, batch_size=prepared.training.data.batch_size,
                        trainer_args={**args, **({"plugins": [plugin]} if plugin else {})},
                        callbacks=[], seed=0, output_dir=str(tmp_path))
    return training, training.run(None)


@pytest.fixture
def linear_gd(compose, catalog):
    from orchestrator.runner import prepare

    cfg = compose("model=linear", "optimizer=gd", "trainer.max_epochs=2", "data.n_samples=400",
                  "tracking.log_model=false", "tracking.plots=false")
    return prepare(cfg, catalog)


def fp16():
    from pytorch_lightning.plugins.precision import MixedPrecision

    return MixedPrecision("16-mixed", "cpu")


def test_full_batch_fp16_trains_every_epoch_like_fp32(linear_gd, tmp_path):
    _, fp32 = _fit(linear_gd, tmp_path)
    training, half = _fit(linear_gd, tmp_path, fp16())
    scale = training.trainer.precision_plugin.scaler.get_scale()
    assert scale < 2.0**16  # the scale was lowered before the first step, not by skipping it
    assert half["test/loss"] == pytest.approx(fp32["test/loss"], rel=0.05), (half, fp32)


def test_without_the_calibration_fp16_loses_the_epochs(linear_gd, tmp_path, monkeypatch):
    """The control: with GradScaler left to find its scale by skipping steps, nothing trains."""
    from orchestrator.lightning import TrainingModule

    _, fp32 = _fit(linear_gd, tmp_path)
    monkeypatch.setattr(TrainingModule, "_calibrate_loss_scale", lambda self: None)
    _, half = _fit(linear_gd, tmp_path, fp16())
    assert half["test/loss"] > 2 * fp32["test/loss"], (half, fp32)


def test_no_scaler_no_calibration(linear_gd, tmp_path):
    """fp32 and bf16 have no loss scale: nothing is probed."""
    training, _ = _fit(linear_gd, tmp_path)
    assert training.module._calibrate_loss_scale() is None
