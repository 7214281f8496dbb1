"""The Trainer and one run of it: build (and so check) everything, fit, test, time it."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import time
from functools import partial
import warnings
from typing import TYPE_CHECKING, Callable, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.logger import DummyLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from ..datasets import Splits
from ..errors import Interrupted, OrchestratorError
from .data import TensorDataModule
from .distributed import (
    STRATEGY_NAME,
    RankFailed,
    RankWatch,
    end_process_group,
    join_process_group,
    prepare_environment,
    rank_error_file,
    restore_environment,
    worker_rank,
)
from .interrupt import CheckpointOnInterrupt
from .logger import RunLogger, _NoLogger
from .module import TrainingModule

if TYPE_CHECKING:
    from ..tracking_api import TrackedRun


@contextlib.contextmanager
def quiet_lightning():
    """Hide, while training, what users cannot act on: Lightning's advertisement of a cloud
    logger at every Trainer start, and a torch deprecation inside Lightning's own code. Nothing
    is filtered outside this block."""
    tips = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    tip_filter = lambda record: not str(record.msg).startswith("💡 Tip")  # noqa: E731
    tips.addFilter(tip_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
            yield
    finally:
        tips.removeFilter(tip_filter)


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


def best_metrics(path: str, trainer: pl.Trainer) -> dict[str, float]:
    """``best/epoch`` and ``best/<monitor>`` of the best checkpoint at ``path``."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    callback = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.best_model_path == path)
    epoch = torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    return {"best/epoch": float(epoch), f"best/{callback.monitor}": float(callback.best_model_score)}


#: Trainer settings a fit that trains several full-batch epochs per Lightning step may have: any
#: other (gradient clipping, accumulation, step or time limits, ...) acts per Lightning step or
#: epoch, so with it each epoch is a Lightning step again.
SEVERAL_EPOCHS_TRAINER_KEYS = frozenset({
    "accelerator", "devices", "precision", "max_epochs", "deterministic", "enable_checkpointing",
    "enable_progress_bar", "enable_model_summary", "log_every_n_steps", "num_sanity_val_steps",
    "benchmark", "default_root_dir", "num_nodes", "strategy", "inference_mode", "barebones",
})


def several_epochs_allowed(trainer_args: dict, callbacks: list, batch_size, distributed: bool) -> bool:
    """Whether a fit may train several epochs per Lightning step: full batch, one process, no
    callback (each may act between epochs), full precision (no loss scaling), and nothing in
    the Trainer's settings that acts per step or epoch."""
    epochs = trainer_args.get("max_epochs")
    return (batch_size is None and not callbacks and not distributed
            and isinstance(epochs, int) and epochs > 1
            and str(trainer_args.get("precision", "32-true")) in ("32", "32-true", "64", "64-true")
            and trainer_args.get("strategy", "auto") == "auto" and trainer_args.get("num_nodes", 1) == 1
            and set(trainer_args) <= SEVERAL_EPOCHS_TRAINER_KEYS)


