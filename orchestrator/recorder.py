"""A sweep's recorder: each job's figures drawn, and its run ended, in a second process.

In a sweep whose jobs run one after another in the launching process (Hydra's basic launcher,
and the Optuna sweeper with one job at a time), a job's two figures cost more than a tiny job's
training: matplotlib takes 50-150 ms to draw each one, and drawing holds the GIL, so a thread
would not take it off the critical path. The recorder is one worker process, started with the
sweep (:func:`start`), that draws a job's figures from the predictions the job made, logs them,
and ends the run FINISHED (:func:`finish`), while the launching process goes on with the next job.

- A run is FINISHED only once everything it records is written: metrics, model, figures.
- The sweep waits for the recorder (:func:`wait`) before it summarises its children, and before
  it ends an interrupted sweep's runs, so when the command returns every run is complete.
- If drawing fails, the recorder ends the run FAILED with the reason, and the sweep's summary
  counts it as failed. If the recorder process itself dies, the launching process ends the runs
  it held FAILED with that reason.
- The recorder ignores Ctrl-C: on an interrupt the sweep lets it finish the runs it holds (their
  training is complete), then ends the rest of the sweep KILLED.

Runs go through the ``tracker`` hook's :class:`~orchestrator.tracking_api.Tracker`, opened in
the recorder for the run's store (``Tracker.uri``). Outside such a sweep (a single run, a job in a
joblib or Slurm worker) nothing here is used: the run draws its figures and ends itself.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from .tracking_api import Tracker, TrackedRun

log = logging.getLogger(__name__)

_pool: Optional[ProcessPoolExecutor] = None
#: Runs handed to the recorder, until :func:`wait`: [tracker, run, plots, future]; ``plots`` is
#: dropped (None) as soon as the recorder has ended the run.
_held: list[list] = []


def start(uri: str) -> None:
    """Start the recorder process for the store at ``uri``. It is spawned, and imports MLflow and
    matplotlib and opens the store (never torch) while the launching process imports torch for
    its first job."""
    global _pool
    if _pool is not None:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_prepare)
    _pool.submit(_tracker, uri)  # now, alongside the first job, not when its figures are due


def active() -> bool:
    return _pool is not None


def finish(tracker: Tracker, run: TrackedRun, plots: dict[str, Any]) -> None:
    """Hand the run to the recorder: it draws ``plots`` (:func:`orchestrator.runner.plot_inputs`)
    and ends the run FINISHED, or FAILED with the reason if drawing fails."""
    try:
        if _pool is None:
            raise RuntimeError("no recorder was started")
        held = [tracker, run, plots, _pool.submit(_finish, tracker.uri, run.run_id, plots)]
    except Exception as gone:  # the recorder died: this process draws and ends the run
        log.warning("The sweep's recorder is not running (%s); drawing here", gone)
        draw_and_end(run, plots)
        return
    _held.append(held)
    held[3].add_done_callback(lambda future: _ended(held, future))


def _ended(held: list, future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        held[2] = None  # the recorder ended the run: its plots' data need not be kept


def wait(timeout: Optional[float] = None) -> None:
    """Wait until every run handed to the recorder is ended, then stop the recorder. A run the
    recorder never took (it died, or ``timeout`` seconds passed first) is drawn and ended here; one
    it took and did not end within ``timeout`` is ended FAILED here, with the reason."""
    global _pool
    if _pool is None:
        return
    from concurrent.futures import wait as wait_for

    from .lifecycle import FAILED, RUNNING

    pool, held = _pool, list(_held)
    _pool = None
    _held.clear()
    wait_for([future for *_, future in held], timeout=timeout)
    for tracker, run, plots, future in held:
        if plots is None or (future.done() and not future.cancelled() and future.exception() is None):
            continue  # ended by the recorder
        record = tracker.find_run(run.run_id)
        if record is None or record.status != RUNNING:
            continue
        if future.done() or future.cancel():  # the recorder died, or never got to it
            if future.done() and not future.cancelled():
                log.warning("The sweep's recorder failed (%s); drawing run %s here", future.exception(), run.run_id)
            draw_and_end(run, plots)
        else:
            run.end(FAILED, f"the sweep's recorder did not end the run within {timeout:.0f} s")
    pool.shutdown(wait=False, cancel_futures=True)


# In the recorder process.

_trackers: dict[str, Tracker] = {}


def _prepare() -> None:
    import atexit
    import gc

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the sweep decides, see wait()
    # The sweep's command waits for this process to exit: without the interpreter's final
    # collections over MLflow's and matplotlib's objects (0.7 s of a 2-job sweep's 7 s), as
    # cli.console does for the command itself. Everything is written by then.
    atexit.register(gc.freeze)


def _tracker(uri: str) -> Tracker:
    import matplotlib.figure  # noqa: F401

    from . import plots  # noqa: F401
    from .plugins import get_catalog
    from .tracking_api import open_tracker

    if uri not in _trackers:
        _trackers[uri] = open_tracker(get_catalog().pm.hook, uri)
    return _trackers[uri]


def _finish(uri: str, run_id: str, plots: dict[str, Any]) -> None:
    draw_and_end(_tracker(uri).attach(run_id), plots)


def draw_and_end(run: TrackedRun, plots: dict[str, Any]) -> None:
    """Log the run's figures and end it FINISHED; FAILED with the reason if drawing fails."""
    from .lifecycle import FAILED, FINISHED
    from .runner import log_plots

    try:
        log_plots(run, plots)
    except Exception as error:
        run.end(FAILED, error)
        return
    run.end(FINISHED)
