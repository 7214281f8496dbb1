"""Metric points from Lightning to the run, in batches, through the tracker's interface."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from ..orphans import beat

if TYPE_CHECKING:
    from ..tracking_api import MetricPoint, TrackedRun


class RunLogger(Logger):
    """A Lightning logger that adds metric points to an open
    :class:`~orchestrator.tracking_api.TrackedRun`, whatever tracker records it.

    The run's life (start, params, its end) belongs to :func:`orchestrator.runner.run`; this
    logger only adds metric points to it. Points are kept in memory and handed to the run
    (:meth:`~orchestrator.tracking_api.TrackedRun.log_points`, which MLflow sends with one
    ``log_batch`` call per 1000 points) when ``flush_seconds`` have passed since the last
    hand-over, and when training ends (or fails): a point costs MLflow's SQLite store about
    0.1 ms, more than a full-batch step of a small model, and a call far more. Each hand-over
    also refreshes the run's heartbeat (:func:`orchestrator.orphans.beat`, one tag).
    """

    def __init__(self, run: TrackedRun, flush_seconds: float = 10.0):
        super().__init__()
        self._run = run
        self._buffer: list[MetricPoint] = []
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self._last_beat = float("-inf")
        #: Seconds spent handing metric points to the run (reported as time/logging_seconds).
        self.seconds = 0.0
        #: Called before points are handed over (a checkpoint that covers them), if set.
        self.before_send: Optional[Callable[[], None]] = None

    @property
    def name(self) -> str:
        return ""  # Lightning's own checkpoints, if enabled, go to <default_root_dir>/<run id>/

    @property
    def version(self) -> str:
        return self._run.run_id

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config is logged as the run's params when it opens

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: Optional[int] = None) -> None:
        started = time.perf_counter()
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            value = value.item() if hasattr(value, "item") else float(value)
            self._buffer.append((key, value, timestamp, step or 0))
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()
        self.seconds += time.perf_counter() - started

    def flush(self) -> None:
        started = time.perf_counter()
        points, self._buffer = self._buffer, []
        if points and self.before_send is not None:
            self.before_send()
        if points:
            self._run.log_points(points)
            if time.monotonic() - self._last_beat >= 1.0:  # the run is alive (orchestrator.orphans)
                beat(self._run)
                self._last_beat = time.monotonic()
        self._last_flush = time.monotonic()
        self.seconds += time.perf_counter() - started

    def finalize(self, status: str = "success") -> None:
        pass  # Training.run() flushes once fitting (or testing) is over; the run stays open


class _NoLogger:
    """Stands in for the run's logger on DDP ranks other than zero."""

    seconds = 0.0

    def flush(self) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass
