"""No orphan runs: who runs each run, whether anyone still does, and closing those nobody runs.

A process killed with ``kill -9``, or lost with its node, cannot end its runs: they would stay
RUNNING forever. So every run records who runs it, as tags set when it opens (and when it is
resumed):

- ``orchestrator.host``: the host name; ``orchestrator.pid``: the process writing the run (under
  DDP rank zero; for a sweep's parent, the launching process); ``orchestrator.pid.started``: that
  process's start time (Unix time), which tells it from a later process given the same pid;
  ``orchestrator.pid.namespace`` (Linux): the boot id and the pid namespace, since containers
  sharing the host's name (``--net=host``) do not see each other's processes;
- ``orchestrator.heartbeat``: a Unix time, refreshed when the run opens, each time metric points
  are sent to the store (every ``tracking.flush_seconds`` while training, and when a stage ends)
  and, for a sweep's parent, when a job starts or ends (at most every 5 s from one process). No
  thread: the refresh rides on the sends that happen anyway (one tag write, about 1 ms on SQLite,
  every 10 s by default);
- ``orchestrator.heartbeat.timeout``: how long the run may go without a heartbeat,
  :func:`heartbeat_timeout`: ``max(600 s, 30 x tracking.flush_seconds)``.

A RUNNING run is **dead** (:func:`judge`) when

1. its host is this host (same name, same boot and pid namespace) and its process is gone: no
   process has its pid, the process is a zombie, or the process with that pid started at another
   time (the pid was reused). While the process is there the run is alive, whatever its
   heartbeat: an epoch longer than the timeout never gets a live run closed by a check on its
   own host;
2. its host is another host (or the run names none) and its last heartbeat is older than its
   timeout. A check from another host cannot see the process, so a run that spends longer than
   the timeout between two sends (one epoch longer than 10 minutes with the default
   ``flush_seconds``) could be closed by mistake from another host: raise
   ``tracking.flush_seconds`` for such runs (the timeout is 30 times it);
3. for a sweep's parent: it is dead by rule 1 or 2 (on another host its heartbeat is the latest
   of its own and its jobs', which beat while they train) and none of its jobs is still
   RUNNING once the dead ones are closed. A parent whose jobs still run is left alone.

A run without these tags (recorded by an older version, or not by orchestrator) is never judged
dead. Dead runs are closed (:func:`close_dead`) as KILLED, with the tag
``orchestrator.closed_as_orphan`` (and ``error``) saying why: ``pid 1234 on host gpu7 is gone``,
``no heartbeat since 2026-11-27 10:00:00 UTC (1500 s, timeout 600 s)``; the run is read again
just before, and left alone if it ended or beat meanwhile.

When: ``orchestrator sweep close [<parent run id>]`` (:func:`sweep_command`), and
automatically (:func:`close_on_open`) each time a run or a sweep opens a store, for the RUNNING
runs of its experiment: one search of the store, bounded in time, never fatal to the new run.

Importing this module is cheap: the standard library only (psutil when a pid is checked).
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from .errors import OrchestratorError
from .lifecycle import KILLED, RUNNING

if TYPE_CHECKING:
    from .plugins import Catalog
    from .tracking_api import RunRecord, Tracker, TrackedRun

log = logging.getLogger(__name__)

HOST = "orchestrator.host"
PID = "orchestrator.pid"
PID_STARTED = "orchestrator.pid.started"
PID_NAMESPACE = "orchestrator.pid.namespace"
HEARTBEAT = "orchestrator.heartbeat"
TIMEOUT = "orchestrator.heartbeat.timeout"
#: Set on a run closed as an orphan: why it was judged dead.
CLOSED = "orchestrator.closed_as_orphan"
PARENT_TAG = "mlflow.parentRunId"

#: The shortest timeout, and how many flush intervals it spans at least.
MIN_TIMEOUT = 600.0
FLUSHES_PER_TIMEOUT = 30
#: A process whose start time differs from the recorded one by more is another process.
START_TOLERANCE = 1.0
#: The automatic check: at most this many RUNNING runs read, and this long spent closing.
AUTO_LIMIT = 1000
AUTO_BUDGET_SECONDS = 10.0


def heartbeat_timeout(flush_seconds: Optional[float] = None) -> float:
    """Seconds without a heartbeat after which a run on another host is dead:
    ``max(600, 30 x flush_seconds)``."""
    return max(MIN_TIMEOUT, FLUSHES_PER_TIMEOUT * float(flush_seconds or 0))


def this_host() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=1)
def pid_namespace() -> str:
    """Where this process's pids mean something: ``<boot id>:<pid namespace>`` on Linux (two
    containers may share a host name, never both), empty where it cannot be read."""
    import os

    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_started(pid: Optional[int] = None) -> Optional[float]:
    """When process ``pid`` (None: this one) started, as Unix time; None if it cannot be read."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def owner_tags(flush_seconds: Optional[float] = None) -> dict[str, str]:
    """The tags a run opens with: this host, this process and its start, a first heartbeat, and
    the timeout (:func:`heartbeat_timeout` of the run's ``tracking.flush_seconds``)."""
    import os

    tags = {HOST: this_host(), PID: str(os.getpid()), HEARTBEAT: f"{time.time():.0f}",
            TIMEOUT: f"{heartbeat_timeout(flush_seconds):.0f}"}
    started = process_started()
    if started is not None:
        tags[PID_STARTED] = f"{started:.2f}"
    if pid_namespace():
        tags[PID_NAMESPACE] = pid_namespace()
    return tags


