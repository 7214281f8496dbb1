"""The narrow interface between the framework and its record keeping.

The framework writes and reads runs only through these two types; it never names the store.
MLflow is the one built-in implementation (:mod:`orchestrator.tracking`), registered like any
plugin: the built-in plugin ``builtin.tracking`` answers the :func:`~orchestrator.hookspecs.tracker`
hook. Another plugin's ``tracker`` hook, registered later, takes its place.

- :class:`Tracker`: one store. Opens a run, reopens one (resume), opens a sweep's parent, hands
  out a handle on an existing run, and answers the few reads the framework needs: a run's
  status and tags, its children, one of its artifacts.
- :class:`TrackedRun`: one open run. Tags, params, metric points, artifacts, the data set it
  trained on, the model, and its end with a status (:func:`orchestrator.lifecycle.final_status`)
  and the error, if any. Plugin hooks (``on_run_start``, ``on_run_end``) receive this.

Both are :class:`typing.Protocol` types: an implementation need not inherit from them, only
provide what they list. Statuses are the strings of :mod:`orchestrator.lifecycle`
(``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``).

Importing this module is cheap: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

#: One metric point: ``(key, value, timestamp in milliseconds since the epoch, step)``.
MetricPoint = Tuple[str, float, int, int]


@dataclass(frozen=True)
class RunRecord:
    """What the framework reads back about a run (a sweep's summary, a resume)."""

    #: The run's id, as :attr:`TrackedRun.run_id` gave it.
    run_id: str
    #: ``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``.
    status: str
    #: Every tag of the run (the framework's ``orchestrator.*`` tags, ``error``, the parent's id).
    tags: dict[str, str] = field(default_factory=dict)
    #: The latest value of each metric.
    metrics: dict[str, float] = field(default_factory=dict)
    #: The data sets recorded as the run's inputs (:meth:`TrackedRun.log_dataset`), each as
    #: ``{"name", "digest", "source", "context"}``; empty for a tracker that records none.
    datasets: list[dict[str, str]] = field(default_factory=list)


@runtime_checkable
class TrackedRun(Protocol):
    """One open run: what the framework, the Lightning logger and plugin hooks write to.

    Writes may be called from any thread (a DDP watch ends a run from its own thread).
    """

    #: The run's id in its store: what ``resume=<id>`` takes and the terminal prints.
    run_id: str

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) string tags."""

    def log_params(self, params: Mapping[str, str]) -> None:
        """Record string params, once each (the resolved config, flattened)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Record one value per key at ``step``, stamped now."""

    def log_points(self, points: Sequence[MetricPoint]) -> None:
        """Record metric points ``(key, value, timestamp_ms, step)`` in as few calls to the
        store as it allows: Lightning's logger hands over what it buffered, in batches."""

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as the artifact ``name`` (a relative path: ``config.yaml``)."""

    def log_artifact(self, path: str, folder: Optional[str] = None) -> None:
        """Store the local file ``path`` as an artifact, under ``folder`` if given."""

    def log_figure(self, figure: Any, name: str) -> None:
        """Store a matplotlib figure as the image artifact ``name`` (``plots/x.png``)."""

    def log_dataset(self, name: str, digest: str, source: str,
                    schema: Mapping[str, Tuple[str, Tuple[int, ...]]], context: str = "training") -> None:
        """Record the data set the run uses as one of its inputs, without copying the data:
        ``name`` (the data option: ``digits``, ``csv:houses.csv``), ``digest`` (a hash of its
        arrays), ``source`` (a file path, a URI, or a description such as ``synthetic: two
        Gaussians``), ``schema`` (each array's dtype and full shape: ``{"features": ("float64",
        (1797, 1, 8, 8)), "targets": ("int64", (1797,))}``) and ``context`` (``training``).
        (:mod:`orchestrator.provenance` describes the data; a tracker without this method
        records no data set.)"""

    def log_model(self, module: Any, example: Any, serialization_format: str = "pickle") -> str:
        """Store ``module`` (a ``torch.nn.Module`` taking raw features) as the run's model named
        ``model``, with ``example`` (a float32 array of inputs) to describe its signature;
        return a URI it loads from. For data given as a table, ``example`` is a pandas DataFrame
        of raw rows and ``module`` an :class:`orchestrator.serving.TablePredictor` (its
        ``predict(frame)`` returns numpy): the model stored takes such a DataFrame."""

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` recorded under ``key``, in order."""

    def end(self, status: str, error: Union[BaseException, str, None] = None) -> None:
        """End the run with ``status``. With ``error`` (the exception that ended it, or a
        reason), record it first: :func:`orchestrator.lifecycle.describe` as the tag ``error``,
        :func:`orchestrator.lifecycle.report` as the artifact ``error.txt``. A store that fails
        while recording the error still ends the run."""


