"""Built-in data: synthetic regression and classification, scikit-learn's digits, a user's CSV."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from orchestrator import Data, DataConfig, Dataset, OrchestratorError, check, hookimpl

log = logging.getLogger(__name__)


@dataclass
class RegressionConfig(DataConfig):
    #: Number of examples generated.
    n_samples: int = check(1000, ge=10)
    #: Number of features; y = 3 * (x_1 + ... + x_d) + 2 + noise.
    n_features: int = check(1, ge=1)
    #: Standard deviation of the Gaussian noise added to y.
    noise: float = check(0.5, ge=0)


@dataclass
class ClassificationConfig(DataConfig):
    #: Number of examples generated.
    n_samples: int = check(1000, ge=10)
    #: Number of features.
    n_features: int = check(2, ge=1)
    #: Distance between the two Gaussian class centres (unit variance each).
    separation: float = check(2.0, ge=0)


@dataclass
class DigitsConfig(DataConfig):
    #: Pixels are scaled to [0, 1]; per-pixel standardisation is off by default.
    standardize: bool = False


@dataclass
class CSVConfig(DataConfig):
    #: Path of the CSV file (relative to the directory the command runs from). Required.
    path: str = ""
    #: Name of the target column. Required.
    target: str = ""
    #: Feature columns; null uses every column except the target. A column of numbers is a
    #: feature as it is; a column of text is one-hot encoded with the categories of the training
    #: split (orchestrator.datasets.TableEncoder).
    features: Optional[List[str]] = None
    #: regression (numeric target) or classification (labels of any type); null (the default)
    #: infers it from the target column and the model (orchestrator.task.infer_task).
    task: Optional[str] = check(None, choices=("regression", "classification"))


def make_regression(cfg: RegressionConfig, seed: int) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features))
    y = 3.0 * x.sum(axis=1) + 2.0 + rng.normal(scale=cfg.noise, size=cfg.n_samples)
    return Dataset(x, y, task="regression", source="synthetic: y = 3x + 2 + noise")


def make_classification(cfg: ClassificationConfig, seed: int) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=cfg.n_samples)
    direction = np.ones(cfg.n_features) / np.sqrt(cfg.n_features)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features))
    x += np.outer(y - 0.5, direction) * cfg.separation
    return Dataset(x, y, task="classification", num_classes=2, source="synthetic: two Gaussians")


def load_digits(cfg: DigitsConfig, seed: int) -> Dataset:
    """scikit-learn's bundled copy of the UCI digits, read straight from its data file: importing
    scikit-learn itself would add more than a second to every run's start-up."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        pixels, target = table[:, :-1], table[:, -1].astype(int)
    else:  # a layout this code does not know: ask scikit-learn
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        pixels, target = digits.data, digits.target
    x = pixels.reshape(-1, 1, 8, 8) / 16.0  # (n, 1, 8, 8) in [0, 1]
    return Dataset(x, target, task="classification", num_classes=10, source="sklearn digits")


