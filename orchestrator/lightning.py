"""Lightning glue: the one LightningModule, the one DataModule, the MLflow logger and the Trainer.

Any model plugin is trained by :class:`TrainingModule`; any data plugin is served by
:class:`TensorDataModule`. Small data sets stay as tensors and are indexed by whole batches:
a ``DataLoader`` over a ``TensorDataset`` would collate every example on every step, which costs
more than the training itself for full-batch gradient descent.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from .datasets import Splits
from .errors import Interrupted, OrchestratorError


class TrainingDiverged(OrchestratorError):
    """The loss became NaN or infinite: training stops at once and the run is FAILED."""


class RankFailed(RuntimeError):
    """Another DDP rank failed (an error, or killed): every rank is stopped and the run FAILED."""

# Lightning advertises a cloud logger at every Trainer start, and a torch deprecation inside
# Lightning's own code warns on every fit: neither is anything our users can act on.
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
warnings.filterwarnings("ignore", message=".*`weights_only` was not set")  # our own checkpoints


class TensorBatches:
    """Iterates over ``(x, y)`` batches of in-memory tensors, reshuffled each epoch if asked.

    ``batch_size=None`` yields the whole set as one batch (full-batch gradient descent).
    """

    def __init__(self, x, y, batch_size: Optional[int], shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.x, self.y = x, y
        self.rank, self.world_size = rank, world_size
        # With several processes (DDP) each takes an equal, disjoint shard of every epoch's
        # order, and ``batch_size`` stays the global batch: each process steps on its share.
        self.shard = len(x) // world_size
        n = self.shard
        size = n if batch_size is None else -(-int(batch_size) // world_size)
        self.batch_size = max(1, min(size, n))
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)  # the same order on every rank

    def __len__(self) -> int:
        return -(-self.shard // self.batch_size)

    def __iter__(self):
        n, size = self.shard, self.batch_size
        if self.world_size == 1 and size >= n:
            yield self.x, self.y
            return
        order = torch.randperm(len(self.x), generator=self.generator) if self.shuffle else None
        if self.world_size > 1:
            order = (order if order is not None else torch.arange(len(self.x)))[self.rank :: self.world_size][:n]
        if order is not None:  # one copy an epoch, not an index copy (and a sync) every step
            order = order.to(self.x.device)
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

    def to(self, device) -> None:
        """Move every split to ``device`` once, instead of each batch at every step."""
        self.tensors = {k: (x.to(device), y.to(device)) for k, (x, y) in self.tensors.items()}

    def train_dataloader(self):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatches(*self.tensors["train"], self.batch_size, shuffle=True, seed=self.seed,
                             rank=rank, world_size=world)

    def test_dataloader(self):
        # In chunks, like validation: one batch of a large test split could exhaust a GPU.
        return TensorBatches(*self.tensors["test"], 8192, shuffle=False)


def task_metrics(task: str, num_classes: Optional[int], prediction, target) -> dict[str, torch.Tensor]:
    """torchmetrics' functional metrics of a whole split: MSE, MAE and R2 for regression;
    accuracy and macro F1 for classification."""
    from torchmetrics.functional import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    if task == "regression":
        return {
            "mse": mean_squared_error(prediction, target),
            "mae": mean_absolute_error(prediction, target),
            "r2": r2_score(prediction, target),
        }
    k = max(2, num_classes or 2)
    return {
        "accuracy": multiclass_accuracy(prediction, target, num_classes=k, average="micro"),
        "f1": multiclass_f1_score(prediction, target, num_classes=k, average="macro"),
    }


class TrainingModule(pl.LightningModule):
    """Wraps any model plugin with the loss of its task, metrics, optimizer and penalty.

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
        task: str,
        num_classes: Optional[int],
        make_optimizer: Callable[[Any], torch.optim.Optimizer],
        penalty: Optional[Callable[[nn.Module], Any]] = None,
    ):
        super().__init__()
        self.model = model
        self.task = task
        self.num_classes = num_classes
        self.binary = task == "classification" and (num_classes or 2) <= 2
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
        # Every tensor made here is made from one that is already on the training device
        # (``new_full``, ``as_tensor(device=...)``): a bare torch.tensor() would land on the CPU.
        x, y = batch
        loss, _ = self.loss_and_prediction(self(x), y)
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
        loss, prediction = self.loss_and_prediction(out, y)
        values = {"loss": loss, **task_metrics(self.task, self.num_classes, prediction, y)}
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
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in self.trainer.loggers:
            logger.log_metrics({**{k: float(v) for k, v in values.items()}, "epoch": self.current_epoch}, step=step)

    def test_step(self, batch, batch_idx):
        self._collect(batch, "test")

    def on_test_epoch_end(self):
        self._publish(self._stage_values("test"))

    def configure_optimizers(self):
        return self.make_optimizer(self.model.parameters())


class BufferedMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, writing metrics in batches into a run that already exists.

    The run's life (start, params, FINISHED or FAILED) belongs to :mod:`orchestrator.tracking`;
    this logger only adds metric points to it. Points are kept in memory and sent with one
    ``log_batch`` call per 1000 points when ``flush_seconds`` have passed since the last send,
    and when training ends (or fails), instead of one call per epoch: a point costs MLflow's
    SQLite store about 0.1 ms, more than a full-batch step of a small model.
    """

    def __init__(self, *args, flush_seconds: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._buffer: list = []
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        #: Seconds spent handing metric points to MLflow (reported as time/logging_seconds).
        self.seconds = 0.0

    def log_hyperparams(self, params) -> None:  # the resolved config is logged by tracking
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: Optional[int] = None) -> None:
        started = time.perf_counter()
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            value = value.item() if hasattr(value, "item") else float(value)
            self._buffer.append((key, value, timestamp, step or 0))
        if time.monotonic() - self._last_flush > self._flush_seconds:
            self.flush()
        self.seconds += time.perf_counter() - started

    def flush(self) -> None:
        from .tracking import write_points

        started = time.perf_counter()
        points, self._buffer = self._buffer, []
        if points:
            write_points(self.experiment, self.run_id, points)
        self._last_flush = time.monotonic()
        self.seconds += time.perf_counter() - started

    def finalize(self, status: str = "success") -> None:
        pass  # Training.run() flushes once fitting (or testing) is over; the run stays open


class _NoLogger:
    """Stands in for the MLflow logger on DDP ranks other than zero."""

    seconds = 0.0

    def flush(self) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass


def process_start_time() -> Optional[float]:
    """When this process started (Unix time), from psutil (Linux, macOS, Windows); None where
    it cannot tell."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # psutil missing, or a platform it cannot read
        return None


class Timings(pl.Callback):
    """Wall-clock marks of a run: when the first training step began and when fitting ended."""

    def __init__(self):
        self.first_step: Optional[float] = None
        self.fit_start: Optional[float] = None
        self.fit_end: Optional[float] = None

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step is None:
            self.first_step = time.time()

    def on_fit_end(self, trainer, pl_module):
        self.fit_end = time.time()


class LoopbackDDPStrategy(DDPStrategy):
    """DDP whose rendezvous stays on this machine's loopback: a file store replaces torch's TCP
    store, which listens on every network interface even when told 127.0.0.1.

    Registered as ``strategy: ddp_loopback`` (``trainer=ddp_cpu``, ``trainer=ddp``). The first
    process picks the rendezvous file, a loopback address and a free port, and the processes
    Lightning starts for the other ranks inherit them through the environment.
    """

    strategy_name = "ddp_loopback"

    @staticmethod
    def prepare_environment() -> None:
        import socket
        import tempfile

        if "ORCHESTRATOR_RENDEZVOUS" in os.environ:
            return  # a rank started by the first process
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix="orchestrator-ddp-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["ORCHESTRATOR_RENDEZVOUS"] = os.path.join(folder, "rendezvous")
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = WatchingLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def setup_distributed(self) -> None:
        from lightning_fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        self._process_group_backend = self._get_process_group_backend()
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(
                self._process_group_backend,
                init_method=f"file://{os.environ['ORCHESTRATOR_RENDEZVOUS']}",
                rank=self.global_rank,
                world_size=self.world_size,
                timeout=self._timeout,
            )


StrategyRegistry.register(
    "ddp_loopback", LoopbackDDPStrategy, description="DDP with a file rendezvous on loopback only",
    start_method="popen",
)


def rank_error_file(rank: int) -> Optional[str]:
    """Where rank ``rank`` leaves the reason it failed, for rank zero to report."""
    rendezvous = os.environ.get("ORCHESTRATOR_RENDEZVOUS")
    return f"{rendezvous}.rank{rank}.error" if rendezvous else None


