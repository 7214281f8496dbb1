"""The module logged to MLflow: raw features in, predictions out."""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """Applies the training split's scaling, the trained network, and the task's output link.

    Regression returns the predicted value, shape (n,); binary classification the probability
    of class 1, shape (n,); more classes the probability of each class, shape (n, k).
    """

    def __init__(self, model: nn.Module, mean, std, task: str, num_classes):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.task = task
        self.binary = task == "classification" and (num_classes or 2) <= 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model((x.to(torch.float32) - self.mean) / self.std)
        if self.task == "regression":
            return out.squeeze(-1)
        if self.binary:
            return torch.sigmoid(out.squeeze(-1))
        return torch.softmax(out, dim=-1)