@runtime_checkable
class Tracker(Protocol):
    """One store of runs, as the ``tracker`` hook returns it for ``tracking.uri``.

    Optional, not part of the protocol: ``runs_tagged(experiment, tags, status=None) ->
    list[RunRecord]``, the runs of ``experiment`` carrying each of ``tags`` (and in ``status``),
    newest first. ``sweep.reuse=true`` finds a FINISHED run with a job's key through it
    (:mod:`orchestrator.jobs`); with a tracker that lacks it, every job trains.
    ``running_runs(experiment=None, limit=1000) -> list[RunRecord]``, the RUNNING runs of
    ``experiment`` (None: every experiment): :mod:`orchestrator.orphans` closes the dead ones
    through it; with a tracker that lacks it, none is closed.
    ``reopen_sweep(run_id) -> TrackedRun``, a sweep's parent RUNNING again without making it the
    process's current run (jobs may run in the same process): ``orchestrator sweep resume``
    (:mod:`orchestrator.sweep_resume`) needs it.
    """

    #: Where the store is, resolved (never None): printed with run ids, and what
    #: ``tracking.uri=...`` takes to reach the same store again.
    uri: str

    def start_run(self, experiment: str, name: str, tags: Mapping[str, str],
                  parent_run_id: Optional[str] = None) -> TrackedRun:
        """Open a new RUNNING run named ``name`` in ``experiment`` (created if missing) with
        ``tags``, nested under ``parent_run_id`` if given (a sweep's job)."""

    def reopen_run(self, run_id: str) -> TrackedRun:
        """Make run ``run_id`` RUNNING again (resume) and return it; the ``error`` its end
        recorded is dropped, its history kept."""

    def open_sweep(self, experiment: str, name: str, tags: Mapping[str, str]) -> TrackedRun:
        """Open a sweep's parent run, in the launching process, before any job starts (creating
        the store and the experiment on the way, so that parallel jobs race on neither)."""

    def attach(self, run_id: str) -> TrackedRun:
        """A handle on existing run ``run_id``, its status unchanged (to summarise a sweep on
        its parent, or to end runs a sweep left RUNNING)."""

    def find_run(self, run_id: str) -> Optional[RunRecord]:
        """Run ``run_id``'s status, tags and latest metrics; None if there is no such run."""

    def children(self, parent_run_id: str) -> list[RunRecord]:
        """The runs nested under ``parent_run_id``, oldest first."""

    def download_artifact(self, run_id: str, name: str, into: str) -> Optional[str]:
        """Copy run ``run_id``'s artifact ``name`` into the folder ``into``; return the local
        path, or None if the run has no such artifact."""


def open_tracker(hook, uri: Optional[str]) -> Tracker:
    """The tracker of the store at ``uri`` (``tracking.uri``; None: the tracker's default), from
    the plugins' ``tracker`` hook (``hook`` is ``catalog.pm.hook``)."""
    from .errors import OrchestratorError

    tracker = hook.tracker(uri=uri)
    if tracker is None:
        raise OrchestratorError(
            "No plugin provides a tracker, so runs cannot be recorded: the built-in plugin "
            "'builtin.tracking' (MLflow) is not loaded. Remove builtin.tracking from "
            "ORCHESTRATOR_BLOCK_PLUGINS, reinstall orchestrator (pip install -e .), or install a "
            "plugin that implements the tracker hook."
        )
    return tracker