class RankWatch:
    """Rank zero's watch over the processes Lightning started for the other ranks.

    When one exits with a non-zero status (an error, or killed), the others are killed at once,
    and :meth:`failure` says which rank failed and why. Rank zero's training then fails too: a
    collective with a dead peer raises (gloo) and :meth:`Training.run` reports the rank's
    failure. If rank zero stays blocked instead (NCCL waits for its timeout), the watch marks
    the run FAILED itself through ``abort`` after ``grace`` seconds and ends the process.
    Lightning's own watch would SIGKILL rank zero and leave its MLflow run RUNNING.
    """

    def __init__(self, poll: float = 0.2, grace: float = 10.0):
        self.procs: list = []
        self.poll, self.grace = poll, grace
        self.abort: Optional[Callable[[str], None]] = None  # set by Training.run
        self.settled = False  # rank zero's training has ended, with or without an error
        self._failure: Optional[str] = None
        self._found = None

    def start(self, procs: list) -> None:
        import threading

        self.procs = list(procs)
        self._found = threading.Event()
        threading.Thread(target=self._watch, name="orchestrator-rank-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.settled:
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code not in (None, 0):
                    self._failure = self._reason(rank, proc, code)
                    self.kill_children()
                    self._found.set()
                    self._abort_if_stuck()
                    return
            time.sleep(self.poll)

    @staticmethod
    def _reason(rank: int, proc, code: int) -> str:
        import signal

        path = rank_error_file(rank)
        detail = ""
        if path and os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                detail = handle.read().strip()
        if not detail:
            detail = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}")
        return f"DDP rank {rank} (pid {proc.pid}) failed: {detail}"

    def failure(self, wait: float = 0.0) -> Optional[str]:
        """The failure of another rank, waiting up to ``wait`` seconds for the watch to see it."""
        if self._found is not None and wait > 0:
            self._found.wait(wait)
        return self._failure

    def kill_children(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL: a rank blocked in a collective ignores SIGTERM

    def _abort_if_stuck(self) -> None:
        deadline = time.monotonic() + self.grace
        while not self.settled and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.settled:
            return
        print(f"Error: {self._failure}. Rank 0 was blocked waiting for it; every rank is stopped.",
              file=sys.stderr)
        if self.abort is not None:
            try:
                self.abort(self._failure)
            except Exception as error:  # still end the process
                print(f"Could not record the failure: {error}", file=sys.stderr)
        os._exit(1)


class WatchingLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher (each rank runs the command line again) with :class:`RankWatch`
    in place of Lightning's process observer, which SIGKILLs rank zero when another rank fails
    and so leaves its MLflow run RUNNING."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.watch = RankWatch()

    def launch(self, function, *args, trainer=None, **kwargs):
        from pytorch_lightning.strategies.launchers import subprocess_script

        # The launcher starts its observer through this module-level function; for this launch
        # it starts the RankWatch instead.
        observer = subprocess_script._launch_process_observer
        subprocess_script._launch_process_observer = self.watch.start
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        finally:
            subprocess_script._launch_process_observer = observer


def end_process_group() -> None:
    """Destroy the DDP process group, so that every rank's process can exit (NCCL's threads
    keep a process alive otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def use_tf32(trainer: pl.Trainer, enabled: bool) -> Optional[Callable[[], None]]:
    """On a CUDA GPU with TensorFloat-32 (compute capability 8.0 and newer: A100, H100, ...),
    set fp32 matmuls and cuDNN convolutions to TF32 (``enabled``: several times faster, with a
    10-bit mantissa, as PyTorch's and Lightning's docs recommend for training) or to full fp32.
    Returns what puts the previous settings back, or None when nothing was changed."""
    from pytorch_lightning.accelerators import CUDAAccelerator

    if not isinstance(trainer.accelerator, CUDAAccelerator) or not torch.cuda.is_available():
        return None
    if torch.cuda.get_device_capability() < (8, 0):
        return None
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled

    def restore() -> None:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn

    return restore


def worker_rank() -> bool:
    """True in the processes Lightning's DDP starts for ranks other than zero: they train but
    neither open nor write MLflow runs."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


class CheckpointOnInterrupt(pl.Callback):
    """Stops training at the next batch boundary after SIGINT or SIGTERM, and writes
    ``last.ckpt`` then, so the run can be resumed.

    The signal handler only notes the signal: raising from inside it could cut an MLflow write
    or a checkpoint in half. A second signal stops at once.
    """

    def __init__(self, path: str):
        self.path = path
        self.saved = False
        self.pending: Optional[int] = None

    def handle(self, signum, frame):
        if self.pending is not None:
            raise Interrupted(signum)
        self.pending = signum

    def _stop_if_asked(self):
        if self.pending is not None:
            raise Interrupted(self.pending)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._stop_if_asked()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stop_if_asked()

    def on_exception(self, trainer, pl_module, exception):
        # Lightning's own SIGTERM handling stops at a safe point with SIGTERMException.
        if isinstance(exception, (Interrupted, SIGTERMException)):
            trainer.save_checkpoint(self.path)
            self.saved = True


class Training:
    """The Trainer and what it trains, built (and so checked) before the MLflow run opens."""

    def __init__(
        self,
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
        output_dir: str,
        flush_seconds: float = 10.0,
        tf32: bool = True,
    ):
        import inspect
        from pathlib import Path

        trainer_args = dict(trainer_args)
        if trainer_args.get("enable_progress_bar") is None:  # a bar for people, none in logs and CI
            trainer_args["enable_progress_bar"] = sys.stderr.isatty() and not os.environ.get("CI")
        from .settings import check_trainer_names

        # Checked from Lightning's source before anything was imported (settings.validate);
        # here against the Trainer itself, for callers that build a Training directly.
        check_trainer_names(trainer_args, accepted=inspect.signature(pl.Trainer).parameters)
        if trainer_args.get("strategy") == "ddp_loopback":
            LoopbackDDPStrategy.prepare_environment()
        self.logger = None if worker_rank() else BufferedMLFlowLogger(
            tracking_uri=tracking_uri, flush_seconds=flush_seconds
        )
        self.module = TrainingModule(model, splits.task, splits.num_classes, make_optimizer, penalty)
        self.data = TensorDataModule(splits, batch_size, seed)
        self.tf32 = tf32
        self.timings = Timings()
        self.checkpoint_path = str(Path(output_dir) / "checkpoints" / "last.ckpt")
        self.on_interrupt = CheckpointOnInterrupt(self.checkpoint_path)
        try:
            self.trainer = pl.Trainer(
                logger=self.logger or False,
                callbacks=[self.timings, self.on_interrupt, *callbacks],
                default_root_dir=output_dir,
                **trainer_args,
            )
        except Exception as error:  # Lightning's MisconfigurationException, TypeError, ValueError
            raise OrchestratorError(f"The trainer settings are refused by Lightning: {error}") from None

    def run(self, run_id: Optional[str], resume_from: Optional[str] = None,
            abort: Optional[Callable[[str], None]] = None) -> dict[str, float]:
        """Fit (from ``resume_from``, a checkpoint, if given), validate each epoch, test once,
        logging into MLflow run ``run_id``; return the final metrics (train, val and test).

        Under DDP, a failure of any rank ends every rank: rank zero kills the others when it
        fails, and raises :class:`RankFailed` when another fails (``abort(reason)`` records the
        failure if rank zero is left blocked instead); the process group is destroyed at the end.
        """
        import signal
        import threading

        if self.logger is not None:
            self.logger._run_id = run_id
        trainer, logger, timings = self.trainer, self.logger or _NoLogger(), self.timings
        watch = getattr(trainer.strategy.launcher, "watch", None)
        if watch is not None:
            watch.abort = abort

        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handle = self.on_interrupt.handle
            handlers = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        restore_tf32 = use_tf32(trainer, self.tf32)
        fit_logging = 0.0
        try:
            try:
                trainer.fit(self.module, datamodule=self.data, ckpt_path=resume_from)
            except SIGTERMException as error:
                raise Interrupted(signal.SIGTERM) from error
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
                fit_logging = logger.seconds
                logger.flush()  # what was logged before a failure or interruption is kept too
            final = {k: float(v) for k, v in trainer.callback_metrics.items()}
            trainer.test(self.module, datamodule=self.data, verbose=False)
            final.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        except BaseException as error:
            self._rank_failed(watch, error)
            raise
        finally:
            if watch is not None:
                watch.settled = True
            if restore_tf32 is not None:
                restore_tf32()
        end_process_group()
        # How the time went, logged with the run (and read by the benchmark).
        final["time/fit_seconds"] = timings.fit_end - timings.fit_start
        final["world_size"] = trainer.world_size
        final["time/logging_seconds"] = fit_logging
        started = process_start_time()
        if started is not None and timings.first_step is not None:
            final["time/startup_seconds"] = timings.first_step - started
        logger.log_metrics({k: v for k, v in final.items() if k.startswith("time/")}, step=trainer.global_step)
        logger.flush()
        return final

    def _rank_failed(self, watch: Optional[RankWatch], error: BaseException) -> None:
        """On a failure under DDP: another rank's failure is what is reported; rank zero's own
        failure stops the other ranks; a worker rank leaves its reason for rank zero."""
        if watch is not None:
            # A collective whose peer died raises a RuntimeError (gloo): give the watch a moment.
            failure = watch.failure(wait=2.0 if isinstance(error, RuntimeError) else 0.0)
            watch.kill_children()
            if failure is not None:
                raise RankFailed(f"{failure}. Every rank was stopped.") from error
        path = rank_error_file(self.trainer.global_rank) if worker_rank() else None
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"{type(error).__name__}: {error}")
