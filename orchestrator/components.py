"""What a plugin provides: component descriptions, the data container and the schema bases.

Nothing here imports torch: the catalogue of plugins can be listed, and configs composed and
checked, without paying for it. Builders import what they need when they are called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Union

from .schema import check

#: The config groups that plugins fill, in the order they are built.
GROUPS = ("data", "model", "optimizer", "regularizer", "scheduler")
#: The group whose options are chosen several at once: ``callbacks=[early_stopping,lr_monitor]``.
CALLBACKS = "callbacks"
#: The same groups in reading order: run names (``cnn-adam-none-digits``), sweep summaries.
READING_ORDER = ("model", "optimizer", "regularizer", "data")

#: Kinds of input a data plugin yields: ``tabular`` is ``x`` of shape (n, features);
#: ``image`` is ``x`` of shape (n, channels, height, width).
INPUT_KINDS = ("tabular", "image")

#: Kinds of target: ``regression`` is a float ``y`` of shape (n,); ``classification`` is an
#: integer ``y`` of shape (n,) with labels 0..num_classes-1.
TASKS = ("regression", "classification")


@dataclass(frozen=True)
class Component:
    """One option of one config group, provided by a plugin."""

    group: ClassVar[str] = ""
    #: The option's name: what the user types after ``<group>=``.
    name: str
    #: A dataclass with a default for every field: the option's typed config node.
    schema: type
    #: Builds the component; its signature depends on the kind (see each subclass).
    build: Callable[..., Any]
    #: One line shown when plugins are listed.
    description: str = ""

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.schema):
            raise TypeError(
                f"{type(self).__name__} {self.name!r}: schema must be a dataclass, "
                f"got {self.schema!r}"
            )


@dataclass(frozen=True)
class Model(Component):
    """A network. ``build(cfg, input_shape, output_dim) -> torch.nn.Module``.

    ``input_shape`` is the shape of one example (``(features,)`` or ``(C, H, W)``);
    ``output_dim`` is 1 for regression and binary classification, the number of classes
    otherwise. The module returns raw outputs (logits for classifiers).
    """

    group: ClassVar[str] = "model"
    #: Input kinds the model accepts (see ``INPUT_KINDS``).
    inputs: tuple[str, ...] = ("tabular",)
    #: Tasks the model can learn (see ``TASKS``).
    tasks: tuple[str, ...] = TASKS
    #: The data option used when the user names none (``model=cnn`` trains on ``digits``).
    default_data: Optional[str] = None


@dataclass(frozen=True)
class Optimizer(Component):
    """``build(cfg, params) -> torch.optim.Optimizer``.

    If the schema has a ``batch_size`` field, it sets the training batch size (``None`` means
    the whole training set); without one, every step sees the whole training set.
    """

    group: ClassVar[str] = "optimizer"
    #: Epochs a fit takes when ``trainer.max_epochs`` is left null (the default): what this
    #: optimizer needs to train the built-in models on the data they are made for. An epoch is
    #: one step for a full-batch optimizer and many for a mini-batch one.
    epochs: int = 20

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise TypeError(f"Optimizer {self.name!r}: epochs={self.epochs!r}; use a positive integer")


@dataclass(frozen=True)
class Regularizer(Component):
    """``build(cfg) -> penalty`` where ``penalty(module) -> scalar tensor`` is added to the loss,
    or ``None`` for no penalty."""

    group: ClassVar[str] = "regularizer"


@dataclass(frozen=True)
class Scheduler(Component):
    """A learning-rate schedule. ``build(cfg, optimizer, total_steps, max_epochs)`` returns a
    ``torch.optim.lr_scheduler`` scheduler, or ``None`` for a constant learning rate.

    ``total_steps`` is the number of optimizer steps of the whole fit (``max_epochs`` times the
    steps of an epoch). The scheduler is stepped once an epoch, or once a step with
    ``interval="step"``; one that steps on a metric (``ReduceLROnPlateau``) gets the value of
    ``monitor`` after each epoch's validation. The learning rate is logged each epoch (``train/lr``).
    """

    group: ClassVar[str] = "scheduler"
    #: ``epoch`` or ``step``: when the scheduler is stepped.
    interval: str = "epoch"
    #: The metric a metric-driven scheduler reads (``val/loss``, ``val/accuracy``, ...).
    monitor: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        if self.interval not in ("epoch", "step"):
            raise TypeError(f"Scheduler {self.name!r}: interval={self.interval!r}; use 'epoch' or 'step'")


@dataclass(frozen=True)
class Callback(Component):
    """A training callback, chosen with others: ``callbacks=[early_stopping,model_checkpoint]``.
    ``build(cfg) -> pytorch_lightning.Callback``.

    A schema field ``monitor`` (with ``mode``) names a metric the run publishes each epoch
    (``val/loss``, ``val/accuracy``, ...); left null it is the task's ranking metric
    (``val/loss`` for regression, ``val/accuracy`` for classification), and its ``mode`` follows.
    """

    group: ClassVar[str] = CALLBACKS


@dataclass(frozen=True)
class Data(Component):
    """``build(cfg, seed) -> orchestrator.Dataset``: all examples; the framework splits them.

    The schema must subclass :class:`DataConfig`, which holds the split and scaling options
    every data option shares.
    """

    group: ClassVar[str] = "data"
    #: The kind of input ``build`` yields (see ``INPUT_KINDS``), or a function of the option's
    #: settings that says it. Declared, a model that cannot take it is refused before anything
    #: is loaded; ``None``: known once the data is loaded.
    input_kind: Union[str, Callable[[Any], str], None] = None
    #: The task (see ``TASKS``), or a function of the settings that says it (``data=csv``:
    #: ``lambda cfg: cfg.task``, which is None when the task is inferred); ``None``: known once
    #: the data is loaded.
    task: Union[str, Callable[[Any], str], None] = None

    def __post_init__(self):
        super().__post_init__()
        if not issubclass(self.schema, DataConfig):
            raise TypeError(
                f"Data {self.name!r}: schema {self.schema.__name__} must subclass "
                "orchestrator.DataConfig (it carries val_fraction, test_fraction, standardize)"
            )
        for attr, allowed in (("input_kind", INPUT_KINDS), ("task", TASKS)):
            value = getattr(self, attr)
            if value is not None and not callable(value) and value not in allowed:
                raise TypeError(
                    f"Data {self.name!r}: {attr}={value!r}; use one of {', '.join(allowed)}, a "
                    "function of the option's settings that returns one, or None (undeclared)"
                )


@dataclass
class DataConfig:
    """Options every data option shares. Data schemas subclass this."""

    #: Share of the examples held out for validation, in (0, 1).
    val_fraction: float = check(0.15, gt=0, lt=1)
    #: Share of the examples held out for the final test, in (0, 1).
    test_fraction: float = check(0.15, gt=0, lt=1)
    #: Scale features to zero mean and unit variance, fitted on the training split only.
    standardize: bool = True


@dataclass
class Dataset:
    """All examples of a data set, as arrays (numpy or anything ``numpy.asarray`` accepts)."""

    #: Features: (n, features) for tabular data, (n, channels, height, width) for images.
    x: Any
    #: Targets, shape (n,): floats for regression, integer labels 0..k-1 for classification.
    y: Any
    #: ``"regression"`` or ``"classification"``.
    task: str
    #: Number of classes for classification; ``None`` for regression.
    num_classes: Optional[int] = None
    #: Where the examples came from (a file path, a generator): logged with the run.
    source: str = ""
    #: How the task was decided, when the data option infers it (``data=csv``: "integer
    #: labels", "text target", ...): the run's ``orchestrator.task.rule`` tag.
    task_rule: str = ""
