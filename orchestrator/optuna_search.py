"""Optuna searches: the study behind ``hydra/sweeper: optuna`` (``hparams_search=...`` presets).

The Hydra plugin (``plugins/hydra_optuna_sweeper``, installed as ``hydra_plugins.orchestrator_optuna_sweeper``) is a thin adapter; the work is
here, in four pieces used by four processes' worth of code:

- :func:`study_settings` reads what the config asks for (metrics and directions, storage,
  study name, pruner) and refuses what cannot work, with one paragraph each (exit status 2).
  :func:`preflight` runs it in the launching process before the sweep's parent run is opened
  (:class:`orchestrator.sweep.SweepHooks`), so a refusal leaves nothing in the store.
- :class:`OptunaSearch` runs the study with Optuna's ask-and-tell interface: up to ``n_jobs``
  trials at once, each launched as one Hydra job as soon as a worker is free. A job returns
  its ranking metric (a list of them for several objectives); a failed job is told FAIL, a
  pruned one PRUNED. The study lives in a database (``sweep.storage``): running the same
  command again continues it, up to ``n_trials`` trials in all.
- Each job finds its trial in ``<sweep dir>/.orchestrator/optuna/job-<n>.json`` (:func:`trial_of`):
  the built-in plugin ``builtin.optuna`` adds the pruning callback
  (:mod:`orchestrator.lightning.pruning`) and tags the run; the callback reaches the trial
  through the storage, whichever process runs the job.
- When the search ends, ``optimization_results.yaml`` and ``optuna/*`` in the sweep folder hold
  the best parameters (or the Pareto front), parameter importances and a parallel-coordinates
  plot; :func:`orchestrator.sweep.close_sweep` logs them to the parent run (:func:`parent_record`).

Importing this module imports neither Optuna nor torch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import OrchestratorError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

log = logging.getLogger(__name__)

#: The sweeper class's dotted path, as ``hydra.sweeper._target_`` names it.
SWEEPER = "hydra_plugins.orchestrator_optuna_sweeper.optuna_sweeper.OptunaSweeper"
PRUNERS = ("none", "median", "hyperband")
TRIALS_DIR = Path(".orchestrator") / "optuna"
RESULTS = "optimization_results.yaml"
#: Files the search leaves for the parent run, under ``<sweep dir>/optuna/``.
ARTIFACTS_DIR = "optuna"
#: The trial attribute a pruned job sets (the epoch it stopped after).
PRUNED_AT = "orchestrator.pruned_at_epoch"
#: Seconds a SQLite connection waits for another process's write.
SQLITE_TIMEOUT = 60


@dataclass
class StudySettings:
    """What one search asks for, checked."""

    study_name: str
    storage: str
    #: The metrics each job returns, in order (one: a single objective).
    metrics: list
    #: minimize or maximize, one per metric.
    directions: list
    pruner: str = "none"
    pruner_kwargs: dict = field(default_factory=dict)


def is_optuna(config: DictConfig) -> bool:
    return str(OmegaConf.select(config, "hydra.sweeper._target_", default="")) == SWEEPER


def preflight(config: DictConfig) -> None:
    """Refuse, before the sweep's parent run is opened, an Optuna search that cannot work."""
    if is_optuna(config):
        study_settings(config, config.hydra.sweeper)


def metric_list(metric: Any) -> list:
    """``sweep.metric`` as a list: ``[]`` (null: the task's ranking metric), one, or several."""
    if metric is None:
        return []
    if isinstance(metric, (list, tuple, ListConfig)):
        return [str(m) for m in metric]
    return [str(metric)]


def default_direction(metric: str) -> str:
    from .sweep import ranking  # the one rule for which way a metric is better

    return "maximize" if ranking(metric, None, "")[1] == "max" else "minimize"