class Training:
    """The Trainer and what it trains, built (and so checked) before the run opens; the run's
    logger is given to the Trainer when :meth:`run` is called with the run."""

    def __init__(
        self,
        model: nn.Module,
        splits: Splits,
        *,
        make_optimizer,
        penalty,
        batch_size: Optional[int],
        make_scheduler=None,
        scheduler_interval: str = "epoch",
        monitor: Optional[str] = None,
        trainer_args: dict,
        callbacks: list,
        seed: int,
        output_dir: str,
        flush_seconds: float = 10.0,
        tf32: bool = True,
        checkpoints: bool = True,
        epochs_per_step: int = 1,
    ):
        import inspect
        from pathlib import Path

        trainer_args = dict(trainer_args)
        if trainer_args.get("enable_progress_bar") is None:  # a bar for people, none in logs and CI
            trainer_args["enable_progress_bar"] = sys.stderr.isatty() and not os.environ.get("CI")
        from ..settings import check_trainer_names

        # Checked from Lightning's source before anything was imported (settings.validate);
        # here against the Trainer itself, for callers that build a Training directly.
        check_trainer_names(trainer_args, accepted=inspect.signature(pl.Trainer).parameters)
        self.watch: Optional[RankWatch] = None
        self._environment: dict = {}
        distributed = trainer_args.get("strategy") == STRATEGY_NAME
        if distributed:  # Lightning's own DDP, in processes started here, on loopback only
            trainer_args["strategy"] = "ddp"
            self._environment = prepare_environment()
        self.flush_seconds = flush_seconds
        #: Checkpoint before each send of metric points while fitting (tracking.checkpoints).
        self.checkpoints = checkpoints
        self.checkpoints_logged = 0
        self.module = TrainingModule(model, splits.task, splits.num_classes, make_optimizer, penalty,
                                     make_scheduler, scheduler_interval, monitor)
        self.data = TensorDataModule(splits, batch_size, seed)
        if epochs_per_step > 1 and several_epochs_allowed(trainer_args, callbacks, batch_size, distributed):
            epochs = int(trainer_args["max_epochs"])
            self.module.several_epochs_per_step(epochs_per_step, epochs)
            trainer_args["max_epochs"] = -(-epochs // epochs_per_step)
        self.tf32 = tf32
        self.timings = Timings()
        self.checkpoint_path = str(Path(output_dir) / "checkpoints" / "last.ckpt")
        from pytorch_lightning.callbacks import ModelCheckpoint

        for callback in callbacks:  # the best checkpoints beside last.ckpt, in this job's folder
            if isinstance(callback, ModelCheckpoint):
                trainer_args["enable_checkpointing"] = True  # asked for by choosing it
                if callback.dirpath is None:
                    callback.dirpath = str(Path(output_dir) / "checkpoints")
        self.on_interrupt = CheckpointOnInterrupt(self.checkpoint_path)
        try:
            self.trainer = pl.Trainer(
                logger=False,  # the run's logger comes with the run, in run()
                callbacks=[self.timings, self.on_interrupt, *callbacks],
                default_root_dir=output_dir,
                **trainer_args,
            )
        except Exception as error:  # Lightning's MisconfigurationException, TypeError, ValueError
            restore_environment(self._environment)
            raise OrchestratorError(f"The trainer settings are refused by Lightning: {error}") from None
        self.distributed = distributed
        if distributed and not worker_rank():
            self.watch = RankWatch(self.trainer.world_size)

    def run(self, run: Optional[TrackedRun], resume_from: Optional[str] = None,
            abort: Optional[Callable[[str], None]] = None) -> dict[str, float]:
        """Fit (from ``resume_from``, a checkpoint, if given), validate each epoch, test once,
        logging metric points into ``run`` (None: log nothing, as DDP ranks other than zero do);
        return the final metrics (train, val and test).

        Under DDP, rank zero starts the other ranks here, and a failure of any rank ends every
        rank: rank zero kills the others when it fails, and raises :class:`RankFailed` when
        another fails (``abort(reason)`` records the failure if rank zero is left blocked
        instead); the process group is destroyed at the end.
        """
        import signal
        import threading

        logger = RunLogger(run, self.flush_seconds) if run is not None else _NoLogger()
        if run is not None and self.checkpoints and not self.distributed:
            logger.before_send = partial(self._checkpoint, run, logger)
        # Without a run (DDP ranks other than zero), a logger that drops everything: callbacks
        # such as LearningRateMonitor refuse a Trainer with none.
        self.trainer.loggers = [logger] if run is not None else [DummyLogger()]
        trainer, timings, watch = self.trainer, self.timings, self.watch
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handle = self.on_interrupt.handle
            handlers = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        restore_tf32 = use_tf32(trainer, self.tf32)
        fit_logging = 0.0
        try:
            if watch is not None:
                watch.abort = abort
                watch.start()
            if self.distributed:
                join_process_group(trainer)
            if resume_from:
                self._match_checkpoint(resume_from)
            with quiet_lightning():
                try:
                    # A checkpoint fetched from a store is data, not code: tensors and plain
                    # values only (weights_only), never an arbitrary pickle.
                    trainer.fit(self.module, datamodule=self.data, ckpt_path=resume_from,
                                weights_only=True if resume_from else None)
                except SIGTERMException as error:
                    raise Interrupted(signal.SIGTERM) from error
                except pickle.UnpicklingError as error:
                    raise OrchestratorError(
                        f"The checkpoint {resume_from} holds more than weights and plain values, so it "
                        f"is not loaded (it could run code): {str(error).splitlines()[0]} Resume from a "
                        "checkpoint this version of orchestrator wrote, or start a new run."
                    ) from None
                finally:
                    for sig, handler in handlers.items():
                        signal.signal(sig, handler)
                    fit_logging = logger.seconds
                    if run is not None:
                        logger.before_send = None  # the end of the run logs what it ends with
                    logger.flush()  # what was logged before a failure or interruption is kept too
                final = {k: float(v) for k, v in trainer.callback_metrics.items()}
                best = self.best_checkpoint()
                if best is not None:  # test, and later log, the best model rather than the last
                    final.update(best_metrics(best, trainer))
                trainer.test(self.module, datamodule=self.data, verbose=False, ckpt_path=best,
                             weights_only=True if best else None)
                final.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        except BaseException as error:
            self._rank_failed(watch, error)
            raise
        finally:
            if watch is not None:
                watch.settled = True
            if restore_tf32 is not None:
                restore_tf32()
            restore_environment(self._environment)
        end_process_group()
        if watch is not None:
            watch.join()
        # How the time went, logged with the run (and read by the benchmark).
        final["time/fit_seconds"] = timings.fit_end - timings.fit_start
        final["world_size"] = trainer.world_size
        final["time/logging_seconds"] = fit_logging
        started = process_start_time()
        if started is not None and timings.first_step is not None:
            final["time/startup_seconds"] = timings.first_step - started
        logger.log_metrics({k: v for k, v in final.items() if k.startswith(("time/", "best/"))},
                           step=trainer.global_step)
        logger.flush()
        return final

    def _match_checkpoint(self, path: str) -> None:
        """Resume as the checkpoint was trained: one epoch per step, or several (its loops count
        steps of them). A fit that may train several falls back to one; the reverse is refused."""
        import torch

        # Memory-mapped: one key is read here, the whole checkpoint only once, by Lightning.
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        written = saved.get("orchestrator_epochs_per_step", 1)
        module = self.module
        if written == module.epochs_per_step:
            return
        if written == 1:
            self.trainer.fit_loop.max_epochs = module.total_epochs
            module.several_epochs_per_step(1, module.total_epochs)
            return
        raise OrchestratorError(
            f"The checkpoint {path} was written by a fit that trained {written} full-batch epochs in each "
            "Lightning step, which only a fit without callbacks, scheduler or extra trainer settings "
            "does; resume it with the settings it was trained with (trainer.max_epochs may change).")

    def _checkpoint(self, run: TrackedRun, logger: RunLogger) -> None:
        """Save the fit's state and log it to the run as checkpoints/last.ckpt: called before
        metric points are sent, so the store never records an epoch no checkpoint covers.

        A large model's checkpoint can take seconds to write and upload: the sends are then
        spaced so that checkpointing costs at most a tenth of the time between them (the
        metrics stay as complete; they reach the store less often)."""
        from pytorch_lightning.trainer.states import TrainerFn

        if self.trainer.state.fn != TrainerFn.FITTING or self.trainer.sanity_checking:
            return
        started = time.monotonic()
        self.trainer.save_checkpoint(self.checkpoint_path)
        run.log_artifact(self.checkpoint_path, "checkpoints")
        self.checkpoints_logged += 1
        logger.flush_seconds = max(self.flush_seconds, 10 * (time.monotonic() - started))

    def best_checkpoint(self) -> Optional[str]:
        """The best checkpoint of ``callbacks=[model_checkpoint]`` once fitted, else None."""
        from pytorch_lightning.callbacks import ModelCheckpoint

        for callback in self.trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
                return callback.best_model_path
        return None

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
