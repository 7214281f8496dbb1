"""What is learned: regression, binary or multi-class classification, and everything that follows.

A :class:`Task` is the one home of the facts that depend on the kind of target: the size of the
network's output, the dtype of the targets, the loss, the prediction the metrics compare with the
targets, the output link of the logged model, the metrics themselves and the metric that ranks
runs. Training (:mod:`orchestrator.lightning`), serving (:mod:`orchestrator.serving`) and the
plots ask it; none of them re-derives these from the task's name.

    task = Task.of("classification", num_classes=10)   # MulticlassClassification(num_classes=10)
    loss = task.loss(out, y)                            # out: the network's raw output (logits)
    task.metrics(task.prediction(out), y)               # {"accuracy": ..., "f1": ...}

A data set that does not know its task (``data=csv`` without ``data.task``) asks
:func:`infer_task`, which reads the target values and the model being trained (:func:`learning`).

Importing this module is cheap: torch and torchmetrics are imported by the methods that use them.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional, Union

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

    #: The names of :meth:`metrics`, known before any is computed.
    metric_names: ClassVar[tuple[str, ...]] = ()

    def monitorable(self) -> list[str]:
        """The metrics an epoch publishes, which callbacks and schedules can watch."""
        return ["train/loss", "val/loss", *(f"val/{m}" for m in self.metric_names)]

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

    metric_names: ClassVar[tuple[str, ...]] = ("mse", "mae", "r2")


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

    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "f1")


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


# ---------------------------------------------------------------------------------------------
# Inferring the task of a target


#: Numbers are read as class labels when they are whole, at most this many distinct values, and
#: at most half as many distinct values as examples (each label seen twice on average).
MAX_LABELS = 20
#: The rules of :func:`infer_task`, in the order they apply, as the log and a run's
#: ``orchestrator.task.rule`` tag say them.
TEXT_TARGET = "text target"
ONE_TASK = "model learns one task"
INTEGER_LABELS = "integer labels"
NUMERIC_TARGET = "numeric target"


@dataclass(frozen=True)
class Learner:
    """The model a data set is loaded for: what :func:`infer_task` may take into account."""

    #: The model option's name (``logistic``).
    name: str
    #: The tasks it learns (``Model.tasks``).
    tasks: tuple[str, ...]
    #: For each task, the model options that learn it and take the same inputs: named in a refusal.
    others: dict[str, tuple[str, ...]] = field(default_factory=dict)


_learner: contextvars.ContextVar[Optional[Learner]] = contextvars.ContextVar("orchestrator_learner", default=None)


@contextlib.contextmanager
def learning(learner: Optional[Learner]) -> Iterator[None]:
    """Within the block, :func:`current_learner` is ``learner``: a run loads its data inside
    ``with learning(...)``, so that a data plugin can infer its task for the chosen model."""
    token = _learner.set(learner)
    try:
        yield
    finally:
        _learner.reset(token)


def current_learner() -> Optional[Learner]:
    """The model the data being loaded is for; None outside a run (a contract test, a notebook)."""
    return _learner.get()


def infer_task(y: Any, target: str, learner: Optional[Learner] = None, setting: str = "data.task",
               row: Callable[[int], str] = lambda i: f"row {i + 1}") -> tuple[str, str]:
    """The task of the target values ``y`` (one per example) and the rule that decided it.

    The rules, in order: text (or true/false) values are labels: classification
    (:data:`TEXT_TARGET`); a model that learns one task: that task (:data:`ONE_TASK`); whole
    numbers with few distinct values (:data:`MAX_LABELS`): classification
    (:data:`INTEGER_LABELS`); numbers with many distinct values: regression
    (:data:`NUMERIC_TARGET`). Refused, with one :class:`OrchestratorError` naming the fix
    (``setting=classification`` or ``setting=regression``): text for a model that learns only
    regression; many distinct fractional numbers for a model that learns only classification;
    and the truly ambiguous, a few distinct fractional numbers (0.5, 1.5, 2.5), for a model that
    learns both or none named. ``target`` names the column in messages, ``row(i)`` its i-th
    value; ``learner`` defaults to :func:`current_learner`.
    """
    import numpy as np

    learner = learner if learner is not None else current_learner()
    y = np.asarray(y)
    model = f"model={learner.name}" if learner is not None else ""

    def others(task: str) -> str:
        names = (learner.others.get(task, ()) if learner is not None else ())
        return f" ({', '.join(f'model={n}' for n in names)})" if names else ""

    if y.dtype.kind not in "iuf":  # text, true/false, or numbers mixed with text
        if learner is not None and "classification" not in learner.tasks:
            bad = next((i for i, v in enumerate(y) if not _is_number(v)), 0)
            raise OrchestratorError(
                f"{target} holds text ({y[bad]!r} at {row(bad)}), which makes it class labels "
                f"(classification), but {model} learns only {' or '.join(learner.tasks)}. Train a "
                f"model that learns classification{others('classification')}; or, if the column "
                f"should hold numbers, fix {row(bad)} and any other value that is not a number."
            )
        return "classification", TEXT_TARGET
    values = y.astype(np.float64)
    distinct = np.unique(values)
    whole = bool(np.all(values == np.round(values)))
    few = len(distinct) <= MAX_LABELS and len(distinct) <= len(values) / 2
    shown = ", ".join(f"{v:g}" for v in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
    seen = (f"{len(distinct)} distinct numbers over {len(values)} rows ({y.dtype}, "
            f"{'all whole' if whole else 'not all whole'}: {shown})")
    if learner is not None and len(learner.tasks) == 1:
        (task,) = learner.tasks
        if task == "classification" and not whole and not few:
            raise OrchestratorError(
                f"{target} holds {seen}: a quantity to predict (regression), but {model} learns "
                f"only classification. Train a model that learns regression{others('regression')}; "
                f"or set {setting}=classification to make each distinct value a class."
            )
        return task, ONE_TASK
    if whole and few:
        return "classification", INTEGER_LABELS
    if not few:
        return "regression", NUMERIC_TARGET
    learns = f"{model} learns both tasks" if learner is not None else "no model was named to decide"
    raise OrchestratorError(
        f"{target} may be class labels or a quantity: it holds {seen}, and {learns}. Say which: "
        f"{setting}=classification (each distinct value a class) or {setting}=regression (predict "
        "the number)."
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
