"""The torch modules behind the built-in models."""

from __future__ import annotations

import math

import torch
from torch import nn

from orchestrator import OrchestratorError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class Affine(nn.Module):
    """``x -> W x + b`` on flattened inputs: linear and logistic regression share it."""

    def __init__(self, input_shape, output_dim: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), output_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class CNN(nn.Module):
    """conv-act-pool, conv-act-pool, dense-act, dense; the dense size follows the input."""

    def __init__(
        self,
        input_shape,
        output_dim: int,
        channels=(16, 32),
        hidden: int = 64,
        activation: str = "relu",
        kernel_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise OrchestratorError(
                f"model.activation={activation!r} is not known; expected one of "
                f"{', '.join(ACTIVATIONS)}."
            )
        if len(input_shape) != 3:
            raise OrchestratorError(
                f"The cnn model needs images of shape (channels, height, width); got examples of "
                f"shape {tuple(input_shape)}."
            )
        in_channels, height, width = input_shape
        if height < 4 or width < 4:
            raise OrchestratorError(
                f"The cnn model pools twice by 2 and needs images of at least 4x4; got "
                f"{height}x{width}."
            )
        act = ACTIVATIONS[activation]
        pad = kernel_size // 2
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size, padding=pad),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size, padding=pad),
            act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = c2 * (height // 2 // 2) * (width // 2 // 2)
        self.head = nn.Sequential(
            nn.Linear(flat, hidden), act(), nn.Dropout(dropout), nn.Linear(hidden, output_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