def beat(run: TrackedRun) -> None:
    """Refresh the run's heartbeat. Never raises: a heartbeat must not break a run."""
    try:
        run.set_tags({HEARTBEAT: f"{time.time():.0f}"})
    except Exception as error:  # the store is unreachable now: the next send tries again
        log.debug("Heartbeat of run %s not recorded: %s", getattr(run, "run_id", "?"), error)


_parent_trackers: dict[str, Tracker] = {}
#: When this process last refreshed each sweep parent's heartbeat (time.monotonic()).
_parent_beats: dict[str, float] = {}
#: A process refreshes a parent's heartbeat at most this often: the timeout is 600 s or more, and
#: a sweep of tiny jobs would otherwise write it twice a job.
PARENT_BEAT_SECONDS = 5.0


def beat_parent(sweep_dir: str) -> None:
    """Refresh the heartbeat of the sweep parent recorded in ``sweep_dir`` (a job starts or
    ends), unless this process did less than :data:`PARENT_BEAT_SECONDS` ago. Never raises."""
    try:
        from .sweep import _tracker, read_parent

        parent = read_parent(sweep_dir)
        if parent is None:
            return
        now = time.monotonic()
        if now - _parent_beats.get(parent["run_id"], -PARENT_BEAT_SECONDS) < PARENT_BEAT_SECONDS:
            return
        uri = parent["tracking_uri"]
        tracker = _parent_trackers.get(uri) or _parent_trackers.setdefault(uri, _tracker(uri))
        beat(tracker.attach(parent["run_id"]))
        _parent_beats[parent["run_id"]] = now
    except Exception as error:
        log.debug("Heartbeat of the sweep's parent not recorded: %s", error)


