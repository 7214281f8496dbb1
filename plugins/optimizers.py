"""Built-in optimizers: full-batch gradient descent, mini-batch SGD, Adam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator import Optimizer, check, hookimpl


@dataclass
class GDConfig:
    #: Step size. Every step sees the whole training set (one step per epoch).
    lr: float = check(0.1, gt=0)
    #: Momentum factor in [0, 1); 0 is plain gradient descent. With Nesterov's momentum, full-batch
    #: descent needs about the square root of plain descent's steps on badly conditioned data
    #: (correlated features): 40 reach scikit-learn's solutions where plain descent needs 300+.
    momentum: float = check(0.9, ge=0, lt=1)
    #: Use Nesterov's momentum (when momentum > 0).
    nesterov: bool = True


@dataclass
class MinibatchConfig:
    #: Step size.
    lr: float = check(0.05, gt=0)
    #: Examples per step; the training set is reshuffled every epoch.
    batch_size: int = check(32, ge=1)
    #: Momentum factor in [0, 1).
    momentum: float = check(0.0, ge=0, lt=1)
    #: Use Nesterov momentum (needs momentum > 0).
    nesterov: bool = False


@dataclass
class AdamConfig:
    #: Step size.
    lr: float = check(3e-3, gt=0)
    #: Examples per step; null trains on the whole training set at every step.
    batch_size: Optional[int] = check(64, ge=1)
    #: Decay rate of the first moment estimate, in [0, 1).
    beta1: float = check(0.9, ge=0, lt=1)
    #: Decay rate of the second moment estimate, in [0, 1).
    beta2: float = check(0.999, ge=0, lt=1)
    #: Added to the denominator for numerical stability.
    eps: float = check(1e-8, gt=0)


def build_gd(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


def build_minibatch(cfg, params):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def build_adam(cfg, params):
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


@hookimpl
def register_components():
    return [
        Optimizer("gd", GDConfig, build_gd,
                  "Full-batch gradient descent (Nesterov momentum): one step per epoch.", epochs=40),
        Optimizer("minibatch", MinibatchConfig, build_minibatch, "SGD on shuffled mini-batches.",
                  epochs=20),
        Optimizer("adam", AdamConfig, build_adam, "Adam on shuffled mini-batches.", epochs=12),
    ]
