"""Turning a data plugin's examples into seeded train/val/test splits (numpy; pandas for tables).

A data plugin's features are an array, or a table (a pandas DataFrame: named columns, each of its
own type). A table's text columns are one-hot encoded here, where the split happens, with the
categories of the training split only (:class:`TableEncoder`), as standardisation is fitted on
the training split only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Hashable, Optional

import numpy as np

from .components import Dataset
from .errors import OrchestratorError
from .settings import check_fractions
from .task import Task

log = logging.getLogger(__name__)

#: A text column with more categories than this in the training split is named in a warning:
#: each category is a feature, and an identifier column (a name, an id) is rarely meant as one.
MANY_CATEGORIES = 100


def is_table(x: Any) -> bool:
    """Whether a data set's features ``x`` are a table (a pandas DataFrame) rather than an array."""
    return hasattr(x, "columns") and hasattr(x, "iloc") and hasattr(x, "dtypes")


def is_text(column: Any) -> bool:
    """Whether a table's column (a pandas Series) holds text, to be one-hot encoded: anything but
    numbers and booleans (object, string and category dtypes)."""
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype))


@dataclass
class TableEncoder:
    """A table's rows as float features, with what was learned from the training split.

    Each column, in order, gives one feature (numbers, as they are) or, for a text column, one
    0/1 feature per category the training split holds (sorted): 1 for the row's category, 0 for
    the others. A category the training split did not hold (seen only in validation or test
    rows, or new at prediction time) and a missing value (None, NaN) are all zeros: no error.
    """

    #: Each feature column, in order: its name and ``None`` (numbers) or its categories (text).
    columns: list[tuple[Hashable, Optional[list[str]]]]

    @classmethod
    def fit(cls, table: Any, rows: Any = None, name: str = "") -> "TableEncoder":
        """The encoder of ``table`` (a DataFrame) with the categories of ``rows`` (positions:
        the training split; ``None``: every row)."""
        train = table if rows is None else table.iloc[rows]
        columns: list[tuple[Hashable, Optional[list[str]]]] = []
        for column in table.columns:
            if not is_text(table[column]):
                columns.append((column, None))
                continue
            categories = sorted(set(train[column].dropna().astype(str)))
            if len(categories) > MANY_CATEGORIES:
                log.warning("Data %s: text column %r has %d categories in the training split, one feature "
                            "each; leave it out (data.features) if it is an identifier", name or "?",
                            column, len(categories))
            columns.append((column, categories))
        return cls(columns)

    @property
    def text_columns(self) -> list[Hashable]:
        return [column for column, categories in self.columns if categories is not None]

    @property
    def feature_names(self) -> list[str]:
        """The name of each feature: the column's, or ``column=category``."""
        return [name for column, categories in self.columns
                for name in ([str(column)] if categories is None else [f"{column}={c}" for c in categories])]

    @property
    def one_hot(self) -> np.ndarray:
        """Which features are one-hot (left unscaled by standardisation: 0 stays "not this one")."""
        return np.array([categories is not None for _, categories in self.columns
                         for _ in (categories if categories is not None else [None])], dtype=bool)

    def transform(self, table: Any) -> np.ndarray:
        """The features of ``table``'s rows, float64 of shape (rows, features)."""
        import pandas as pd

        missing = [column for column, categories in self.columns if categories is None and column not in table]
        if missing:
            raise OrchestratorError(
                f"The table has no column {missing[0]!r}; the model takes the columns "
                f"{', '.join(str(c) for c, _ in self.columns)}."
            )
        n = len(table)
        parts = []
        for column, categories in self.columns:
            if categories is None:
                parts.append(np.asarray(table[column], dtype=np.float64).reshape(n, 1))
                continue
            block = np.zeros((n, len(categories)))
            if column in table:  # an absent text column: all missing
                values = table[column]
                present = np.flatnonzero(values.notna().to_numpy())
                codes = pd.Index(categories).get_indexer(values.iloc[present].astype(str))  # -1: unseen
                known = codes >= 0
                block[present[known], codes[known]] = 1.0
            parts.append(block)
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))


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
    #: For features given as a table (a DataFrame): the encoder fitted on the training split, which
    #: made the arrays above, and the test split's rows as given (the logged model's input
    #: example); ``None`` for features given as an array.
    encoder: Optional[TableEncoder] = None
    raw_test: Any = None

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
    by class for classification) and standardise with statistics of the training split.

    Features given as a table (a DataFrame) are first encoded by a :class:`TableEncoder` fitted
    on the training split's rows: numeric columns as they are, text columns one-hot with the
    training split's categories; the one-hot features are not standardised."""
    table = data.x if is_table(data.x) else None
    x = np.asarray(data.x, dtype=np.float32) if table is None else None
    y = np.asarray(data.y)
    shape = x.shape if table is None else table.shape
    if len(shape) not in (2, 4) or shape[0] != len(y) or y.ndim != 1:
        raise OrchestratorError(
            f"Data {name!r} returned x of shape {shape} and y of shape {y.shape}; expected x of "
            "shape (n, features) or (n, channels, height, width) and y of shape (n,)."
        )
    if x is not None and not np.isfinite(x).all():
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

    encoder = None
    if table is not None:  # the categories of the training split only, as the scaling below
        encoder = TableEncoder.fit(table, train, name)
        x = encoder.transform(table).astype(np.float32)
        if not np.isfinite(x).all():
            raise OrchestratorError(f"Data {name!r} has NaN or infinite feature values.")
    if cfg.standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        std[std == 0] = 1.0
        if encoder is not None:  # one-hot features stay 0/1: all zeros still means "none of these"
            mean[encoder.one_hot], std[encoder.one_hot] = 0.0, 1.0
    else:
        mean = np.zeros(x.shape[1:], dtype=np.float32)
        std = np.ones(x.shape[1:], dtype=np.float32)
    scaled = (x - mean) / std
    return Splits(
        scaled[train], y[train], scaled[val], y[val], scaled[test], y[test],
        task=data.task, num_classes=num_classes, mean=mean.astype(np.float32), std=std.astype(np.float32),
        task_rule=data.task_rule or f"given by data={name}",
        encoder=encoder, raw_test=None if table is None else table.iloc[test],
    )