@dataclass(frozen=True)
class Verdict:
    """Whether a RUNNING run is dead, and why (or why it is left alone)."""

    run_id: str
    dead: bool
    #: Why it is dead (the ``orchestrator.closed_as_orphan`` tag), alive, or cannot be told.
    reason: str
    #: The heartbeat tag as read, to check that it did not move before the run is closed.
    heartbeat: Optional[str] = None


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _when(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def process_gone(pid: int, started: Optional[float]) -> Optional[str]:
    """None if process ``pid`` runs on this host (and, with ``started``, is the process that
    started then); else what happened to it."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "has exited"
        created = process.create_time()
    except psutil.NoSuchProcess:
        return "is gone"
    except psutil.AccessDenied:  # there, and not ours to inspect: alive
        return None
    if started is not None and abs(created - started) > START_TOLERANCE:
        return f"is gone (pid {pid} now belongs to a process started {_when(created)})"
    return None


def judge(record: RunRecord, now: Optional[float] = None, host: Optional[str] = None,
          heartbeat: Optional[float] = None) -> Verdict:
    """Whether the RUNNING run ``record`` is dead, by rules 1 and 2 of this module's docstring.
    ``heartbeat``: a later sign of life than its own tag (a sweep parent's jobs)."""
    now = time.time() if now is None else now
    host = host or this_host()
    tags = record.tags
    seen = tags.get(HEARTBEAT)
    pid = _number(tags.get(PID))
    if tags.get(HOST) == host and tags.get(PID_NAMESPACE, "") == pid_namespace() and pid is not None:
        gone = process_gone(int(pid), _number(tags.get(PID_STARTED)))
        where = f"pid {int(pid)} on host {host}"
        if gone is None:
            return Verdict(record.run_id, False, f"{where} is running", seen)
        return Verdict(record.run_id, True, f"{where} {gone}", seen)
    last = max((t for t in (_number(seen), heartbeat) if t is not None), default=None)
    if last is None:
        return Verdict(record.run_id, False, "cannot tell whether it runs: it records no host, pid "
                       "or heartbeat (a run from an older version, or not orchestrator's)", seen)
    timeout = _number(tags.get(TIMEOUT)) or MIN_TIMEOUT
    age = now - last
    where = f"on host {tags[HOST]}" if tags.get(HOST) else "on an unknown host"
    if age > timeout:
        return Verdict(record.run_id, True, f"no heartbeat since {_when(last)} ({age:.0f} s, timeout "
                                            f"{timeout:.0f} s), {where}", seen)
    return Verdict(record.run_id, False, f"heartbeat {max(age, 0):.0f} s ago (timeout {timeout:.0f} s), "
                                         f"{where}", seen)


def is_parent(record: RunRecord) -> bool:
    return record.tags.get("orchestrator.sweep") == "parent"


def latest_heartbeat(records: Iterable[RunRecord]) -> Optional[float]:
    return max((t for t in (_number(r.tags.get(HEARTBEAT)) for r in records) if t is not None), default=None)


def close(tracker: Tracker, verdict: Verdict) -> bool:
    """End the dead run as KILLED with the reason, unless it ended or beat since it was read."""
    now = tracker.find_run(verdict.run_id)
    if now is None or now.status != RUNNING or now.tags.get(HEARTBEAT) != verdict.heartbeat:
        return False
    run = tracker.attach(verdict.run_id)
    run.set_tags({CLOSED: verdict.reason, "error": f"closed as an orphan: {verdict.reason}"})
    run.end(KILLED)
    return True


@dataclass
class Outcome:
    """What a pass over RUNNING runs did: the runs closed, and those left alone, with reasons."""

    closed: list[Verdict]
    left: list[Verdict]


def close_dead(tracker: Tracker, running: Sequence[RunRecord], children: Optional[dict[str, list]] = None,
               deadline: Optional[float] = None) -> Outcome:
    """Judge and close the dead ones among ``running`` (RUNNING runs): jobs and single runs first,
    then each sweep parent whose jobs have all ended (rule 3). ``children``: every job of a parent,
    ended ones too, where known (their heartbeats count for the parent); otherwise the RUNNING ones
    among ``running``. Stops closing at ``deadline`` (``time.monotonic()``)."""
    outcome = Outcome([], [])
    by_parent: dict[str, list] = {}
    for record in running:
        by_parent.setdefault(record.tags.get(PARENT_TAG, ""), []).append(record)
    ended: set[str] = set()
    for record in [r for r in running if not is_parent(r)] + [r for r in running if is_parent(r)]:
        if deadline is not None and time.monotonic() > deadline:
            outcome.left.append(Verdict(record.run_id, False, "not judged: the check ran out of time"))
            continue
        if is_parent(record):
            jobs = (children or {}).get(record.run_id) or by_parent.get(record.run_id, [])
            still = [j for j in by_parent.get(record.run_id, []) if j.run_id not in ended]
            if still:
                outcome.left.append(Verdict(record.run_id, False, f"{len(still)} of its jobs still RUNNING"))
                continue
            verdict = judge(record, heartbeat=latest_heartbeat(jobs))
        else:
            verdict = judge(record)
        if not verdict.dead:
            outcome.left.append(verdict)
            continue
        try:
            closed = close(tracker, verdict)
        except Exception as error:  # the store refused: the other runs are still judged
            outcome.left.append(Verdict(record.run_id, False, f"dead ({verdict.reason}) but could not be "
                                                              f"closed: {type(error).__name__}: {error}"))
            continue
        if closed:
            outcome.closed.append(verdict)
            ended.add(record.run_id)
        else:
            outcome.left.append(Verdict(record.run_id, False, "it ended or sent a heartbeat while it was judged"))
    return outcome


def running_runs(tracker: Tracker, experiment: Optional[str], limit: int = AUTO_LIMIT) -> list:
    """The RUNNING runs of ``experiment`` (None: every experiment), if the tracker can list them
    (``running_runs``, which the MLflow tracker has); a tracker that cannot gets no closing."""
    lister = getattr(tracker, "running_runs", None)
    return list(lister(experiment, limit)) if lister is not None else []


def close_on_open(tracker: Tracker, experiment: str, skip: Iterable[str] = ()) -> Outcome:
    """The automatic check, as a run or a sweep opens ``experiment`` in the store: close its dead
    RUNNING runs (``skip``: a run being resumed). One search, at most
    ``AUTO_BUDGET_SECONDS`` spent closing; a failure is a warning, never the new run's end."""
    started = time.monotonic()
    try:
        skipped = set(skip)
        running = [r for r in running_runs(tracker, experiment) if r.run_id not in skipped]
        outcome = close_dead(tracker, running, deadline=started + AUTO_BUDGET_SECONDS)
    except Exception as error:
        log.warning("Could not close the dead runs of experiment %r in %s: %s: %s", experiment,
                    getattr(tracker, "uri", "the store"), type(error).__name__, error)
        return Outcome([], [])
    for verdict in outcome.closed:
        log.warning("Run %s was left RUNNING by a process that is gone: closed as KILLED (%s).",
                    verdict.run_id, verdict.reason)
    for verdict in outcome.left:
        if verdict.reason.startswith("dead ("):
            log.warning("Run %s is %s", verdict.run_id, verdict.reason)
    log.debug("Orphan check: %d RUNNING, %d closed, %.3f s", len(running), len(outcome.closed),
              time.monotonic() - started)
    return outcome


USAGE = "orchestrator sweep close [<parent run id>] [tracking.uri=...]"
HELP = f"""Usage: {USAGE}
       orchestrator sweep resume <parent run id> [tracking.uri=...] [hydra.launcher.<key>=...]

Close the runs that a process killed without warning (kill -9, a lost node, a preempted job)
left RUNNING: each is ended KILLED, with the tag orchestrator.closed_as_orphan saying why. A run
is dead when its host is this host and its process is gone (or its pid now belongs to another
process), or when its host is another and it has sent no heartbeat for its timeout
(orchestrator.heartbeat.timeout: max(10 minutes, 30 x tracking.flush_seconds)). A run whose
process still runs is left alone, and so is a sweep parent while any of its jobs is RUNNING.

  orchestrator sweep close <parent run id>   that sweep: its dead parent and dead jobs
  orchestrator sweep close                   every dead run of the store, in every experiment
  orchestrator sweep resume <parent run id>  run the jobs of that sweep that did not finish (FAILED,
                                             KILLED, never started) under the same parent, with the
                                             recorded overrides and launcher settings; its FINISHED
                                             (reused, pruned) jobs are not trained again, and the
                                             parent gets a summary of every job. A dead RUNNING
                                             sweep is closed first; a live one is refused.

The store is the one the command would write to: ./mlruns/mlflow.db under the current
directory, $MLFLOW_TRACKING_URI, or tracking.uri=... given after the id (resume also takes
hydra/launcher=... and hydra.launcher.<key>=... in place of the recorded ones). Dead runs of an
experiment are also closed each time a run or a sweep starts in it.
"""


def parse(argv: Sequence[str]) -> tuple[Optional[str], Optional[str]]:
    """``(parent run id or None, tracking.uri or None)`` from the words after ``sweep``."""
    if not argv or argv[0] != "close":
        given = f" (got {' '.join(argv)!r})" if argv else ""
        raise OrchestratorError(f"orchestrator sweep takes one command, close or resume{given}. Usage: "
                                f"{USAGE}; orchestrator sweep resume <parent run id>")
    run_id, uri = None, None
    for arg in argv[1:]:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "tracking.uri":
            uri = value.strip("'\"") or None
        elif sep or arg.startswith("-") or run_id is not None:
            raise OrchestratorError(f"orchestrator sweep close: {arg!r} is not understood; it takes a "
                                    f"parent run id and tracking.uri=... Usage: {USAGE}")
        else:
            run_id = arg
    return run_id, uri


def _line(verdict: Verdict, what: str, closed: bool) -> str:
    if closed:
        return f"  closed {what} as KILLED: {verdict.reason}"
    return f"  left {what} alone: {verdict.reason}"


def close_sweep(tracker: Tracker, run_id: str) -> list[str]:
    """``orchestrator sweep close <id>``: the lines to print; refuses a run that is not a sweep's
    parent."""
    record = tracker.find_run(run_id)
    if record is None:
        raise OrchestratorError(
            f"sweep close {run_id}: no run with that id in {tracker.uri}. A run is looked for in the "
            "store the command would write to: ./mlruns/mlflow.db under the current directory, "
            "$MLFLOW_TRACKING_URI, or tracking.uri=... given after the id. Nothing was closed."
        )
    if not is_parent(record):
        parent = record.tags.get(PARENT_TAG)
        what = (f"it is a job of sweep {parent}: orchestrator sweep close {parent} closes that sweep"
                if parent else "it is a run of its own, not a sweep's")
        raise OrchestratorError(
            f"sweep close {run_id}: that run is not a sweep's parent run (it has no tag "
            f"orchestrator.sweep=parent): {what}. orchestrator sweep close with no id closes every dead "
            f"run of the store, this one too if it is dead. Nothing was closed."
        )
    jobs = tracker.children(run_id)
    running = [j for j in jobs if j.status == RUNNING] + ([record] if record.status == RUNNING else [])
    outcome = close_dead(tracker, running, children={run_id: jobs})
    names = {j.run_id: f"job {j.tags.get('orchestrator.sweep.job', '?')} (run {j.run_id})" for j in jobs}
    names[run_id] = f"the parent {run_id}"
    lines = [f"Sweep {run_id} in {tracker.uri}: parent {record.status}, {len(jobs)} jobs."]
    lines += [_line(v, names.get(v.run_id, v.run_id), True) for v in outcome.closed]
    lines += [_line(v, names.get(v.run_id, v.run_id), False) for v in outcome.left]
    untouched = len([j for j in jobs if j.status != RUNNING])
    if untouched:
        lines.append(f"  {untouched} ended job{'s' if untouched != 1 else ''} untouched.")
    if not running:
        lines.append("  Nothing is RUNNING: nothing to close.")
    return lines


def close_store(tracker: Tracker) -> list[str]:
    """``orchestrator sweep close`` with no id: every dead RUNNING run of the store."""
    running = running_runs(tracker, None, limit=50000)
    outcome = close_dead(tracker, running)
    lines = [f"{len(running)} RUNNING run{'s' if len(running) != 1 else ''} in {tracker.uri}: "
             f"{len(outcome.closed)} closed as KILLED, {len(outcome.left)} left alone."]
    lines += [_line(v, f"run {v.run_id}", True) for v in outcome.closed]
    lines += [_line(v, f"run {v.run_id}", False) for v in outcome.left]
    return lines


def sweep_command(argv: Sequence[str], catalog: Catalog) -> int:
    """Run ``orchestrator sweep ARGV``; return the exit status (a refusal raises
    :class:`~orchestrator.errors.OrchestratorError`: exit status 2)."""
    from .tracking_api import open_tracker

    if any(a in ("-h", "--help") for a in argv):
        print(HELP, end="")
        return 0
    run_id, uri = parse(argv)
    tracker = open_tracker(catalog.pm.hook, uri)
    lines = close_sweep(tracker, run_id) if run_id else close_store(tracker)
    print("\n".join(lines))
    sys.stdout.flush()
    return 0
