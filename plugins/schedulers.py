"""Built-in learning-rate schedules: none, step, cosine (with warm-up), onecycle, plateau."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from orchestrator import Scheduler, check, hookimpl


@dataclass
class NoneConfig:
    pass


@dataclass
class StepConfig:
    #: Epochs between two decays.
    step_size: int = check(10, ge=1)
    #: Factor the learning rate is multiplied by at each decay.
    gamma: float = check(0.1, gt=0, le=1)


@dataclass
class CosineConfig:
    #: Epochs over which the learning rate rises linearly from near 0 to its value (0: none).
    warmup_epochs: int = check(0, ge=0)
    #: The last learning rate, as a fraction of the optimizer's (cosine decay towards it).
    min_lr_fraction: float = check(0.0, ge=0, le=1)


@dataclass
class OneCycleConfig:
    #: The peak learning rate; null: the optimizer's learning rate (optimizer.lr).
    max_lr: Optional[float] = check(None, gt=0)
    #: Fraction of the steps spent rising to the peak (the warm-up).
    pct_start: float = check(0.3, gt=0, lt=1)
    #: The first learning rate is max_lr / div_factor.
    div_factor: float = check(25.0, gt=0)
    #: Also cycle momentum (beta1 for Adam) inversely to the learning rate.
    cycle_momentum: bool = False


@dataclass
class PlateauConfig:
    #: The metric watched after each epoch's validation: val/loss, or val/<metric> of the task.
    monitor: str = "val/loss"
    #: min or max; null: max for accuracy, f1 and r2, min otherwise.
    mode: Optional[str] = check(None, choices=("min", "max"))
    #: Factor the learning rate is multiplied by when the metric stops improving.
    factor: float = check(0.1, gt=0, lt=1)
    #: Epochs without improvement before the learning rate is lowered.
    patience: int = check(10, ge=0)


def build_none(cfg, optimizer, total_steps, max_epochs):
    return None


def build_step(cfg, optimizer, total_steps, max_epochs):
    import torch

    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)


def build_cosine(cfg, optimizer, total_steps, max_epochs):
    """Stepped every step: a linear warm-up over ``warmup_epochs``, then a half cosine down to
    ``min_lr_fraction`` of the optimizer's learning rate at the last step."""
    import torch

    per_epoch = max(1, total_steps // max(1, max_epochs))
    warmup = min(cfg.warmup_epochs * per_epoch, max(0, total_steps - 1))
    floor = cfg.min_lr_fraction

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup - 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_onecycle(cfg, optimizer, total_steps, max_epochs):
    import torch

    max_lr = cfg.max_lr if cfg.max_lr is not None else [g["lr"] for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(2, total_steps), pct_start=cfg.pct_start,
        div_factor=cfg.div_factor, cycle_momentum=cfg.cycle_momentum,
    )


def build_plateau(cfg, optimizer, total_steps, max_epochs):
    import torch

    mode = cfg.mode or ("max" if cfg.monitor.rsplit("/", 1)[-1] in ("accuracy", "f1", "r2") else "min")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.factor,
                                                      patience=cfg.patience)


@hookimpl
def register_components():
    return [
        Scheduler("none", NoneConfig, build_none, "A constant learning rate (optimizer.lr)."),
        Scheduler("step", StepConfig, build_step, "Multiply the learning rate by gamma every step_size epochs."),
        Scheduler("cosine", CosineConfig, build_cosine,
                  "Linear warm-up, then cosine decay to min_lr_fraction, stepped every batch.", interval="step"),
        Scheduler("onecycle", OneCycleConfig, build_onecycle,
                  "One cycle: warm up to max_lr over pct_start of the steps, then anneal.", interval="step"),
        Scheduler("plateau", PlateauConfig, build_plateau,
                  "Lower the learning rate when the monitored metric stops improving.", monitor="val/loss"),
    ]
