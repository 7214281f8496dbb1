"""The one LightningModule: any model plugin, with its task's loss and metrics, the optimizer
and the penalty, metrics logged once per epoch."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import pytorch_lightning as pl
import torch
from torch import nn

from ..errors import OrchestratorError
from ..task import Task
from .data import TensorDataModule


_PLAIN_VALUES = frozenset({str, bool, int, float, list, type(None)})


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
        make_scheduler: Optional[Callable[..., Any]] = None,
        scheduler_interval: str = "epoch",
        monitor: Optional[str] = None,
    ):
        super().__init__()
        self.model = model
        self.task = Task.of(task, num_classes)
        self.make_optimizer = make_optimizer
        self.penalty = penalty
        #: ``make_scheduler(optimizer, total_steps, max_epochs)``: a torch LR scheduler or None.
        self.make_scheduler = make_scheduler
        self.scheduler_interval = scheduler_interval
        self.monitor = monitor
        #: This epoch's (loss x n, penalty x n, n), summed on the host from the steps read so far.
        self._epoch_sums = [0.0, 0.0, 0]
        #: Steps not read yet: (global step, epoch, n, loss, penalty or None), the losses still on
        #: the training device. Read together every ``divergence_check_every`` steps: a step
        #: launches no kernel and waits for nothing beyond its own loss.
        self._unread: list = []
        self._outputs: dict[str, list] = {"val": [], "test": []}
        self._epoch_lr: Optional[float] = None
        #: Full-batch epochs trained in one Lightning step (see :meth:`several_epochs_per_step`);
        #: 1: an epoch per step, as Lightning runs them.
        self.epochs_per_step = 1
        #: Epochs of the whole fit, counted here when a step trains several.
        self.total_epochs = 0
        #: The next epoch to train, kept in checkpoints (a resume continues from it).
        self._next_epoch = 0

    def __setattr__(self, name, value):
        # Lightning sets ``_current_fx_name`` around every hook it calls, some 45 times a training
        # step, and nn.Module's __setattr__ checks each value for a parameter, module or buffer
        # (~150 us a step, as much as a small model's whole step). A plain value replacing a plain
        # attribute is stored exactly as nn.Module would store it, without the checks.
        if type(value) in _PLAIN_VALUES and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x):
        return self.model(x)

    def _objective(self, x, y):
        """The loss of the model's output and the penalty (None without a regularizer). Tensors are
        made from ones already on the training device: a bare torch.tensor() lands on the CPU."""
        loss = self.task.loss(self(x), y)
        penalty = self.penalty(self.model) if self.penalty is not None else None
        if penalty is not None:
            penalty = torch.as_tensor(penalty, device=loss.device)
        return loss, penalty

    def several_epochs_per_step(self, epochs_per_step: int, total_epochs: int) -> None:
        """Train ``epochs_per_step`` full-batch epochs in each Lightning step (manual optimization).

        With one batch an epoch, Lightning's loop around each step (hooks, the epoch's
        bookkeeping) costs several times a small model's step. Each epoch here is what one
        Lightning epoch would be, in the same order: its objective, the divergence check, the
        step, then the validation of the epoch and its values published under their own epoch and
        step, so the metrics are exactly those of one epoch per step. Only for fits where nothing
        needs control between epochs (no callbacks, no scheduler; see ``Training``)."""
        self.epochs_per_step, self.total_epochs = int(epochs_per_step), int(total_epochs)
        self.automatic_optimization = self.epochs_per_step == 1

    def training_step(self, batch, batch_idx):
        if self.epochs_per_step > 1:
            return self._several_epochs(batch)
        x, y = batch
        loss, penalty = self._objective(x, y)
        objective = loss if penalty is None else loss + penalty
        self._unread.append((self.global_step, self.current_epoch, len(y), loss.detach(),
                             None if penalty is None else penalty.detach()))
        if len(self._unread) >= self.divergence_check_every():
            self._read_steps()
        return objective

    def divergence_check_every(self) -> int:
        """Steps between reads of the losses: every step on the CPU, where reading a value costs
        nothing; every 16 steps on an accelerator, where each read waits for the device to finish
        its queue (a host-device sync)."""
        return 1 if self.device.type == "cpu" else 16

    def _read_steps(self) -> None:
        """Read the unread steps' losses in one copy (the one host-device sync, every few steps),
        add them to the epoch's sums, and stop at the first step whose objective is not finite."""
        steps, self._unread = self._unread, []
        if not steps:
            return
        read = iter(torch.stack([t.float() for s in steps for t in s[3:] if t is not None]).tolist())
        sums = self._epoch_sums
        for step, epoch, n, _, penalty in steps:
            loss, pen = next(read), (0.0 if penalty is None else next(read))
            if not math.isfinite(loss + pen):
                raise TrainingDiverged(
                    f"The loss became NaN or infinite at epoch {epoch}, step {step}: training diverged. "
                    "Try a smaller learning rate (optimizer.lr), a smaller regularizer.strength, or "
                    "data.standardize=true."
                )
            sums[0], sums[1], sums[2] = sums[0] + loss * n, sums[1] + pen * n, sums[2] + n

    def _several_epochs(self, batch) -> None:
        x, y = batch
        optimizer = self.optimizers()
        first = self._next_epoch
        for epoch in range(first, min(first + self.epochs_per_step, self.total_epochs)):
            self._epoch_lr = float(optimizer.param_groups[0]["lr"])
            loss, penalty = self._objective(x, y)
            self._unread.append((self.global_step, epoch, len(y), loss.detach(),
                                 None if penalty is None else penalty.detach()))
            if len(self._unread) >= self.divergence_check_every():
                self._read_steps()
            optimizer.zero_grad()
            self.manual_backward(loss if penalty is None else loss + penalty)
            optimizer.step()
            self._next_epoch = epoch + 1
            self._end_epoch(epoch)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["orchestrator_epochs_per_step"] = self.epochs_per_step
        checkpoint["orchestrator_next_epoch"] = self._next_epoch
        if self.epochs_per_step > 1:  # the epoch as the run's metrics count it, not Lightning's steps
            checkpoint["epoch"] = max(0, self._next_epoch - 1)

    def on_load_checkpoint(self, checkpoint):
        self._next_epoch = int(checkpoint.get("orchestrator_next_epoch", 0))

    def on_train_start(self):
        if self.epochs_per_step > 1:  # after a resume too: as many Lightning epochs as are left
            left = max(0, self.total_epochs - self._next_epoch)
            self.trainer.fit_loop.max_epochs = self.current_epoch + -(-left // self.epochs_per_step)
        self._calibrate_loss_scale()

    def _calibrate_loss_scale(self, most: int = 40) -> Optional[float]:
        """Under fp16 mixed precision, start the loss scale where the first batch's gradients are finite.

        GradScaler starts at 2**16 and skips every step whose scaled gradients overflow fp16,
        halving the scale each time: a few steps of a minibatch run, but with full-batch gradient
        descent every skipped step is an epoch (two epochs of linear regression were both
        skipped, leaving the model untrained). Here the first batch's gradients are computed,
        not applied, in eval mode (no dropout draw, no batch-norm update), halving the scale
        until they are finite; with several ranks every rank takes the smallest scale. Returns
        the scale chosen, or None without a scaler (fp32, bf16-mixed, the CPU)."""
        precision = self.trainer.precision_plugin
        scaler = getattr(precision, "scaler", None)
        data = getattr(self.trainer, "datamodule", None)
        if scaler is None or not scaler.is_enabled() or not isinstance(data, TensorDataModule):
            return None
        x, y = data.tensors["train"]
        size = data.batch_size or len(x)
        x, y = precision.convert_input(x[:size]), y[:size]
        params = [p for p in self.parameters() if p.requires_grad]
        was_training = self.training
        self.eval()
        try:
            for _ in range(most):
                with precision.forward_context():
                    loss, penalty = self._objective(x, y)
                objective = loss if penalty is None else loss + penalty
                grads = torch.autograd.grad(scaler.scale(objective), params, allow_unused=True)
                if all(bool(torch.isfinite(g).all()) for g in grads if g is not None):
                    break
                scaler.update(new_scale=scaler.get_scale() / 2)
        finally:
            self.train(was_training)
        if self.trainer.world_size > 1:  # the ranks' gradients are summed: one scale for all
            scale = self.trainer.strategy.reduce(torch.full((), scaler.get_scale(), device=self.device),
                                                 reduce_op="min")
            scaler.update(new_scale=float(scale))
        return scaler.get_scale()

    def on_train_epoch_start(self):
        # Read here: Lightning steps an epoch's schedule before on_train_epoch_end is called.
        optimizers = self.trainer.optimizers
        self._epoch_lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else None

    def on_train_epoch_end(self):
        if self.epochs_per_step == 1:  # several: each was ended as it was trained
            self._next_epoch = self.current_epoch + 1
            self._end_epoch(self.current_epoch)

    def _end_epoch(self, epoch: int) -> None:
        """The epoch's training loss and penalty, its validation, published as epoch ``epoch``."""
        self._read_steps()
        values = {}
        (loss, penalty, n), self._epoch_sums = self._epoch_sums, [0.0, 0.0, 0]
        if n:
            sums = torch.tensor([loss, penalty, n], dtype=torch.float64, device="cpu")  # host values
            if self.trainer.world_size > 1:  # the epoch's loss over every rank's shard
                sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
            loss, penalty, n = sums
            values = {"train/loss": loss / n, "train/penalty": penalty / n}
        if self._epoch_lr is not None:  # the learning rate the epoch began with
            values["train/lr"] = torch.tensor(self._epoch_lr, dtype=torch.float64, device="cpu")
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
        self._publish(values, epoch)

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

    def _publish(self, values: dict[str, torch.Tensor], epoch: Optional[int] = None) -> None:
        """Hand one epoch's values to the callbacks and the loggers."""
        if self.trainer.sanity_checking or not values:
            return
        values = {k: v.detach().float().cpu() for k, v in values.items()}  # one sync an epoch
        self.trainer.callback_metrics.update(values)
        step = self.trainer.global_step  # optimizer steps so far: one per batch here
        for logger in self.trainer.loggers:
            logger.log_metrics({**{k: float(v) for k, v in values.items()},
                                "epoch": self._epochs_done() if epoch is None else epoch}, step=step)

    def _epochs_done(self) -> int:
        """Lightning's epoch count, or with several epochs a step, the epochs trained."""
        return self.current_epoch if self.epochs_per_step == 1 else self._next_epoch

    def test_step(self, batch, batch_idx):
        self._collect(batch, "test")

    def on_test_epoch_end(self):
        self._publish(self._stage_values("test"))

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.model.parameters())
        if self.make_scheduler is None:
            return optimizer
        epochs = self.trainer.max_epochs if (self.trainer.max_epochs or 0) > 0 else 1
        total = self.trainer.estimated_stepping_batches  # every optimizer step of the fit
        total = int(total) if math.isfinite(total) else epochs
        scheduler = self.make_scheduler(optimizer, total, epochs)
        if scheduler is None:
            return optimizer
        config = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if self.monitor is not None:
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}
