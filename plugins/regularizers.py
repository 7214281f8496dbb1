"""Built-in regularizers: penalties on the weights (not the biases) added to the loss."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Regularizer, check, hookimpl


@dataclass
class NoneConfig:
    pass


@dataclass
class L1Config:
    #: Multiplies the sum of absolute weights.
    strength: float = check(1e-3, ge=0)


@dataclass
class L2Config:
    #: Multiplies the sum of squared weights.
    strength: float = check(1e-3, ge=0)


@dataclass
class ElasticNetConfig:
    #: Multiplies the whole penalty.
    strength: float = check(1e-3, ge=0)
    #: Share of the L1 term, in [0, 1]; the rest is L2.
    l1_ratio: float = check(0.5, ge=0, le=1)


def weights(module):
    """The parameters penalised: weight matrices and kernels, never biases."""
    return [p for name, p in module.named_parameters() if p.ndim > 1]


def penalty(l1: float, l2: float):
    def compute(module):
        total = 0.0
        for w in weights(module):
            if l1:
                total = total + l1 * w.abs().sum()
            if l2:
                total = total + l2 * w.pow(2).sum()
        return total

    return compute


@hookimpl
def register_components():
    return [
        Regularizer("none", NoneConfig, lambda cfg: None, "No penalty."),
        Regularizer("l1", L1Config, lambda cfg: penalty(cfg.strength, 0.0), "strength * sum|w|"),
        Regularizer("l2", L2Config, lambda cfg: penalty(0.0, cfg.strength), "strength * sum w^2"),
        Regularizer(
            "elasticnet",
            ElasticNetConfig,
            lambda cfg: penalty(cfg.strength * cfg.l1_ratio, cfg.strength * (1 - cfg.l1_ratio)),
            "strength * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w^2)",
        ),
    ]
