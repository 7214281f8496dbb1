"""Tensors on the right device, checked without a GPU.

CI has no GPU, so a tensor made without ``device=`` inside a training step (the bug that made
every GPU run fail at its first step) would pass every CPU test. Here the module's training and
evaluation hooks run with PyTorch's default device set to ``meta``: a tensor created without an
explicit device lands on ``meta`` while the model and the data stay on the CPU, and mixing the
two fails exactly as CPU and CUDA tensors do on a GPU machine.
"""

from __future__ import annotations

import functools
import itertools

import pytest

from conftest import TINY

HOOKS = ("training_step", "on_train_epoch_end", "test_step", "on_test_epoch_end")
MODELS = ("linear", "logistic", "cnn")
OPTIMIZERS = ("gd", "minibatch", "adam")
REGULARIZERS = ("none", "l1", "l2", "elasticnet")


def land_stray_tensors_on_meta(monkeypatch):
    """Run the module's hooks with tensors made without a device landing on ``meta``."""
    import torch

    from orchestrator.lightning import TrainingModule

    def elsewhere(hook):
        @functools.wraps(hook)
        def wrapped(*args, **kwargs):
            with torch.device("meta"):
                return hook(*args, **kwargs)

        return wrapped

    for name in HOOKS:
        monkeypatch.setattr(TrainingModule, name, elsewhere(getattr(TrainingModule, name)))
    return TrainingModule


@pytest.fixture
def stray_tensors_elsewhere(monkeypatch):
    return land_stray_tensors_on_meta(monkeypatch)


def _train(compose, catalog, *overrides):
    from orchestrator.runner import run

    tiny = ["trainer.max_epochs=1"] if "model=cnn" in overrides else TINY  # digits: fixed size
    cfg = compose(*tiny, "tracking.log_model=false", "tracking.plots=false", *overrides)
    return run(cfg, catalog=catalog)


# Every model with every optimizer; the regularizers rotate so each model meets each of them.
CASES = [(m, o, REGULARIZERS[(i + j) % len(REGULARIZERS)])
         for (i, m), (j, o) in itertools.product(enumerate(MODELS), enumerate(OPTIMIZERS))]
CASES += [(m, "adam", r) for m in MODELS for r in REGULARIZERS if (m, "adam", r) not in CASES]


@pytest.mark.parametrize("model,optimizer,regularizer", CASES)
def test_training_makes_no_tensor_on_another_device(stray_tensors_elsewhere, compose, catalog,
                                                     model, optimizer, regularizer):
    result = _train(compose, catalog, f"model={model}", f"optimizer={optimizer}",
                    f"regularizer={regularizer}", "optimizer.batch_size=16" if optimizer != "gd" else "seed=0")
    assert "test/loss" in result.metrics and "train/loss" in result.metrics


def test_the_check_catches_a_tensor_made_without_a_device(compose, catalog, monkeypatch):
    """The bug as it was: ``torch.tensor(float(n))`` beside tensors of the training device."""
    import torch

    from orchestrator.lightning import TrainingModule

    step = TrainingModule.training_step

    def buggy(self, batch, batch_idx):
        objective = step(self, batch, batch_idx)
        torch.stack([objective.detach(), torch.tensor(float(len(batch[1])))])
        return objective

    monkeypatch.setattr(TrainingModule, "training_step", buggy)
    land_stray_tensors_on_meta(monkeypatch)
    with pytest.raises((RuntimeError, NotImplementedError), match="device"):  # a step per batch: the patched one
        _train(compose, catalog, "model=linear", "optimizer=minibatch", "optimizer.batch_size=16")


def test_losses_are_read_once_every_16_steps_off_the_cpu(monkeypatch):
    """On an accelerator the steps' losses are read (one host-device sync) once every 16 steps,
    and a NaN is still reported at the step where it appeared; on the CPU, every step."""
    import torch

    from orchestrator.lightning import TrainingDiverged, TrainingModule

    module = TrainingModule(torch.nn.Linear(1, 1), "regression", None, lambda p: None)
    assert module.divergence_check_every() == 1
    monkeypatch.setattr(module, "divergence_check_every", lambda: 16)  # as on an accelerator
    at = {"step": 0}
    monkeypatch.setattr(TrainingModule, "global_step", property(lambda self: at["step"]))
    monkeypatch.setattr(TrainingModule, "current_epoch", property(lambda self: 0))
    reads, original = [], torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or original(self))
    inputs = [1.0, 2.0, float("nan"), 3.0] + [1.0] * 11 + [4.0]
    with pytest.raises(TrainingDiverged, match="step 2"):
        for i, value in enumerate(inputs):
            at["step"] = i
            module.training_step((torch.tensor([[value]]), torch.tensor([0.0])), i)
            assert reads == [] or i == 15  # nothing read before the 16th step
    assert len(reads) == 1
