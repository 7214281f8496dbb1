"""What is learned: regression, binary or multi-class classification, and everything that follows.

A :class:`Task` is the one home of the facts that depend on the kind of target: the size of the
network's output, the dtype of the targets, the loss, the prediction the metrics compare with the
targets, the output link of the logged model, the metrics themselves and the metric that ranks
runs. Training (:mod:`orchestrator.lightning`), serving (:mod:`orchestrator.serving`) and the
plots ask it; none of them re-derives these from the task's name.

    task = Task.of("classification", num_classes=10)   # MulticlassClassification(num_classes=10)
    loss = task.loss(out, y)                            # out: the network's raw output (logits)
    task.metrics(task.prediction(out), y)               # {"accuracy": ..., "f1": ...}

Importing this module is cheap: torch and torchmetrics are imported by the methods that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Optional, Union

from .components import TASKS
from .errors import OrchestratorError

if TYPE_CHECKING:
    import torch


class Task:
    """The rules of one kind of target. Get one with :meth:`Task.of`.

    Every method takes the network's raw output ``out``, of shape (n, ``output_dim``), and
    creates no tensor of its own: results lie on ``out``'s device.
    """

    #: The task's name, as a data plugin gives it and a run's ``orchestrator.task`` tag holds.
    name: ClassVar[str]
    #: The size of the network's last dimension: 1 for regression and binary classification.
    output_dim: ClassVar[int] = 1
    #: The number of classes (2 for binary classification); ``None`` for regression.
    num_classes: Optional[int] = None

    @staticmethod
    def of(task: Union[str, "Task"], num_classes: Optional[int] = None) -> "Task":
        """The task of a data set: ``"regression"``; ``"classification"`` with at most two
        classes (``num_classes`` 1, 2 or ``None``) is binary, with more it is multi-class. A
        :class:`Task` is returned as it is."""
        if isinstance(task, Task):
            return task
        if task == "regression":
            return Regression()
        if task == "classification":
            if num_classes is not None and num_classes > 2:
                return MulticlassClassification(int(num_classes))
            return BinaryClassification()
        raise OrchestratorError(
            f"Unknown task {task!r}: expected one of {', '.join(TASKS)}. A data plugin's Dataset "
            "must give task='regression' (float targets) or task='classification' (integer labels)."
        )

    def target_dtype(self) -> "torch.dtype":
        """The dtype of the targets as the loss and the metrics take them."""
        raise NotImplementedError

    def loss(self, out: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
        """The mean data loss of raw outputs ``out`` against targets ``y``."""
        raise NotImplementedError

    def prediction(self, out: "torch.Tensor") -> "torch.Tensor":
        """What the metrics compare with the targets: the value, or the class."""
        raise NotImplementedError

    def link(self, out: "torch.Tensor") -> "torch.Tensor":
        """What the logged model returns: the value, shape (n,); the probability of class 1,
        shape (n,); or the probability of each class, shape (n, k)."""
        raise NotImplementedError

    def metrics(self, prediction: "torch.Tensor", target: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        """torchmetrics' functional metrics of a whole split, keyed without the stage."""
        raise NotImplementedError

    def ranking_metric(self) -> tuple[str, str]:
        """The metric that ranks runs of this task by default, and ``"min"`` or ``"max"``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Regression(Task):
    """A float target: mean squared error; MSE, MAE and R2; the model returns the value."""

    name: ClassVar[str] = "regression"

    def target_dtype(self):
        import torch

        return torch.float32

    def loss(self, out, y):
        import torch.nn.functional as F

        return F.mse_loss(out.squeeze(-1), y)

    def prediction(self, out):
        return out.squeeze(-1)

    def link(self, out):
        return out.squeeze(-1)

    def metrics(self, prediction, target):
        from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

        return {
            "mse": mean_squared_error(prediction, target),
            "mae": mean_absolute_error(prediction, target),
            "r2": r2_score(prediction, target),
        }

    def ranking_metric(self):
        return "val/loss", "min"


class Classification(Task):
    """Integer labels 0..k-1: accuracy (micro) and macro F1 over ``num_classes`` classes."""

    name: ClassVar[str] = "classification"
    num_classes: int

    def target_dtype(self):
        import torch

        return torch.long

    def metrics(self, prediction, target):
        from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

        k = self.num_classes
        return {
            "accuracy": multiclass_accuracy(prediction, target, num_classes=k, average="micro"),
            "f1": multiclass_f1_score(prediction, target, num_classes=k, average="macro"),
        }

    def ranking_metric(self):
        return "val/accuracy", "max"


@dataclass(frozen=True)
class BinaryClassification(Classification):
    """Two classes, one logit: binary cross-entropy on it; class 1 where it is positive; the
    model returns the probability of class 1 (its sigmoid)."""

    num_classes: ClassVar[int] = 2

    def loss(self, out, y):
        import torch.nn.functional as F

        out = out.squeeze(-1)
        return F.binary_cross_entropy_with_logits(out, y.to(out.dtype))

    def prediction(self, out):
        return (out.squeeze(-1) > 0).long()

    def link(self, out):
        import torch

        return torch.sigmoid(out.squeeze(-1))


@dataclass(frozen=True)
class MulticlassClassification(Classification):
    """More than two classes, a logit each: cross-entropy; the class of the largest logit; the
    model returns the probability of each class (their softmax)."""

    num_classes: int

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.num_classes

    def loss(self, out, y):
        import torch.nn.functional as F

        return F.cross_entropy(out, y)

    def prediction(self, out):
        return out.argmax(dim=-1)

    def link(self, out):
        import torch

        return torch.softmax(out, dim=-1)
