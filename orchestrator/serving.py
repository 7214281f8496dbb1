"""The module logged to MLflow: raw features in, predictions out.

:class:`Predictor` takes an array of features (the PyTorch model logged for array data);
:class:`TablePredictor` takes a table's raw rows, a pandas DataFrame with the training data's
columns (the pyfunc model logged for table data, whose text columns it one-hot encodes).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .task import MulticlassClassification, Task


class Predictor(nn.Module):
    """Applies the training split's scaling, the trained network, and the task's output link
    (:meth:`orchestrator.task.Task.link`).

    Regression returns the predicted value, shape (n,); binary classification the probability
    of class 1, shape (n,); more classes the probability of each class, shape (n, k).
    """

    def __init__(self, model: nn.Module, mean, std, task: Union[str, Task], num_classes: Optional[int] = None):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.task = Task.of(task, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.link(self.model((x.to(torch.float32) - self.mean) / self.std))

    def __setstate__(self, state: dict) -> None:
        # A model logged before orchestrator.task held the task's name and a ``binary`` flag.
        # Its class is pickled by reference, so once loaded it runs this forward: give it a Task
        # (only its link is used, and the multi-class link needs no number of classes).
        if isinstance(state.get("task"), str):
            name, binary = state["task"], state.pop("binary", False)
            multiclass = name == "classification" and not binary
            state["task"] = MulticlassClassification(num_classes=None) if multiclass else Task.of(name)
        super().__setstate__(state)


class TablePredictor(nn.Module):
    """A table's raw rows in (a pandas DataFrame with the columns trained on, in any order; other
    columns are ignored), predictions out: the training split's
    :class:`~orchestrator.datasets.TableEncoder` (numbers as they are; each text column one-hot
    with the training split's categories, a category it did not hold or a missing value all
    zeros), then the :class:`Predictor` (scaling, network, output link). It returns what the
    :class:`Predictor` does, as numpy from :meth:`predict`."""

    def __init__(self, encoder: Any, predictor: Predictor):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, table: Any) -> torch.Tensor:
        features = torch.from_numpy(self.encoder.transform(table).astype(np.float32))
        return self.predictor(features)

    def predict(self, table: Any) -> np.ndarray:
        with torch.no_grad():
            return self.eval()(table).numpy()
