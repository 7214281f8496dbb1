"""``orchestrator sweep resume <parent run id>``: finish a sweep whose jobs did not all finish.

A sweep's parent records its command line when it opens (:func:`record`: the artifact
``sweep.json``, the task overrides and Hydra's own, launcher and sweeper settings included).
Resuming runs that command line again (:func:`command_line`), in a new sweep folder, with three
differences:

- :class:`~orchestrator.sweep.SweepHooks` attaches to the same parent instead of opening one
  (:func:`reopen`: RUNNING again, owned by this process, ``orchestrator.sweep.resumed`` counting
  the resumes) and marks the sweep folder's ``parent.json`` as a resume;
- each job asks, once its key is known (:mod:`orchestrator.jobs`, before torch is imported),
  whether a FINISHED run of *this parent* has the same key (:func:`done_or`): a trained, reused
  or pruned job counts as done. Such a job is neither trained nor recorded again
  (:func:`already_done`); it returns that run's ranking metric to the sweeper. The others
  (FAILED, KILLED, never started) train as new children of the parent;
- before the summary is written, :func:`supersede` tags ``orchestrator.retried=true`` each
  earlier attempt of a job (same overrides) that did not finish, once a later one finished (or,
  if none did, every attempt but the latest), so the summary counts each job once.

:func:`load` refuses, before anything is written (exit status 2): an id that is no run, or no
sweep parent, or a store that is not there or cannot be read; a parent recorded before
``sweep.json`` existed; a sweep still running (a live parent or job). A RUNNING parent whose
process is gone is closed first, as ``orchestrator sweep close`` would (:mod:`orchestrator.orphans`).

Importing this module is cheap: the standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .errors import OrchestratorError
from .lifecycle import FINISHED, KILLED, RUNNING

if TYPE_CHECKING:
    from .plugins import Catalog
    from .runner import Prepared, RunResult
    from .tracking_api import RunRecord, TrackedRun, Tracker

USAGE = ("orchestrator sweep resume <parent run id> [tracking.uri=...] [tracking.experiment=...] "
         "[hydra/launcher=... hydra.launcher.<key>=...]")
#: The parent's artifact holding the sweep's command line.
RECORD = "sweep.json"
#: Parent tags: how many times the sweep was resumed, and the latest resume's sweep folder.
RESUMED = "orchestrator.sweep.resumed"
RESUMED_DIR = "orchestrator.sweep.resumed_dir"
#: A superseded attempt (the same tag ``sweep.retries`` sets): out of the summary's failures.
RETRIED = "orchestrator.retried"
PARENT_TAG = "mlflow.parentRunId"
JOB = "orchestrator.sweep.job"
OVERRIDES = "orchestrator.overrides"


@dataclass
class Resume:
    """A resume, as :func:`load` found it."""

    #: The parent run, and what the store holds about it.
    run_id: str
    parent: RunRecord
    #: The store holding it (``Tracker.uri``): the resumed jobs are recorded there.
    uri: str
    #: The sweep's recorded overrides: the task's, and Hydra's (launcher, sweeper, folders).
    task: list[str]
    hydra: list[str]
    #: Launcher settings given after the id, in place of the recorded ones.
    extras: list[str] = field(default_factory=list)
    #: Its children when it was found (after dead ones were closed).
    jobs: list = field(default_factory=list)
    #: What was closed as dead before resuming (lines to print).
    closed: list[str] = field(default_factory=list)


#: The resume this process runs: set by the command line before Hydra composes, read by SweepHooks.
active: Optional[Resume] = None


# The parent's side: what it records when it opens, and how a resume reopens it.

def record(parent: TrackedRun, task: Sequence[str], hydra: Sequence[str]) -> None:
    """Store the sweep's command line on its parent (artifact ``sweep.json``): what a resume runs."""
    parent.log_text(json.dumps({"task": list(task), "hydra": list(hydra)}, indent=1) + "\n", RECORD)


def reopen(tracker: Tracker, sweep_dir: str, flush_seconds: Optional[float]) -> TrackedRun:
    """SweepHooks, resuming: the parent RUNNING again, owned by this process."""
    from .orphans import owner_tags

    resume = active
    if tracker.uri != resume.uri:  # command_line() points the jobs at the parent's store
        raise OrchestratorError(f"sweep resume {resume.run_id}: the sweep would write to {tracker.uri}, "
                                f"not to {resume.uri} where its parent is.")
    count = int(resume.parent.tags.get(RESUMED, "0") or 0) + 1
    tracker.attach(resume.run_id).set_tags({**owner_tags(flush_seconds), RESUMED: str(count),
                                            RESUMED_DIR: str(Path(sweep_dir).resolve())})
    return tracker.reopen_sweep(resume.run_id)


# The job's side.

def done_or(tracker: Tracker, parent_run_id: str,
            fallback: Optional[Callable[[str], Any]]) -> Callable[[str], Any]:
    """The ``reuse`` question of :func:`orchestrator.runner.prepare`, resuming: the newest
    FINISHED child of the parent with the job's key (trained, reused or pruned), else what
    ``fallback`` (``sweep.reuse=true``) finds, else None."""
    from .jobs import JOB_KEY

    def find(key: str):
        done = [c for c in reversed(tracker.children(parent_run_id))
                if c.status == FINISHED and c.tags.get(JOB_KEY) == key]
        if done:
            return done[0]
        return fallback(key) if fallback is not None else None

    return find


def is_done(found: Optional[RunRecord], parent_run_id: Optional[str]) -> bool:
    """Whether ``found`` (what :func:`done_or` answered) is a run of the sweep itself."""
    return found is not None and bool(parent_run_id) and found.tags.get(PARENT_TAG) == parent_run_id


def already_done(tracker: Tracker, prepared: Prepared) -> RunResult:
    """A resumed job whose key has a FINISHED run in the sweep: nothing trained, nothing
    recorded; that run's metrics are the job's."""
    from .runner import RunResult

    done = prepared.reused
    print(f"Job already done in this sweep: run {done.run_id} ({FINISHED}, job key {prepared.job_key}); "
          "not trained again (sweep resume).", file=sys.stderr)
    return RunResult(done.run_id, tracker.uri, dict(done.metrics), "", None, prepared.splits)


def supersede(tracker: Tracker, parent_run_id: str) -> int:
    """Tag ``orchestrator.retried=true`` each earlier attempt of a job that a later one replaces
    (see the module's description); return how many were tagged."""
    groups: dict[str, list] = {}
    for child in tracker.children(parent_run_id):  # oldest first
        if child.status == RUNNING or child.tags.get(RETRIED) == "true":
            continue
        groups.setdefault(identity(child), []).append(child)
    marked = 0
    parent = tracker.find_run(parent_run_id)
    if parent is not None and parent.tags.get("orchestrator.sweeper") == "OptunaSweeper":
        # A search asks its study for new trials instead of running a job again: a trial killed
        # with its launcher is replaced by the one the continued study runs in its place (a FAILED
        # trial counts towards n_trials, as Optuna counts it, and stays a failure).
        for runs in groups.values():
            for killed in [r for r in runs if r.status == KILLED]:
                tracker.attach(killed.run_id).set_tags({RETRIED: "true"})
                marked += 1
        return marked
    for runs in groups.values():
        finished = [r for r in runs if r.status == FINISHED]
        for stale in ([r for r in runs if r.status != FINISHED] if finished else runs[:-1]):
            tracker.attach(stale.run_id).set_tags({RETRIED: "true"})
            marked += 1
    return marked


def identity(child: RunRecord) -> str:
    """What makes two children the same job: their overrides (the store named aside)."""
    if OVERRIDES not in child.tags:
        return child.run_id
    return " ".join(o for o in child.tags[OVERRIDES].split() if not o.lstrip("+").startswith("tracking.uri="))


# The command's side: refusals, then the command line Hydra runs.

def parse(argv: Sequence[str]) -> tuple[str, Optional[str], Optional[str], list[str]]:
    """``(parent run id, tracking.uri, tracking.experiment, launcher settings)`` from the words
    after ``sweep resume``."""
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise OrchestratorError(f"sweep resume needs the id of a sweep's parent run (printed as the sweep "
                                f"starts: \"Sweep parent run <id>\"). Usage: {USAGE}")
    run_id, uri, experiment, extras = argv[0], None, None, []
    for arg in argv[1:]:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "tracking.uri":
            uri = value.strip("'\"") or None
        elif sep and key == "tracking.experiment":
            experiment = value.strip("'\"") or None
        elif sep and (key == "hydra/launcher" or key.startswith("hydra.launcher.")):
            extras.append(arg)
        else:
            raise OrchestratorError(
                f"sweep resume {run_id}: {arg!r} is not understood. After the parent run id it takes "
                "tracking.uri=... (the store), tracking.experiment=... (where to list sweeps) and launcher "
                "settings (hydra/launcher=..., hydra.launcher.n_jobs=...); the jobs' own settings are the "
                f"sweep's, as its parent recorded them. Usage: {USAGE}"
            )
    return run_id, uri, experiment, extras


def _default_uri(uri: Optional[str]) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlruns' / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]).resolve() if uri.startswith("sqlite:///") else None


def _where(given: Optional[str]) -> str:
    if given:
        return "given as tracking.uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "from $MLFLOW_TRACKING_URI"
    return "./mlruns/mlflow.db under the current directory"


def _available(tracker: Tracker, experiment: str) -> str:
    """The newest sweep parents of ``experiment``, to name in a refusal."""
    search = getattr(tracker, "runs_tagged", None)
    if search is None:
        return ""
    parents = search(experiment, {"orchestrator.sweep": "parent"})
    if not parents:
        return (f" The store holds no sweep parent run in experiment {experiment!r} "
                "(tracking.experiment=... names another).")
    shown = "; ".join(f"{p.run_id} ({p.status}, {p.tags.get('mlflow.runName', 'sweep')[:60]})" for p in parents[:5])
    more = f" and {len(parents) - 5} older" if len(parents) > 5 else ""
    return f" Sweep parent runs in experiment {experiment!r}, newest first: {shown}{more}."


def load(catalog: Catalog, argv: Sequence[str]) -> Resume:
    """Find the sweep and what it recorded, or refuse with one paragraph (nothing written). Last,
    the dead RUNNING runs of the sweep are closed as KILLED (:mod:`orchestrator.orphans`)."""
    from . import orphans
    from .tracking_api import open_tracker

    run_id, given, experiment, extras = parse(argv)
    experiment = experiment or "orchestrator"
    uri = _default_uri(given)
    path = _sqlite_path(uri)
    if path is not None and not path.is_file():  # opening it would create an empty store
        raise OrchestratorError(
            f"sweep resume {run_id}: there is no store at {path} ({_where(given)}), so no sweep to resume. "
            "Give the store the sweep was recorded in after the id (orchestrator sweep resume "
            f"{run_id} tracking.uri=sqlite:///path/to/mlruns/mlflow.db), or run from the directory "
            "that holds its mlruns/. Nothing was started."
        )
    try:
        tracker = open_tracker(catalog.pm.hook, given)
        found = tracker.find_run(run_id)
        available = "" if found is not None and orphans.is_parent(found) else _available(tracker, experiment)
    except OrchestratorError:
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0][:300]
        raise OrchestratorError(
            f"sweep resume {run_id}: the store {uri} ({_where(given)}) cannot be read: "
            f"{type(error).__name__}: {first}. Check that it is reachable, or give the store the sweep "
            "was recorded in with tracking.uri=... after the id. Nothing was started."
        ) from error
    if found is None:
        raise OrchestratorError(
            f"sweep resume {run_id}: no run with that id in {tracker.uri} ({_where(given)}); a sweep's "
            f"parent run id is printed as the sweep starts (\"Sweep parent run <id>\").{available} "
            "Nothing was started."
        )
    if not orphans.is_parent(found):
        parent = found.tags.get(PARENT_TAG)
        what = (f"it is job {found.tags.get(JOB, '?')} of sweep {parent}: orchestrator sweep resume {parent} "
                "resumes that sweep" if parent else
                f"it is a run of its own, not a sweep's (orchestrator rerun {run_id} recreates it)")
        raise OrchestratorError(
            f"sweep resume {run_id}: that run is not a sweep's parent run (it has no tag "
            f"orchestrator.sweep=parent): {what}.{available} Nothing was started."
        )
    with tempfile.TemporaryDirectory(prefix="orchestrator-resume-") as into:
        recorded = tracker.download_artifact(run_id, RECORD, into)
        try:
            command = json.loads(Path(recorded).read_text()) if recorded else None
        except (OSError, ValueError):
            command = None
    if not isinstance(command, dict) or not isinstance(command.get("task"), list):
        raise OrchestratorError(
            f"sweep resume {run_id}: the sweep's parent records no command line (artifact {RECORD}, "
            "written by sweeps since sweep resume exists), so its jobs cannot be listed again. Run the "
            "sweep again with sweep.reuse=true: the jobs whose job key has a FINISHED run are then "
            "recorded without training. Nothing was started."
        )
    if getattr(tracker, "reopen_sweep", None) is None:
        raise OrchestratorError(
            f"sweep resume {run_id}: the tracker {type(tracker).__name__} cannot reopen a sweep's parent "
            "run (it has no reopen_sweep method). Nothing was started."
        )
    jobs = tracker.children(run_id)
    running = [j for j in jobs if j.status == RUNNING]
    alive = [v for v in (orphans.judge(j) for j in running) if not v.dead]
    if found.status == RUNNING and not alive:
        verdict = orphans.judge(found, heartbeat=orphans.latest_heartbeat(jobs))
        alive = [] if verdict.dead else [verdict]
    if alive:
        names = {j.run_id: f"job {j.tags.get(JOB, '?')} (run {j.run_id})" for j in jobs}
        who = names.get(alive[0].run_id, f"its parent {run_id}")
        raise OrchestratorError(
            f"sweep resume {run_id}: the sweep is still running: {who} is RUNNING ({alive[0].reason}). "
            "Wait for it to end, or stop it (Ctrl-C, kill) and resume it then; a run whose process is "
            "gone is closed as KILLED by the resume. Nothing was started."
        )
    closed = []
    if running or found.status == RUNNING:  # dead: closed as orchestrator sweep close would
        closed = orphans.close_sweep(tracker, run_id)[1:]
        found = tracker.find_run(run_id)
        jobs = tracker.children(run_id)
        if found.status == RUNNING or any(j.status == RUNNING for j in jobs):
            raise OrchestratorError(f"sweep resume {run_id}: the sweep's runs could not all be closed:"
                                    f"{' '.join(closed)}. Nothing was started.")
    return Resume(run_id, found, tracker.uri, [str(o) for o in command["task"]],
                  [str(o) for o in command.get("hydra") or []], extras, jobs, closed)


def command_line(resume: Resume) -> list[str]:
    """The arguments Hydra runs: ``-m``, the recorded Hydra overrides (the launcher settings given
    after the id in place of the recorded ones), then the recorded task overrides. The jobs write
    to the parent's store: a recorded ``tracking.uri`` that now names another one is replaced, and
    with none recorded ``MLFLOW_TRACKING_URI`` is set for this process and the jobs it starts."""
    given = {e.lstrip("+").split("=", 1)[0] for e in resume.extras}
    hydra = [o for o in resume.hydra if o != "hydra.mode=MULTIRUN" and o.lstrip("+").split("=", 1)[0] not in given]
    task, pointed = [], False
    for override in resume.task:
        key, _, value = override.lstrip("+").partition("=")
        if key == "tracking.uri":
            pointed = True
            if _resolved(value.strip("'\"")) != resume.uri:
                override = f"tracking.uri={resume.uri}"
        task.append(override)
    if not pointed and _resolved(None) != resume.uri:
        os.environ["MLFLOW_TRACKING_URI"] = resume.uri
    return ["-m", *hydra, *resume.extras, *task]


def _resolved(uri: Optional[str]) -> str:
    chosen = _default_uri(uri)
    path = _sqlite_path(chosen)
    return f"sqlite:///{path}" if path is not None else chosen


def announce(resume: Resume, args: Sequence[str]) -> None:
    """Before Hydra starts: what was closed, what is resumed, and the command line it runs."""
    for line in resume.closed:
        print(f"Before resuming: {line.strip()}")
    done = sum(1 for j in resume.jobs if j.status == FINISHED)
    print(f"Resuming sweep {resume.run_id} ({resume.parent.status}, {len(resume.jobs)} runs, {done} FINISHED) in "
          f"{resume.uri}: jobs whose key has a FINISHED run in it are skipped, the others run as new runs "
          f"under it.\n  python -m orchestrator {' '.join(args)}")
    sys.stdout.flush()