def study_settings(config: DictConfig, sweeper: Any) -> StudySettings:
    """The search's settings from the composed config and ``hydra.sweeper``; or one paragraph
    (OrchestratorError) naming the key, the value, what is expected and the fix."""
    from .settings import check_top_level

    _, sweep = check_top_level(config)  # sweep.pruner and sweep.mode against their choices
    metrics = metric_list(sweep.metric)
    if sweep.metric is not None and (not metrics or not all(metrics)):
        raise OrchestratorError(f"sweep.metric={sweep.metric!r} is not valid: give a metric name "
                                "(sweep.metric=val/loss) or a list of them (sweep.metric=[val/loss,time/fit_seconds]).")
    given = sweeper.get("direction") if sweeper is not None else None
    given = list(given) if isinstance(given, (list, tuple, ListConfig)) else given
    given = [getattr(d, "name", d) for d in given] if isinstance(given, list) else getattr(given, "name", given)
    for direction in given if isinstance(given, list) else [given]:
        if direction not in ("minimize", "maximize", None):
            raise OrchestratorError(f"hydra.sweeper.direction={given!r} is not valid: each direction is "
                                    "minimize or maximize.")
    if len(metrics) > 1:
        if isinstance(given, list) and len(given) != len(metrics):
            raise OrchestratorError(
                f"hydra.sweeper.direction={given} names {len(given)} direction(s) for {len(metrics)} metrics "
                f"(sweep.metric={metrics}): give one per metric, in the same order, or a single direction "
                "to let each metric's own default apply (max for accuracy, f1 and r2, min otherwise).")
        directions = given if isinstance(given, list) else [default_direction(m) for m in metrics]
    else:
        if isinstance(given, list) and len(given) > 1:
            raise OrchestratorError(
                f"hydra.sweeper.direction={given} asks for {len(given)} objectives but sweep.metric names "
                f"{len(metrics) or 'no'} list of metrics: set sweep.metric=[metric1,metric2,...], one per direction.")
        direction = (given[0] if isinstance(given, list) else given) or "minimize"
        if sweep.mode is not None and direction != ("maximize" if sweep.mode == "max" else "minimize"):
            raise OrchestratorError(
                f"hydra.sweeper.direction={direction} contradicts sweep.mode={sweep.mode}: the study would "
                "optimise one way and the sweep's summary rank the other. Make them agree "
                f"(sweep.mode={'max' if direction == 'maximize' else 'min'}), or leave sweep.mode out.")
        directions = [direction]
    pruner = sweep.pruner
    if pruner != "none" and len(directions) > 1:
        raise OrchestratorError(
            f"sweep.pruner={pruner} cannot be used with {len(directions)} objectives (sweep.metric={metrics}): "
            "Optuna prunes single-objective studies only. Use sweep.pruner=none, or one metric.")
    if sweeper is not None and sweeper.get("storage") is not None:
        raise OrchestratorError(
            f"hydra.sweeper.storage={sweeper.storage!r} is no longer read: the study's database is "
            f"sweep.storage (sweep.storage={sweeper.storage}).")
    name = sweeper.get("study_name") if sweeper is not None else None
    if not name:
        choice = OmegaConf.select(config, "hydra.runtime.choices.hparams_search", default=None)
        name = str(choice) if choice else f"{config.tracking.experiment}-search"
    kwargs = OmegaConf.to_container(sweeper.pruner_kwargs, resolve=True) \
        if sweeper is not None and sweeper.get("pruner_kwargs") else {}
    return StudySettings(str(name), storage_url(sweep.storage, config.tracking.uri), metrics, directions,
                         pruner, dict(kwargs))


def storage_url(storage: Optional[str], tracking_uri: Optional[str]) -> str:
    """``sweep.storage``; null: ``optuna.db`` beside a local SQLite (or file) MLflow store. A
    relative SQLite path is made absolute, so every job finds the same database."""
    if storage:
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return f"sqlite:///{Path(storage[len('sqlite:///'):]).resolve()}"
        return storage
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd().resolve() / 'mlruns' / 'optuna.db'}"
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve().parent / 'optuna.db'}"
    if uri.startswith("file:") or "://" not in uri:
        folder = uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):] if uri.startswith("file:") else uri
        return f"sqlite:///{Path(folder).resolve() / 'optuna.db'}"
    raise OrchestratorError(
        f"sweep.storage is required: the runs go to {uri}, not a local SQLite store, so there is no "
        "folder to keep the Optuna study in beside it. Give a database every job can reach: "
        "sweep.storage=postgresql+psycopg2://user@host/optuna, or sweep.storage=sqlite:////shared/path/optuna.db "
        "(a path on a file system every job's machine sees). The study continues there when the "
        "command is run again.")


