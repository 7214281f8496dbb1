"""Sweep glue: one parent run per multirun, with a summary of its children.

``SweepHooks`` is a Hydra callback (see ``conf/config.yaml``) that runs in the launching
process. Before any job starts it opens the parent run (creating the store and the experiment
on the way, so parallel jobs race on neither) and writes where it is to
``<sweep dir>/.orchestrator/parent.json``; each job reads that file and nests its run under the
parent, whichever launcher started it. When the last job has ended, the parent receives a
summary table (one row per child), the best child's id and metric, the best parameters of a
sweeper that reports them (Optuna), and a chart comparing the children. With ``sweep.reuse=true``
a job whose key matched a FINISHED run was not trained (:mod:`orchestrator.jobs`): its child is in
the summary like any other, with a ``reused_from`` column naming the run that trained it. The
parent records the sweep's command line (``sweep.json``); ``orchestrator sweep resume <id>``
runs it again under the same parent, training only the jobs that did not finish
(:mod:`orchestrator.sweep_resume`).

Runs are read and written through the :class:`~orchestrator.tracking_api.Tracker` of the
``tracker`` hook (MLflow, built in); a sweep cut short ends its runs with the status
:func:`orchestrator.lifecycle.final_status` decided.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .components import READING_ORDER
from .jobs import REUSED_FROM
from .lifecycle import FINISHED, RUNNING

if TYPE_CHECKING:
    from .tracking_api import RunRecord, Tracker

#: Columns of the summary, in reading order.
CHOICES = READING_ORDER

PARENT_FILE = Path(".orchestrator") / "parent.json"
#: Set in the launching process when a sweep ends: how many of its jobs failed.
last_sweep: dict[str, Any] = {}


def parent_file(sweep_dir: str) -> Path:
    return Path(sweep_dir) / PARENT_FILE


def read_parent(sweep_dir: str) -> Optional[dict]:
    path = parent_file(sweep_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def ranking(metric: Optional[str], mode: Optional[str], task: str) -> tuple[str, str]:
    """The metric that ranks runs of ``task`` (its Task's ranking metric unless ``metric`` is
    given), and whether lower or higher is better."""
    from .components import TASKS
    from .task import Task

    if metric is not None and not isinstance(metric, str):  # several (an Optuna search's objectives)
        metric = str(metric[0]) if len(metric) else None  # the first one ranks
    if metric is None:  # task "unknown": a child without an orchestrator.task tag
        metric, best = Task.of(task).ranking_metric() if task in TASKS else ("val/loss", "min")
        return metric, mode or best
    if mode is None:
        mode = "max" if any(word in metric for word in ("accuracy", "f1", "r2")) else "min"
    return metric, mode


def best_index(values: list[float], mode: str) -> Optional[int]:
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        return None
    return (min(finite) if mode == "min" else max(finite))[1]


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain text table, as printed in the terminal and stored as ``summary.txt``."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def summarise(children: list[RunRecord], metric: Optional[str], mode: Optional[str]) -> dict[str, Any]:
    """Rows, text tables and best runs of a sweep's children, task by task."""
    by_task: dict[str, list] = {}
    for child in children:
        by_task.setdefault(child.tags.get("orchestrator.task", "unknown"), []).append(child)
    shared = set.intersection(*(set(c.tags.get("orchestrator.overrides", "").split()) for c in children)) if children else set()
    rows_all, texts, best = [], [], {}
    for task, runs in sorted(by_task.items()):
        key, direction = ranking(metric, mode, task)
        test_keys = ["test/loss", "test/r2"] if task == "regression" else ["test/loss", "test/accuracy", "test/f1"]
        rows = []
        for child in sorted(runs, key=lambda r: int(r.tags.get("orchestrator.sweep.job", 0))):
            tags, values = child.tags, child.metrics
            row = {
                "job": tags.get("orchestrator.sweep.job", ""),
                "status": child.status,
                **{group: tags.get(f"orchestrator.{group}", "") for group in CHOICES},
                "overrides": " ".join(o for o in tags.get("orchestrator.overrides", "").split() if o not in shared),
                # a pruned trial (sweep.pruner) stopped early: left out of the ranking
                key: values.get(key, math.nan) if child.status == FINISHED and tags.get("pruned") != "true" else math.nan,
                **{k: values.get(k, math.nan) for k in test_keys if k != key},
                "run_id": child.run_id,
                "reused_from": tags.get(REUSED_FROM, ""),
                "pruned": tags.get("pruned_at_epoch", "") if tags.get("pruned") == "true" else "",
                "error": tags.get("error", "").splitlines()[0][:120] if tags.get("error") else "",
                "task": task,
            }
            rows.append(row)
        chosen = best_index([r[key] if r["status"] == FINISHED else math.nan for r in rows], direction)
        if chosen is not None:
            best[task] = {"run_id": rows[chosen]["run_id"], "metric": key, "value": rows[chosen][key],
                          "job": rows[chosen]["job"], "overrides": rows[chosen]["overrides"]}
        shown = [{**r, **{k: "" if math.isnan(v) else f"{v:.4g}" for k, v in r.items() if isinstance(v, float)}}
                 for r in rows]
        columns = ["job", "status", *CHOICES, "overrides", key, *[k for k in test_keys if k != key], "error"]
        if any(r["reused_from"] for r in rows):  # sweep.reuse=true: the run that trained each reused job
            columns.insert(columns.index("error"), "reused_from")
        if any(r["pruned"] for r in rows):  # sweep.pruner: the epoch each pruned trial stopped after
            columns.insert(columns.index("error"), "pruned")
        texts.append(f"{task} ({len(rows)} runs, ranked by {key}, {direction}):\n{table(shown, columns)}")
        rows_all.extend(rows)
    return {"rows": rows_all, "text": "\n\n".join(texts), "best": best}


