"""Built-in models: linear regression, logistic (softmax) regression, a small CNN."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Model, check, hookimpl


@dataclass
class LinearConfig:
    #: Learn an intercept.
    bias: bool = True


@dataclass
class LogisticConfig:
    #: Learn an intercept.
    bias: bool = True


@dataclass
class CNNConfig:
    #: Output channels of the first convolution.
    channels1: int = check(32, ge=1)
    #: Output channels of the second convolution.
    channels2: int = check(64, ge=1)
    #: Width of the hidden dense layer.
    hidden: int = check(128, ge=1)
    #: Activation after each hidden layer: relu, tanh or sigmoid.
    activation: str = check("relu", choices=("relu", "tanh", "sigmoid"))
    #: Convolution kernel size (odd; padding keeps the spatial size).
    kernel_size: int = check(3, choices=(1, 3, 5, 7))
    #: Dropout before the last dense layer, in [0, 1).
    dropout: float = check(0.0, ge=0, lt=1)


def build_affine(cfg, input_shape, output_dim):
    from .nets import Affine

    return Affine(input_shape, output_dim, bias=cfg.bias)


def build_cnn(cfg, input_shape, output_dim):
    from .nets import CNN

    return CNN(
        input_shape,
        output_dim,
        channels=(cfg.channels1, cfg.channels2),
        hidden=cfg.hidden,
        activation=cfg.activation,
        kernel_size=cfg.kernel_size,
        dropout=cfg.dropout,
    )


@hookimpl
def register_components():
    return [
        Model(
            name="linear",
            schema=LinearConfig,
            build=build_affine,
            description="Linear regression with bias, trained on mean squared error.",
            inputs=("tabular",),
            tasks=("regression",),
            default_data="regression",
        ),
        Model(
            name="logistic",
            schema=LogisticConfig,
            build=build_affine,
            description="Logistic regression: sigmoid + BCE for two classes, softmax beyond.",
            inputs=("tabular", "image"),
            tasks=("classification",),
            default_data="classification",
        ),
        Model(
            name="cnn",
            schema=CNNConfig,
            build=build_cnn,
            description="conv-pool-conv-pool-dense-dense network sized from the input images.",
            inputs=("image",),
            tasks=("classification", "regression"),
            default_data="digits",
        ),
    ]