def shown(url: str) -> str:
    """A storage URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str):
    """Optuna's RDB storage at ``url``; SQLite connections wait for other processes' writes."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if url.startswith("sqlite:") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def build_pruner(name: str, kwargs: dict):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(**kwargs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**kwargs)
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------
# The search space: hydra.sweeper.params and the command line's sweeps


def distribution(override) -> Any:
    """The Optuna distribution of a sweep override, or the value (a string) of a plain one.

    ``choice(a,b)`` and ``shuffle(range(...))``: categorical; ``range(a,b,step)``: integers (or
    floats) from a up to but excluding b, as Hydra's own range; ``interval(a,b)``: floats (integers
    when both ends are integers); ``tag(log, interval(a,b))``: on a log scale.
    """
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        step = value.step
        count = math.ceil((value.stop - value.start) / step)
        if count < 1:
            raise OrchestratorError(f"{override.input_line} is empty: range(start, stop, step) goes from "
                                    "start up to, not including, stop.")
        high = value.start + (count - 1) * step
        if any(isinstance(v, float) for v in (value.start, value.stop, step)):
            return FloatDistribution(float(value.start), float(high), step=float(step))
        return IntDistribution(int(value.start), int(high), step=int(step))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise OrchestratorError(f"{override.input_line}: the Optuna sweeper takes choice(...), range(...), "
                            "interval(...) and tag(log, interval(...)), or plain values.")


def search_space(params: Optional[DictConfig], arguments: list[str]) -> tuple[dict, dict]:
    """(distributions, fixed values) from ``hydra.sweeper.params`` and the command line's
    overrides; a key on the command line replaces the same key in ``params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    distributions: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        name = override.get_key_element()
        distributions.pop(name, None)
        fixed.pop(name, None)
        found = distribution(override)
        (fixed if isinstance(found, str) else distributions)[name] = found
    return distributions, fixed


def grid_choices(distributions: dict) -> dict:
    """GridSampler's search space: every value of each (discrete) distribution."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grid = {}
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            grid[name] = list(d.choices)
        elif isinstance(d, (IntDistribution, FloatDistribution)) and d.step is not None and not d.log:
            count = int(round((d.high - d.low) / d.step)) + 1
            grid[name] = [d.low + i * d.step for i in range(count)]
        else:
            raise OrchestratorError(f"{name}: the grid sampler takes choice(...) and range(...) only, not "
                                    "interval(...).")
    return grid


# ---------------------------------------------------------------------------------------------
# The trial of a job


def trial_file(sweep_dir: str, job: int) -> Path:
    return Path(sweep_dir) / TRIALS_DIR / f"job-{job}.json"


def trial_of(hydra_cfg: Any = None) -> Optional[dict]:
    """In a job of an Optuna search, its trial: storage, study name, trial id and number,
    pruner, metric. None outside a search (or outside Hydra)."""
    if hydra_cfg is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
    if not str(hydra_cfg.mode).endswith("MULTIRUN"):
        return None
    path = trial_file(str(hydra_cfg.sweep.dir), int(hydra_cfg.job.num))
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# The search


