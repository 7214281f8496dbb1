"""The plugin module named by the entry point: hook implementations only.

Keep this module cheap to import (no torch, no Lightning at module level): orchestrator imports
it for `orchestrator plugins` and `--help` too. Builders import what they need when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from orchestrator import Data, DataConfig, Dataset, Model, check, hookimpl


@dataclass
class MLPConfig:
    #: Widths of the hidden layers, e.g. [64, 32]; each at least 1.
    hidden: List[int] = check(default_factory=lambda: [64, 64], ge=1)
    #: Activation between layers: relu or tanh.
    activation: str = check("relu", choices=("relu", "tanh"))


@dataclass
class MoonsConfig(DataConfig):
    #: Number of examples generated.
    n_samples: int = check(1000, ge=10)
    #: Standard deviation of the Gaussian noise added to the points.
    noise: float = check(0.15, ge=0)


def build_mlp(cfg: MLPConfig, input_shape, output_dim):
    from .nets import MLP

    return MLP(input_shape, output_dim, hidden=list(cfg.hidden), activation=cfg.activation)


def make_moons(cfg: MoonsConfig, seed: int) -> Dataset:
    """Two interleaving half circles: a non-linear binary problem."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_upper = cfg.n_samples // 2
    n_lower = cfg.n_samples - n_upper
    angle_upper = rng.uniform(0, np.pi, n_upper)
    angle_lower = rng.uniform(0, np.pi, n_lower)
    upper = np.c_[np.cos(angle_upper), np.sin(angle_upper)]
    lower = np.c_[1 - np.cos(angle_lower), 0.5 - np.sin(angle_lower)]
    x = np.r_[upper, lower] + rng.normal(scale=cfg.noise, size=(cfg.n_samples, 2))
    y = np.r_[np.zeros(n_upper, dtype=int), np.ones(n_lower, dtype=int)]
    return Dataset(x, y, task="classification", num_classes=2, source="two moons")


@hookimpl
def register_components():
    return [
        Model(
            name="mlp",
            schema=MLPConfig,
            build=build_mlp,
            description="Multi-layer perceptron on flattened inputs.",
            inputs=("tabular", "image"),
            tasks=("regression", "classification"),
            default_data="moons",
        ),
        Data(name="moons", schema=MoonsConfig, build=make_moons,
             description="Two interleaving half circles (binary, non-linear)."),
    ]


@hookimpl
def config_search_paths():
    # conf/model/mlp_wide.yaml becomes the option model=mlp_wide.
    return ["pkg://orchestrator_mlp.conf"]


@hookimpl
def add_callbacks(cfg):
    from .callbacks import EpochTimer

    return [EpochTimer()]


@hookimpl
def on_run_end(run, cfg, status, metrics):
    if cfg.model._name_ == "mlp" and status == "FINISHED":
        run.set_tags({"orchestrator_mlp.hidden": str(list(cfg.model.hidden))})
