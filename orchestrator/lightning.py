"""Lightning glue: the one LightningModule, the one DataModule, the MLflow logger and the Trainer.

Any model plugin is trained by :class:`TrainingModule`; any data plugin is served by
:class:`TensorDataModule`. Small data sets stay as tensors and are indexed by whole batches:
a ``DataLoader`` over a ``TensorDataset`` would collate every example on every step, which costs
more than the training itself for full-batch gradient descent.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
import torchmetrics
from pytorch_lightning.loggers import MLFlowLogger
from torch import nn

from .datasets import Splits
from .errors import OrchestratorError


class TrainingDiverged(OrchestratorError):
    """The loss became NaN or infinite: training stops at once and the run is FAILED."""

# Lightning advertises a cloud logger at every Trainer start, and a torch deprecation inside
# Lightning's own code warns on every fit: neither is anything our users can act on.
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


class TensorBatches:
    """Iterates over ``(x, y)`` batches of in-memory tensors, reshuffled each epoch if asked.

    ``batch_size=None`` yields the whole set as one batch (full-batch gradient descent).
    """

    def __init__(self, x, y, batch_size: Optional[int], shuffle: bool, seed: int = 0):
        self.x, self.y = x, y
        n = len(x)
        self.batch_size = n if batch_size is None else max(1, min(int(batch_size), n))
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n, size = len(self.x), self.batch_size
        if size >= n:
            yield self.x, self.y
            return
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for start in range(0, n, size):
            if order is None:
                yield self.x[start : start + size], self.y[start : start + size]
            else:
                index = order[start : start + size]
                yield self.x[index], self.y[index]


class TensorDataModule(pl.LightningDataModule):
    """Serves the splits of any data plugin as whole-batch tensors."""

    def __init__(self, splits: Splits, batch_size: Optional[int], seed: int):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.seed = seed
        as_target = torch.long if splits.task == "classification" else torch.float32
        self.tensors = {
            stage: (
                torch.from_numpy(getattr(splits, f"x_{stage}")),
                torch.from_numpy(getattr(splits, f"y_{stage}")).to(as_target),
            )
            for stage in ("train", "val", "test")
        }

    def train_dataloader(self):
        return TensorBatches(*self.tensors["train"], self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self):
        return TensorBatches(*self.tensors["val"], None, shuffle=False)

    def test_dataloader(self):
        return TensorBatches(*self.tensors["test"], None, shuffle=False)


def metrics_for(task: str, num_classes: Optional[int]) -> torchmetrics.MetricCollection:
    if task == "regression":
        return torchmetrics.MetricCollection(
            {
                "mse": torchmetrics.MeanSquaredError(),
                "mae": torchmetrics.MeanAbsoluteError(),
                "r2": torchmetrics.R2Score(),
            }
        )
    k = max(2, num_classes or 2)
    return torchmetrics.MetricCollection(
        {
            "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=k, average="micro"),
            "f1": torchmetrics.F1Score(task="multiclass", num_classes=k, average="macro"),
        }
    )


class TrainingModule(pl.LightningModule):
    """Wraps any model plugin with the loss of its task, metrics, optimizer and penalty."""

    def __init__(
        self,
        model: nn.Module,
        task: str,
        num_classes: Optional[int],
        make_optimizer: Callable[[Any], torch.optim.Optimizer],
        penalty: Optional[Callable[[nn.Module], Any]] = None,
    ):
        super().__init__()
        self.model = model
        self.task = task
        self.binary = task == "classification" and (num_classes or 2) <= 2
        self.make_optimizer = make_optimizer
        self.penalty = penalty
        metrics = metrics_for(task, num_classes)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x):
        return self.model(x)

    def loss_and_prediction(self, out, y):
        """The data loss, and what the metrics compare with ``y``."""
        if self.task == "regression":
            out = out.squeeze(-1)
            return nn.functional.mse_loss(out, y), out
        if self.binary:
            out = out.squeeze(-1)
            loss = nn.functional.binary_cross_entropy_with_logits(out, y.to(out.dtype))
            return loss, (out > 0).long()
        return nn.functional.cross_entropy(out, y), out.argmax(dim=-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, _ = self.loss_and_prediction(self(x), y)
        penalty = self.penalty(self.model) if self.penalty is not None else None
        penalty = torch.zeros((), device=loss.device) if penalty is None else torch.as_tensor(penalty)
        objective = loss + penalty
        if not torch.isfinite(objective):
            raise TrainingDiverged(
                f"The loss became {'NaN' if torch.isnan(objective) else 'infinite'} at epoch "
                f"{self.current_epoch}, step {self.global_step}: training diverged. Try a smaller "
                "learning rate (optimizer.lr), a smaller regularizer.strength, or data.standardize=true."
            )
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train/penalty", penalty, on_step=False, on_epoch=True, batch_size=len(y))
        return objective

    def _evaluate(self, batch, stage: str, metrics: torchmetrics.MetricCollection):
        x, y = batch
        loss, prediction = self.loss_and_prediction(self(x), y)
        metrics.update(prediction, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_metrics)

    def configure_optimizers(self):
        return self.make_optimizer(self.model.parameters())


class BufferedMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, writing metrics in batches into a run that already exists.

    The run's life (start, params, FINISHED or FAILED) belongs to :mod:`orchestrator.tracking`;
    this logger only adds metric points to it. Points are sent with one ``log_batch`` call per
    ``flush_every`` points or ``flush_seconds``, and at the end, instead of one call per epoch.
    """

    def __init__(self, *args, flush_every: int = 1000, flush_seconds: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._buffer: list = []
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()

    def log_hyperparams(self, params) -> None:  # the resolved config is logged by tracking
        pass

    def log_metrics(self, metrics: dict, step: Optional[int] = None) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            value = value.item() if hasattr(value, "item") else float(value)
            self._buffer.append(Metric(key=key, value=value, timestamp=timestamp, step=step or 0))
        if (
            len(self._buffer) >= self._flush_every
            or time.monotonic() - self._last_flush > self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.experiment.log_batch(run_id=self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def finalize(self, status: str = "success") -> None:
        self.flush()


def train(
    model: nn.Module,
    splits: Splits,
    *,
    make_optimizer,
    penalty,
    batch_size: Optional[int],
    trainer_args: dict,
    callbacks: list,
    seed: int,
    tracking_uri: str,
    run_id: str,
    output_dir: str,
) -> dict[str, float]:
    """Fit, validate each epoch, test once; return the final metrics (train, val and test)."""
    trainer_args = dict(trainer_args)
    if trainer_args.get("enable_progress_bar") is None:
        trainer_args["enable_progress_bar"] = sys.stderr.isatty()
    logger = BufferedMLFlowLogger(tracking_uri=tracking_uri, run_id=run_id)
    module = TrainingModule(model, splits.task, splits.num_classes, make_optimizer, penalty)
    data = TensorDataModule(splits, batch_size, seed)
    trainer = pl.Trainer(logger=logger, callbacks=callbacks, default_root_dir=output_dir, **trainer_args)
    trainer.fit(module, datamodule=data)
    final = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trainer.test(module, datamodule=data, verbose=False)
    final.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    logger.flush()
    return final