def short_label(row: dict) -> str:
    """``"3: optimizer.lr=0.0241 regularizer.strength=9.8e-05"``: numbers to 3 digits."""
    import re

    text = re.sub(r"-?\d+\.\d+(?:e-?\d+)?", lambda m: f"{float(m.group()):.3g}", row["overrides"] or row["model"])
    return f"{row['job']}: {text}"[:60]


def to_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class SweepHooks(Callback):
    """Hydra callback: the parent run of a multirun, and the plugins' sweep hooks."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .errors import OrchestratorError
        from .optuna_search import preflight

        try:  # an Optuna search that cannot work is refused before its parent run is opened
            preflight(config)
        except OrchestratorError as error:
            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(2) from error
        compose_each_job_once()
        try:
            self._open(config)
            if jobs_run_here(config) and config.tracking.plots:
                from . import recorder

                # draws each job's figures and ends its run: see orchestrator.recorder
                recorder.start(last_sweep["tracking_uri"])
        except Exception as error:  # Hydra would only warn and run the jobs un-nested
            print(f"Error: could not open the sweep's parent run: {type(error).__name__}: {error}",
                  file=sys.stderr)
            raise SystemExit(2) from error

    def _open(self, config: DictConfig) -> None:
        from . import orphans, sweep_resume
        from .plugins import get_catalog
        from .tracking_api import open_tracker

        # Resolving the folder here caches ${now:}; Hydra hands that
        # cache to every job, so jobs in other processes find the same folder.
        sweep_dir = str(config.hydra.sweep.dir)
        overrides = list(config.hydra.overrides.task)
        catalog = get_catalog()
        tracker = open_tracker(catalog.pm.hook, config.tracking.uri)
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="")).rsplit(".", 1)[-1]
        sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).rsplit(".", 1)[-1]
        name = ("sweep " + " ".join(overrides))[:240] if overrides else "sweep"
        params = {"sweep.overrides": " ".join(overrides)}  # the tracker fits values to its store
        # Named after the key without Hydra's +, ++ or ~ prefix (MLflow refuses a "+" in a key).
        params.update({f"sweep.{k.lstrip('+~')}": v for k, v in (o.split("=", 1) for o in overrides if "=" in o)})
        resuming = sweep_resume.active is not None  # orchestrator sweep resume <id>: the same parent
        if resuming:
            parent = sweep_resume.reopen(tracker, sweep_dir, config.tracking.flush_seconds)
        else:
            orphans.close_on_open(tracker, config.tracking.experiment)  # dead RUNNING runs: KILLED
            parent = tracker.open_sweep(config.tracking.experiment, name, {
                "orchestrator.sweep": "parent", "orchestrator.sweep_dir": str(Path(sweep_dir).resolve()),
                "orchestrator.launcher": launcher, "orchestrator.sweeper": sweeper,
                **orphans.owner_tags(config.tracking.flush_seconds),  # this process, a first heartbeat
            })
            parent.log_params(params)
            sweep_resume.record(parent, overrides, list(config.hydra.overrides.hydra))  # what a resume runs
        path = parent_file(sweep_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run_id": parent.run_id, "tracking_uri": tracker.uri,
                                    **({"resume": True} if resuming else {})}))
        last_sweep.clear()
        last_sweep.update(run_id=parent.run_id, tracking_uri=tracker.uri, closed=False, failed=0)
        print(f"Sweep parent run {parent.run_id} in {tracker.uri}", file=sys.stderr)
        catalog.pm.hook.on_sweep_start(sweep_dir=sweep_dir, overrides=overrides)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .plugins import get_catalog

        sweep_dir = str(config.hydra.sweep.dir)
        close_sweep(sweep_dir, config.sweep.metric, config.sweep.mode)
        get_catalog().pm.hook.on_sweep_end(sweep_dir=sweep_dir, overrides=list(config.hydra.overrides.task))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _beat_parent(config)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        _beat_parent(config)


def compose_each_job_once() -> None:
    """Hydra's sweepers compose every job's config twice: once in ``validate_batch_is_legal``, to
    check that the whole batch composes before any job starts, and once again to launch the job;
    each costs about 50 ms, more than a tiny job's training. The Hydra instance of this command
    keeps each composition made for that check (a copy, taken before anyone changes it) and hands
    it to the launch of the same job. A composition made for anything else is not kept (the
    caller is told by its function's name: tests/test_sweeps.py counts the compositions)."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return
    loader = GlobalHydra.instance().config_loader()
    compose = getattr(loader, "load_sweep_config", None)
    if compose is None or getattr(compose, "orchestrator_once", False):
        return
    import copy

    checked: dict[tuple, DictConfig] = {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in checked:
            return checked.pop(key)
        composed = compose(master_config, sweep_overrides)
        if sys._getframe(1).f_code.co_name == "validate_batch_is_legal":
            checked[key] = copy.deepcopy(composed)
        return composed

    load_sweep_config.orchestrator_once = True  # type: ignore[attr-defined]
    loader.load_sweep_config = load_sweep_config  # type: ignore[method-assign]


def jobs_run_here(config: DictConfig) -> bool:
    """Whether the sweep's jobs run one after another in this process (Hydra's basic launcher)."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    return target.endswith(".BasicLauncher")


def _beat_parent(config: DictConfig) -> None:
    """A sweep's job starts or ends (in whichever process runs it): the parent's heartbeat
    (:mod:`orchestrator.orphans`). Nothing for a single run."""
    if str(OmegaConf.select(config, "hydra.mode", default="")).endswith("MULTIRUN"):
        from .orphans import beat_parent

        beat_parent(str(config.hydra.sweep.dir))


def close_sweep(sweep_dir: str, metric: Optional[str], mode: Optional[str]) -> dict:
    """Summarise the children on the parent run, print the summary, end the parent FINISHED."""
    from . import plots, recorder

    recorder.wait()  # every child ended: its figures drawn by the recorder, if the sweep has one

    parent = read_parent(sweep_dir)
    if parent is None:
        return {}
    tracker = _tracker(parent["tracking_uri"])
    parent_id = parent["run_id"]
    if parent.get("resume"):  # orchestrator sweep resume: earlier attempts of a job, superseded
        from .sweep_resume import supersede

        supersede(tracker, parent_id)
    children = tracker.children(parent_id)
    retried = [c for c in children if c.tags.get("orchestrator.retried") == "true"]  # superseded attempts
    children = [c for c in children if c not in retried]
    summary = summarise(children, metric, mode)
    rows, best = summary["rows"], summary["best"]
    failed = [r for r in rows if r["status"] != FINISHED]
    reused = sorted((r for r in rows if r["reused_from"] and r["status"] == FINISHED), key=lambda r: int(r["job"] or 0))
    tags: dict[str, str] = {"orchestrator.sweep.children": str(len(rows)),
                            "orchestrator.sweep.failed": str(len(failed)),
                            "orchestrator.sweep.retried": str(len(retried)),
                            "orchestrator.sweep.reused": str(len(reused))}
    metrics: dict[str, float] = {"sweep/children": len(rows), "sweep/failed": len(failed),
                                 "sweep/reused": len(reused)}
    params: dict[str, str] = {}
    for task, found in best.items():
        suffix = "" if len(best) == 1 else f".{task}"
        tags[f"best_run_id{suffix}"] = found["run_id"]
        tags[f"best_overrides{suffix}"] = found["overrides"]
        metrics[f"best{'' if len(best) == 1 else '/' + task}/{found['metric']}"] = found["value"]
    pruned = [r for r in rows if r["pruned"]]
    tags["orchestrator.sweep.pruned"], metrics["sweep/pruned"] = str(len(pruned)), len(pruned)
    from .optuna_search import parent_record

    search = parent_record(sweep_dir, rows)  # an Optuna search's results, written by its sweeper
    if search is not None:
        if search["multi"]:  # several objectives: the Pareto front stands in for one best run
            tags = {k: v for k, v in tags.items() if not k.startswith("best_")}
            metrics = {k: v for k, v in metrics.items() if not k.startswith("best")}
        if parent.get("resume"):  # MLflow params cannot change, and the continued study's best may
            tags.update(search["params"])  # differ from the one recorded before: tags can
        else:
            params.update(search["params"])
        metrics.update(search["metrics"])
        tags.update(search["tags"])
    figures = {}
    for task in sorted({r["task"] for r in rows}):
        task_rows = [r for r in rows if r["task"] == task]
        key, direction = ranking(metric, mode, task)
        values = [r[key] if r["status"] == FINISHED else math.nan for r in task_rows]
        labels = [short_label(r) for r in task_rows]
        figures[f"plots/sweep_{task}.png"] = plots.sweep_comparison(labels, values, key, best_index(values, direction))
    text = summary["text"]
    if reused:
        text += (f"\n\nReused ({len(reused)} of {len(rows)} jobs, sweep.reuse=true: not trained again; their "
                 "metrics are those of the FINISHED run with the same job key):\n"
                 + "\n".join(f"  job {r['job']} ({r['overrides'] or 'no overrides'}): reused run {r['reused_from']}"
                              for r in reused))
    if pruned:
        text += "\n\nPruned (sweep.pruner; left out of the ranking):\n" + "\n".join(
            f"  job {r['job']} ({r['overrides']}): stopped after epoch {r['pruned']}" for r in pruned)
    if failed:
        text += "\n\nFailed jobs:\n" + "\n".join(f"  job {r['job']} ({r['overrides']}): {r['error']}" for r in failed)
    if retried:
        text += f"\n\n{len(retried)} failed attempt(s) were tried again (sweep.retries, sweep resume): " + ", ".join(
            f"job {c.tags.get('orchestrator.sweep.job', '?')} "
            f"{'attempt ' + c.tags['orchestrator.attempt'] if 'orchestrator.attempt' in c.tags else c.status} "
            f"(run {c.run_id})" for c in retried)
    parent_run = tracker.attach(parent_id)
    parent_run.log_params(params)
    parent_run.set_tags(tags)
    parent_run.log_metrics(metrics)
    parent_run.log_text(text + "\n", "summary.txt")
    parent_run.log_text(to_csv(rows), "summary.csv")
    for name, figure in figures.items():
        parent_run.log_figure(figure, name)
    for name, body in (search or {}).get("texts", {}).items():  # best parameters or Pareto front
        parent_run.log_text(body, name)
    for path, folder in (search or {}).get("files", []):  # importances, parallel coordinates, results
        parent_run.log_artifact(path, folder)
    parent_run.end(FINISHED)
    print(f"\nSweep summary (parent run {parent_id}):\n{text}\n")
    last_sweep.update(closed=True, failed=len(failed), children=len(rows))
    return summary


def abandon_sweep(status: str, reason: str) -> None:
    """The launching process is ending early (Ctrl-C, a crash): end the parent and the children
    still RUNNING with ``status`` (:func:`orchestrator.lifecycle.final_status` of what ended it)
    and ``reason``, so nothing is left pretending to run."""
    from . import recorder

    recorder.wait(timeout=60)  # the runs it holds trained to the end: their figures, then FINISHED
    if not last_sweep or last_sweep.get("closed"):
        return
    tracker = _tracker(last_sweep["tracking_uri"])
    parent_id = last_sweep["run_id"]
    for child in tracker.children(parent_id):
        if child.status == RUNNING:
            tracker.attach(child.run_id).end(status, reason)
    parent = tracker.find_run(parent_id)
    if parent is not None and parent.status == RUNNING:
        tracker.attach(parent_id).end(status, reason)
    last_sweep["closed"] = True


def _tracker(uri: str) -> Tracker:
    """The tracker of the store the sweep's parent run was opened in (its resolved URI)."""
    from .plugins import get_catalog
    from .tracking_api import open_tracker

    return open_tracker(get_catalog().pm.hook, uri)
