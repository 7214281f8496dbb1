"""Built-in optimizers: full-batch gradient descent, mini-batch SGD, Adam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator import Optimizer, hookimpl


@dataclass
class GDConfig:
    #: Step size. Every step sees the whole training set (one step per epoch).
    lr: float = 0.2


@dataclass
class MinibatchConfig:
    #: Step size.
    lr: float = 0.05
    #: Examples per step; the training set is reshuffled every epoch.
    batch_size: int = 32
    #: Momentum factor in [0, 1).
    momentum: float = 0.0
    #: Use Nesterov momentum (needs momentum > 0).
    nesterov: bool = False


@dataclass
class AdamConfig:
    #: Step size.
    lr: float = 1e-3
    #: Examples per step; null trains on the whole training set at every step.
    batch_size: Optional[int] = 64
    #: Decay rate of the first moment estimate.
    beta1: float = 0.9
    #: Decay rate of the second moment estimate.
    beta2: float = 0.999
    #: Added to the denominator for numerical stability.
    eps: float = 1e-8


def build_gd(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr)


def build_minibatch(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def build_adam(cfg, params):
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


@hookimpl
def register_components():
    return [
        Optimizer("gd", GDConfig, build_gd, "Full-batch gradient descent: one step per epoch."),
        Optimizer(
            "minibatch", MinibatchConfig, build_minibatch, "SGD on shuffled mini-batches."
        ),
        Optimizer("adam", AdamConfig, build_adam, "Adam on shuffled mini-batches."),
    ]
