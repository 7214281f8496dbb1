"""Figures logged as MLflow artifacts, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def learning_curves(histories: dict[str, Sequence[float]]) -> Figure:
    """Loss per epoch, one line per series (``train/loss``, ``val/loss``)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for name, values in histories.items():
        if len(values):
            axes.plot(np.arange(1, len(values) + 1), values, label=name, marker="." if len(values) < 30 else None)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    if any(np.all(np.asarray(v) > 0) and len(v) for v in histories.values()):
        axes.set_yscale("log")
    axes.legend()
    axes.set_title("Learning curves")
    return figure


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Figure:
    """Counts of true class (rows) against predicted class (columns) on the test split."""
    counts = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(counts, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    size = min(8, 2 + 0.5 * num_classes)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    for (i, j), count in np.ndenumerate(counts):
        axes.text(j, i, str(count), ha="center", va="center",
                  color="white" if count > counts.max() / 2 else "black", fontsize=8)
    axes.set_xticks(range(num_classes))
    axes.set_yticks(range(num_classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    accuracy = np.trace(counts) / max(1, counts.sum())
    axes.set_title(f"Confusion matrix (test accuracy {accuracy:.3f})")
    return figure


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray) -> Figure:
    """Scatter of predictions against targets on the test split, with the identity line."""
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(y_true, y_pred, s=8, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.legend()
    axes.set_title("Predicted vs true (test split)")
    return figure


def sweep_comparison(labels: Sequence[str], values: Sequence[float], metric: str, best: int | None) -> Figure:
    """One bar per child run of a sweep; failed runs (NaN) are marked, the best is highlighted."""
    figure = Figure(figsize=(max(5, 0.5 * len(labels) + 2), 4.5), layout="constrained")
    axes = figure.add_subplot()
    values = np.asarray(values, dtype=float)
    colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(values))]
    axes.bar(range(len(values)), np.nan_to_num(values, nan=0.0), color=colors)
    for i, value in enumerate(values):
        if np.isnan(value):
            axes.text(i, 0, "failed", rotation=90, ha="center", va="bottom", color="red")
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel(metric)
    axes.set_title(f"Sweep: {metric} per run" + (" (best in orange)" if best is not None else ""))
    return figure
