"""Turning a data plugin's examples into seeded train/val/test splits (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .components import Dataset
from .errors import OrchestratorError
from .settings import check_fractions
from .task import Task


@dataclass
class Splits:
    """Arrays ready for training: float32 features, targets, and the fitted scaling."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: ``"regression"`` or ``"classification"``, and the number of classes (``None``: regression);
    #: :attr:`task_object` holds what follows from them.
    task: str
    num_classes: int | None
    #: Per-feature mean and standard deviation fitted on the training split (0 and 1 if off).
    mean: np.ndarray
    std: np.ndarray
    #: What decided ``task`` (a run's ``orchestrator.task.rule`` tag): the rule a data option that
    #: infers it gave (``Dataset.task_rule``: ``"integer labels"``), else ``"given by data=<name>"``.
    task_rule: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_kind(self) -> str:
        return "image" if self.x_train.ndim == 4 else "tabular"

    @property
    def task_object(self) -> Task:
        """The loss, link, prediction, metrics and output size of ``task`` (:class:`Task`)."""
        return Task.of(self.task, self.num_classes)

    @property
    def output_dim(self) -> int:
        return self.task_object.output_dim


def split(data: Dataset, cfg, seed: int, name: str) -> Splits:
    """Shuffle with ``seed``, hold out ``cfg.val_fraction`` and ``cfg.test_fraction`` (stratified
    by class for classification) and standardise with statistics of the training split."""
    x = np.asarray(data.x, dtype=np.float32)
    y = np.asarray(data.y)
    if x.ndim not in (2, 4) or len(x) != len(y) or y.ndim != 1:
        raise OrchestratorError(
            f"Data {name!r} returned x of shape {x.shape} and y of shape {y.shape}; expected x of "
            "shape (n, features) or (n, channels, height, width) and y of shape (n,)."
        )
    if not np.isfinite(x).all():
        raise OrchestratorError(f"Data {name!r} has NaN or infinite feature values.")
    if data.task == "classification":
        y = y.astype(np.int64)
        num_classes = data.num_classes or int(y.max()) + 1
    else:
        y = y.astype(np.float32)
        num_classes = None
    check_fractions(cfg)  # checked before loading too (settings.validate); split() may be called alone

    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in range(num_classes)] if num_classes else [np.arange(len(y))]
    train, val, test = [], [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = int(round(len(idx) * cfg.test_fraction))
        n_val = int(round(len(idx) * cfg.val_fraction))
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    train, val, test = (rng.permutation(np.concatenate(part)) for part in (train, val, test))
    if min(len(train), len(val), len(test)) == 0:
        raise OrchestratorError(
            f"Data {name!r} has {len(y)} examples: too few to split into train ({len(train)}), "
            f"val ({len(val)}) and test ({len(test)})."
        )

    if cfg.standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        std[std == 0] = 1.0
    else:
        mean = np.zeros(x.shape[1:], dtype=np.float32)
        std = np.ones(x.shape[1:], dtype=np.float32)
    scaled = (x - mean) / std
    return Splits(
        scaled[train], y[train], scaled[val], y[val], scaled[test], y[test],
        task=data.task, num_classes=num_classes, mean=mean.astype(np.float32), std=std.astype(np.float32),
        task_rule=data.task_rule or f"given by data={name}",
    )