def load_csv(cfg: CSVConfig, seed: int) -> Dataset:
    import numpy as np
    import pandas as pd

    if not cfg.path:
        raise OrchestratorError("data=csv needs data.path=<file.csv> (the CSV file to train on).")
    if cfg.task not in (None, "regression", "classification"):
        raise OrchestratorError(
            f"data.task={cfg.task!r} is not known; expected regression or classification, or "
            "leave it out to infer the task from the target."
        )
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise OrchestratorError(
            f"data.path={cfg.path!r}: no such file (looked at {path.resolve()})."
        )
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise OrchestratorError(f"data.path={cfg.path!r}: the file is empty.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise OrchestratorError(f"data.path={cfg.path!r} is not a readable CSV: {error}") from None
    columns = list(frame.columns)
    if frame.empty:
        raise OrchestratorError(f"data.path={cfg.path!r} has a header but no rows.")
    if not cfg.target:
        raise OrchestratorError(
            f"data=csv needs data.target=<column>; the columns of {cfg.path} are: "
            f"{', '.join(map(str, columns))}."
        )
    features = list(cfg.features) if cfg.features is not None else [
        c for c in columns if c != cfg.target
    ]
    for role, names in (("target", [cfg.target]), ("feature", features)):
        missing = [n for n in names if n not in columns]
        if missing:
            raise OrchestratorError(
                f"data.path={cfg.path!r} has no {role} column {missing[0]!r}; its columns are: "
                f"{', '.join(map(str, columns))}."
            )
    if not features:
        raise OrchestratorError(f"data.path={cfg.path!r} has no feature columns besides the target.")
    # A feature column holds numbers, or text: categories, which the framework one-hot encodes
    # where it splits (orchestrator.datasets.split), with the training split's categories. A
    # column of numbers with text in it (a typo?) is refused.
    text = []
    for column in features:
        values = frame[column].dropna()
        numeric = pd.to_numeric(values, errors="coerce").notna().to_numpy()
        if values.dtype.kind in "biuf" or numeric.all():
            continue
        if numeric.any():
            row = int(frame.index.get_loc(values.index[(~numeric).nonzero()[0][0]]))
            raise OrchestratorError(
                f"data.path={cfg.path!r}: column {column!r} must be numeric but line {row + 2} of "
                f"the file holds {frame[column].iloc[row]!r}; it holds numbers elsewhere. A column "
                "is read as text categories (one-hot encoded) only when none of its values is a number."
            )
        text.append(column)
    # Missing values are refused, never filled: a silent fill changes what is learned. In a text
    # column a missing value is no category: all zeros, as a category the training split lacks.
    for column in [*(f for f in features if f not in text), cfg.target]:
        empty = frame[column].isna().to_numpy().nonzero()[0]
        if len(empty):
            raise OrchestratorError(
                f"data.path={cfg.path!r}: column {column!r} has a missing value at "
                f"line {int(empty[0]) + 2} of the file; {len(empty)} missing in all. Missing values "
                "are refused, not filled: fill or drop them before training."
            )

    def numbers(column: str) -> None:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna().to_numpy().nonzero()[0]
        if len(bad):
            row = int(bad[0])
            raise OrchestratorError(
                f"data.path={cfg.path!r}: column {column!r} must be numeric but line {row + 2} of "
                f"the file holds {frame[column].iloc[row]!r}."
            )
        frame[column] = numeric

    for column in features:
        if column not in text:
            numbers(column)
    task, rule = csv_target_task(cfg, frame[cfg.target])  # the features are sound: now the target
    if task == "regression":
        numbers(cfg.target)
    if text:  # a table, as read: the framework encodes it with the training split's categories
        log.info("data=csv: text column%s %s one-hot encoded with the training split's categories",
                 "s" if len(text) > 1 else "", ", ".join(map(repr, text)))
        x = frame[features]
    else:
        x = frame[features].to_numpy(dtype=np.float64)
    if task == "regression":
        data = Dataset(x, frame[cfg.target].to_numpy(dtype=np.float64), "regression", source=str(path))
    else:
        # Numbers are classes in numeric order (0, 1, 2, ..., not "0", "1", "10", "2"); text in
        # alphabetical order.
        target = frame[cfg.target]
        numeric = target.dtype.kind in "iuf"
        labels, y = np.unique(target.to_numpy() if numeric else target.astype(str).to_numpy(),
                              return_inverse=True)
        if len(labels) < 2:
            raise OrchestratorError(
                f"data.path={cfg.path!r}: target column {cfg.target!r} holds a single class "
                f"({labels[0]!r}); classification needs at least two."
            )
        data = Dataset(x, y, "classification", num_classes=len(labels), source=str(path))
    return dataclasses.replace(data, task_rule=rule)  # the run's orchestrator.task.rule tag


#: The rule a data.task setting applies (the others are orchestrator.task.infer_task's).
FORCED = "forced by data.task"


def csv_target_task(cfg: CSVConfig, target) -> tuple[str, str]:
    """The task of the CSV's target column and what decided it: data.task where it is set, else
    what :func:`orchestrator.task.infer_task` reads from the column and the chosen model."""
    from orchestrator.task import ONE_TASK, current_learner, infer_task

    if cfg.task is not None:
        task, rule = cfg.task, FORCED
    else:
        task, rule = infer_task(target.to_numpy(), f"data.path={cfg.path!r}: target column {cfg.target!r}",
                                current_learner(), row=lambda i: f"line {i + 2} of the file")
    learner = current_learner()
    log.info("data=csv: target column %r is learned as %s (%s%s)", cfg.target, task, rule,
             f": model={learner.name} learns only {task}" if rule == ONE_TASK and learner else "")
    return task, rule


def csv_task(cfg: CSVConfig) -> Optional[str]:
    """The task of data=csv as the config alone says it: its data.task setting; None (inferred
    once the file is read) where that is left out."""
    return cfg.task


@hookimpl
def register_components():
    return [
        # Each declares its input kind and task, so that a model that cannot train on it is
        # refused before anything is loaded (tests/test_fast_refusals.py checks the declarations
        # against what each yields).
        Data("regression", RegressionConfig, make_regression, "Synthetic y = 3x + 2 + noise.",
             input_kind="tabular", task="regression"),
        Data("classification", ClassificationConfig, make_classification, "Two Gaussian classes.",
             input_kind="tabular", task="classification"),
        Data("digits", DigitsConfig, load_digits, "scikit-learn's 8x8 digits, 1x8x8, 10 classes.",
             input_kind="image", task="classification"),
        Data("csv", CSVConfig, load_csv, "A CSV file: data.path, data.target; the task inferred or data.task.",
             input_kind="tabular", task=csv_task),
    ]