class OptunaSearch:
    """One ``sweep()`` of the Optuna sweeper: ask, launch, tell, until the study has
    ``n_trials`` trials that ended (finished, pruned or failed), then write the results."""

    def __init__(self, sampler: Any, sweeper: DictConfig, config: DictConfig, launcher: Any) -> None:
        self.sampler = sampler
        self.sweeper = sweeper
        self.config = config
        self.launcher = launcher
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.lock = threading.Lock()
        self.job_idx = 0
        self.jobs: dict[int, int] = {}  # trial number -> this sweep's job number
        self.failures = 0
        self.ended = 0
        self.stopped = False

    def run(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        settings = study_settings(self.config, self.sweeper)
        self.settings = settings
        distributions, fixed = search_space(self.sweeper.get("params"), arguments)
        sampler = self.sampler
        target = OmegaConf.select(self.config, "hydra.sweeper.sampler._target_", default=None)
        if isinstance(sampler, functools.partial) and (
                target == "optuna.samplers.GridSampler" or sampler.func is optuna.samplers.GridSampler):
            sampler = sampler(grid_choices(distributions))  # _partial_: the space is known now
        elif sampler is None:
            sampler = optuna.samplers.TPESampler()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            study_name=settings.study_name, storage=open_storage(settings.storage), sampler=sampler,
            pruner=build_pruner(settings.pruner, settings.pruner_kwargs), directions=settings.directions,
            load_if_exists=True)
        existing = self.study.get_trials(deepcopy=False)
        if [d.name.lower() for d in self.study.directions] != settings.directions:
            raise OrchestratorError(
                f"The study {settings.study_name!r} in {shown(settings.storage)} optimises "
                f"{[d.name.lower() for d in self.study.directions]}, not {settings.directions}: give another "
                "hydra.sweeper.study_name, or the same directions as before.")
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in existing)
        seed = OmegaConf.select(self.config, "hydra.sweeper.sampler.seed", default=None)
        if existing and seed is not None and not isinstance(self.study.sampler, optuna.samplers.GridSampler):
            # A seeded sampler would ask again for the trials it asked for when the study began:
            # continuing a study, it is seeded with seed + the number of trials already there.
            from hydra.utils import instantiate

            self.study.sampler = instantiate(self.config.hydra.sweeper.sampler, seed=int(seed) + len(existing))
        n_trials = int(self.sweeper.n_trials)
        to_go = max(0, n_trials - done)
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        workers = max(1, int(self.sweeper.get("n_jobs") or 1))
        if workers > 1 and isinstance(self.launcher, BasicLauncher):
            log.warning("hydra.sweeper.n_jobs=%d: the basic launcher runs jobs in this process, one at a time; "
                        "hydra/launcher=joblib runs trials side by side.", workers)
            workers = 1
        print(f"Optuna study {settings.study_name!r} in {shown(settings.storage)}: {done} trial(s) ended "
              f"before, {to_go} to run (n_trials={n_trials}), {workers} at a time; directions "
              f"{settings.directions}, pruner {settings.pruner}.", file=sys.stderr)
        self.to_go, self.fixed, self.distributions = to_go, fixed, distributions
        self.error: Optional[BaseException] = None
        if workers == 1:
            self.worker()
        else:
            threads = [threading.Thread(target=self.worker, name=f"optuna-trial-{i}") for i in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if self.error is not None:  # raised in a worker: the search's own error, not a job's
            raise self.error
        if self.stopped:
            print(f"Warning: the search stopped early: {self.failures} of {self.ended} trials failed "
                  f"(hydra.sweeper.max_failure_rate={self.sweeper.max_failure_rate}).", file=sys.stderr)
        self.write_results()

    def worker(self) -> None:
        """Take the next trial while any is left to run, launch it as one job, tell the result.
        An error of the search itself (not of a job) stops every worker and is raised by run()."""
        try:
            self.trials()
        except BaseException as error:
            with self.lock:
                self.stopped = True
                self.error = self.error or error

    def trials(self) -> None:
        from optuna.trial import TrialState

        while True:
            with self.lock:
                if self.to_go <= 0 or self.stopped:
                    return
                self.to_go -= 1
                trial = self.study.ask()
                job = self.job_idx
                self.job_idx += 1
                self.jobs[trial.number] = job
                try:
                    overrides = self.suggest(trial)
                except BaseException:
                    self.study.tell(trial, state=TrialState.FAIL)
                    raise
                self.write_trial(trial, job)
            try:
                (ret,) = self.launcher.launch([overrides], initial_job_idx=job)
                value, error = (ret.return_value, None)
            except Exception as failure:  # the launcher itself failed (a job's own errors return None)
                value, error = None, failure
            with self.lock:
                self.tell(trial, value, error)

    def suggest(self, trial: "optuna.trial.Trial") -> tuple[str, ...]:
        for name, d in self.distributions.items():
            try:
                trial._suggest(name, d)
            except ValueError as error:  # the study holds trials where the same key had another space
                raise OrchestratorError(
                    f"{name}: {str(error).rstrip('.')}. The study {self.settings.study_name!r} in {shown(self.settings.storage)} "
                    f"has trials where {name} was searched differently; a study keeps its search space. "
                    "Give this search its own study (hydra.sweeper.study_name=...), or search the same space.") from None
        return tuple(f"{name}={value}" for name, value in {**trial.params, **self.fixed}.items())

    def write_trial(self, trial: "optuna.trial.Trial", job: int) -> None:
        path = trial_file(self.sweep_dir, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        s = self.settings
        path.write_text(json.dumps({
            "storage": s.storage, "study_name": s.study_name, "trial_id": trial._trial_id,
            "trial_number": trial.number, "pruner": s.pruner, "pruner_kwargs": s.pruner_kwargs,
            "metric": s.metrics[0] if len(s.metrics) == 1 else None}))

    def tell(self, trial: "optuna.trial.Trial", value: Any, error: Optional[BaseException]) -> None:
        from optuna.trial import TrialState

        self.ended += 1
        attrs = self.study._storage.get_trial(trial._trial_id).user_attrs
        if PRUNED_AT in attrs:
            self._tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned after epoch %s", trial.number, attrs[PRUNED_AT])
            return
        values = None
        if value is not None:
            values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if values is None or len(values) != len(self.study.directions) or not all(map(math.isfinite, values)):
            self.failures += 1
            self._tell(trial, state=TrialState.FAIL)
            print(f"Trial {trial.number} failed" + (f": {type(error).__name__}: {error}" if error else
                                                    " (its job returned no value)") + ".", file=sys.stderr)
            if self.failures / self.ended > float(self.sweeper.max_failure_rate):
                self.stopped = True
            return
        self._tell(trial, values)

    def _tell(self, trial, values=None, state=None) -> None:
        """``study.tell``; a sampler that ends the search (the grid sampler, its grid done) calls
        ``study.stop()``, which Optuna allows only inside ``study.optimize``: here the trial is
        stored all the same (Optuna stores it in a ``finally``), and no more trials are asked."""
        try:
            self.study.tell(trial, values, state=state)
        except RuntimeError as error:
            if "Study.stop" not in str(error):
                raise
            self.stopped = True

    # -----------------------------------------------------------------------------------------
    # Results

    def write_results(self) -> None:
        """``optimization_results.yaml`` and ``optuna/*`` in the sweep folder, for the parent run."""
        from optuna.trial import TrialState

        study, s = self.study, self.settings
        trials = study.get_trials(deepcopy=False)
        counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
        results: dict[str, Any] = {"name": "optuna", "study_name": s.study_name, "storage": shown(s.storage),
                                   "directions": s.directions, "metrics": s.metrics, "trials": counts}
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        out = Path(self.sweep_dir) / ARTIFACTS_DIR
        out.mkdir(parents=True, exist_ok=True)
        if completed and len(s.directions) == 1:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number,
                           best_job=self.jobs.get(best.number))
            print(f"Best trial {best.number}: value {best.value:.6g}, parameters {best.params}", file=sys.stderr)
        elif completed:
            front = [{"trial": t.number, "job": self.jobs.get(t.number), "params": t.params,
                      "values": dict(zip(s.metrics, t.values))} for t in study.best_trials]
            results["solutions"] = front
            (out / "pareto_front.json").write_text(json.dumps(front, indent=2, default=str) + "\n")
            print(f"Pareto front: {len(front)} trial(s): " + "; ".join(
                f"trial {f['trial']} {f['values']}" for f in front), file=sys.stderr)
        if len(completed) >= 2:
            self.write_importances(out, completed)
        OmegaConf.save(OmegaConf.create(json.loads(json.dumps(results, default=str))),
                       Path(self.sweep_dir) / RESULTS)

    def write_importances(self, out: Path, completed: list) -> None:
        """Parameter importances (JSON) and a parallel-coordinates plot of the study."""
        import warnings

        import optuna

        names = self.settings.metrics or ["value"]
        multi = len(self.settings.directions) > 1
        importances = {}
        for index, name in enumerate(names if multi else names[:1]):
            sign = -1.0 if self.settings.directions[index] == "maximize" else 1.0  # lower is better
            target = (lambda t, i=index, sign=sign: sign * t.values[i]) if multi else None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = optuna.importance.get_param_importances(self.study, target=target)
                importances[name] = {k: float(v) for k, v in found.items()}
            except Exception as error:  # one parameter, or one value only: nothing to rank
                log.info("No parameter importances for %s: %s", name, error)
        if importances:
            (out / "param_importances.json").write_text(json.dumps(importances, indent=2) + "\n")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from optuna.visualization.matplotlib import plot_parallel_coordinate

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target = (lambda t: t.values[0]) if multi else None
                axes = plot_parallel_coordinate(self.study, target=target, target_name=names[0])
            axes.figure.savefig(out / "parallel_coordinate.png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
        except Exception as error:  # a plot is a convenience: the search's results stand without it
            log.warning("No parallel-coordinates plot: %s: %s", type(error).__name__, error)


# ---------------------------------------------------------------------------------------------
# The parent run (orchestrator.sweep.close_sweep)


def parent_record(sweep_dir: str, rows: list[dict]) -> Optional[dict]:
    """What the parent run records of an Optuna search that wrote its results in ``sweep_dir``:
    ``params``, ``metrics``, ``tags``, ``texts`` (name -> text) and ``files`` (path, folder);
    ``multi``: several objectives (the Pareto front stands in for a best run). None: no search."""
    path = Path(sweep_dir) / RESULTS
    if not path.is_file():
        return None
    found = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    params = {f"best_params.{k}": str(v) for k, v in (found.get("best_params") or {}).items()}
    metrics = {"best_value": float(found["best_value"])} if found.get("best_value") is not None else {}
    tags = {"optuna.study_name": str(found.get("study_name", "")), "optuna.storage": str(found.get("storage", ""))}
    trials = found.get("trials") or {}
    metrics.update({f"optuna/{state}": float(n) for state, n in trials.items() if state in ("complete", "pruned", "fail")})
    run_of_job = {str(r["job"]): r["run_id"] for r in rows}
    texts = {}
    if found.get("best_trial") is not None:
        tags["optuna.best_trial"] = str(found["best_trial"])
        texts["optuna/best_params.json"] = json.dumps(found.get("best_params") or {}, indent=2) + "\n"
    multi = len(found.get("directions") or []) > 1
    if multi:
        front = [{**f, "run_id": run_of_job.get(str(f.get("job")))} for f in found.get("solutions") or []]
        texts["optuna/pareto_front.json"] = json.dumps(front, indent=2, default=str) + "\n"
        tags["optuna.pareto_front.trials"] = ",".join(str(f["trial"]) for f in front)
        tags["optuna.pareto_front.run_ids"] = ",".join(f["run_id"] or "" for f in front)
        metrics["optuna/pareto_front_size"] = float(len(front))
    files = [(str(p), ARTIFACTS_DIR) for p in sorted((Path(sweep_dir) / ARTIFACTS_DIR).glob("*"))
             if p.is_file() and p.name != "pareto_front.json"]
    files.append((str(path), None))
    return {"params": params, "metrics": metrics, "tags": tags, "texts": texts, "files": files, "multi": multi}
