"""The one LightningModule: any model plugin, with its task's loss and metrics, the optimizer
and the penalty, metrics logged once per epoch."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import pytorch_lightning as pl
import torch
from torch import nn

from ..errors import OrchestratorError
from ..task import Task
from .data import TensorDataModule


class TrainingDiverged(OrchestratorError):
    """The loss became NaN or infinite: training stops and the run is FAILED."""


class TrainingModule(pl.LightningModule):
    """Wraps any model plugin with the loss of its task, metrics, optimizer and penalty.

    ``task`` is an :class:`orchestrator.task.Task`, or a task's name with ``num_classes``
    (``Task.of``): it gives the loss, the prediction and the metrics.

    Metrics are logged once per epoch: the training loss and penalty averaged over the epoch's
    batches, then the validation metrics over the whole validation split, computed at the end of
    each training epoch (the split is a tensor in memory; Lightning's evaluation loop would cost
    more per epoch than a full-batch step of a small model). They go straight to the trainer's
    loggers and ``trainer.callback_metrics``, which monitoring callbacks such as
    ``EarlyStopping(monitor="val/loss")`` read after this module's ``on_train_epoch_end``; for
    the same reason ``self.log`` is not used. The test split goes through ``trainer.test``.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Union[str, Task],
        num_classes: Optional[int],
        make_optimizer: Callable[[Any], torch.optim.Optimizer],
        penalty: Optional[Callable[[nn.Module], Any]] = None,
    ):
        super().__init__()
        self.model = model
        self.task = Task.of(task, num_classes)
        self.make_optimizer = make_optimizer
        self.penalty = penalty
        #: The epoch's (loss x n, penalty x n, n), summed on the training device: no sync a step.
        self._train_sums: Optional[torch.Tensor] = None
        #: The first step whose objective was not finite (-1: none yet), kept on the device and
        #: read every ``divergence_check_every`` steps, with the epoch of each unread step.
        self._first_bad: Optional[torch.Tensor] = None
        self._unchecked: dict[int, int] = {}
        self._outputs: dict[str, list] = {"val": [], "test": []}

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        # Every tensor made here is made from one that is already on the training device
        # (``new_full``, ``as_tensor(device=...)``): a bare torch.tensor() would land on the CPU.
        x, y = batch
        loss = self.task.loss(self(x), y)
        penalty = self.penalty(self.model) if self.penalty is not None else None
        penalty = loss.new_zeros(()) if penalty is None else torch.as_tensor(penalty, device=loss.device)
        objective = loss + penalty
        n = len(y)
        sums = torch.stack([loss.detach().float() * n, penalty.detach().float() * n,
                            loss.new_full((), float(n), dtype=torch.float32)])
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        self._watch_divergence(objective.detach())
        return objective

    def divergence_check_every(self) -> int:
        """Steps between reads of the divergence flag: every step on the CPU, where reading a
        value costs nothing; every 16 steps on an accelerator, where each read waits for the
        device to finish its queue (a host-device sync)."""
        return 1 if self.device.type == "cpu" else 16

    def _watch_divergence(self, objective: torch.Tensor, force: bool = False) -> None:
        if objective is not None:
            step = self.global_step
            if self._first_bad is None:
                self._first_bad = torch.full((), -1, dtype=torch.long, device=objective.device)
            bad = ~torch.isfinite(objective) & (self._first_bad < 0)
            self._first_bad = torch.where(bad, self._first_bad.new_full((), step), self._first_bad)
            self._unchecked[step] = self.current_epoch
        if not self._unchecked or (len(self._unchecked) < self.divergence_check_every() and not force):
            return
        first = int(self._first_bad)  # the one host-device sync, every few steps
        epochs, self._unchecked = self._unchecked, {}
        if first >= 0:
            raise TrainingDiverged(
                f"The loss became NaN or infinite at epoch {epochs.get(first, self.current_epoch)}, "
                f"step {first}: training diverged. Try a smaller learning rate (optimizer.lr), a "
                "smaller regularizer.strength, or data.standardize=true."
            )

    def on_train_epoch_end(self):
        self._watch_divergence(None, force=True)
        values = {}
        if self._train_sums is not None:
            sums, self._train_sums = self._train_sums, None
            if self.trainer.world_size > 1:  # the epoch's loss over every rank's shard
                sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            loss, penalty, n = sums
            values = {"train/loss": loss / n, "train/penalty": penalty / n}
        data = getattr(self.trainer, "datamodule", None)
        if data is not None and "val" in getattr(data, "tensors", {}):
            was_training = self.training
            self.eval()
            with torch.no_grad():
                x, y = data.tensors["val"]
                x = self.trainer.precision_plugin.convert_input(x)  # float64 under 64-true
                self._outputs["val"] = [(self(x[i : i + 8192]), y[i : i + 8192]) for i in range(0, len(x), 8192)]
            self.train(was_training)
            values.update(self._stage_values("val"))
        self._publish(values)

    def _collect(self, batch, stage: str):
        x, y = batch
        self._outputs[stage].append((self(x), y))

    def _stage_values(self, stage: str) -> dict[str, torch.Tensor]:
        outputs, self._outputs[stage] = self._outputs[stage], []
        if not outputs:
            return {}
        out = torch.cat([o for o, _ in outputs])
        y = torch.cat([t for _, t in outputs])
        values = {"loss": self.task.loss(out, y), **self.task.metrics(self.task.prediction(out), y)}
        return {f"{stage}/{k}": v for k, v in values.items()}

    def on_fit_start(self):
        data = getattr(self.trainer, "datamodule", None)
        if isinstance(data, TensorDataModule):
            data.to(self.device)

    def _publish(self, values: dict[str, torch.Tensor]) -> None:
        """Hand one epoch's values to the callbacks and the loggers."""
        if self.trainer.sanity_checking or not values:
            return
        values = {k: v.detach().float().cpu() for k, v in values.items()}  # one sync an epoch
        self.trainer.callback_metrics.update(values)
        step = self.trainer.global_step  # optimizer steps so far: one per batch here
        for logger in self.trainer.loggers:
            logger.log_metrics({**{k: float(v) for k, v in values.items()}, "epoch": self.current_epoch}, step=step)

    def test_step(self, batch, batch_idx):
        self._collect(batch, "test")

    def on_test_epoch_end(self):
        self._publish(self._stage_values("test"))

    def configure_optimizers(self):
        return self.make_optimizer(self.model.parameters())
