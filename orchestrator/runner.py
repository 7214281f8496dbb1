"""``run(cfg)``: one training run, from a composed config to an ended run in the tracker.

:func:`run` drives the whole life of a run, in order, and is the one place that does: prepare
(check the config, every rule the config alone decides, :func:`orchestrator.settings.validate`,
before torch, Lightning or the tracker is imported; load and split the data; build model,
optimizer, penalty and trainer), start (open the run and record what it is), train and evaluate,
log (the model and the plots), end (with :func:`orchestrator.lifecycle.final_status` of the
error, if any). Everything that can be refused is refused before the run is opened, so bad input
never leaves a half-written run behind. The run is written only through the
:class:`~orchestrator.tracking_api.TrackedRun` interface; which store holds it is the
``tracker`` hook's business (MLflow, built in).

Importing this module is cheap: nothing heavier than OmegaConf at module level.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from . import recorder
from .components import GROUPS
from .errors import OrchestratorError
from .lifecycle import FAILED, FINISHED, KILLED, final_status, flatten
from .plugins import Catalog, Provided, get_catalog
from .provenance import git_tags
from .provenance import record as record_provenance
from .settings import Settings, validate
from .tracking_api import open_tracker

if TYPE_CHECKING:
    from .datasets import Splits
    from .tracking_api import TrackedRun, Tracker

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    #: The run's id; empty on a DDP rank other than zero, which records nothing.
    run_id: str
    #: Where the tracker keeps the run (``Tracker.uri``); empty where ``run_id`` is.
    tracking_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str = ""
    #: The trained model as logged (scaling + network + output link; for a table, a
    #: serving.TablePredictor that one-hot encodes its text columns first), and the data splits.
    predictor: Any = None
    splits: Optional[Splits] = None


@dataclass
class Prepared:
    """Everything a run needs, built and checked, before anything is written anywhere."""

    cfg: DictConfig
    chosen: dict[str, Provided]
    names: dict[str, str]
    splits: Splits
    source: str
    model: Any
    training: Any  # orchestrator.lightning.Training
    #: The data set as the run records it (orchestrator.provenance.DataRecord); not the arrays.
    dataset: Any = None
    #: The run's key (orchestrator.jobs.job_key): its training config, data digest, plugin versions.
    job_key: str = ""
    #: With sweep.reuse=true, the FINISHED run (a RunRecord) with the same key: nothing was built
    #: (``model`` and ``training`` are None) and nothing will be trained.
    reused: Any = None

    def tags(self) -> dict[str, str]:
        tags = {}
        for group in GROUPS:
            provided = self.chosen[group]
            tags[f"orchestrator.{group}"] = self.names[group]
            tags[f"orchestrator.{group}.plugin"] = provided.plugin.name
            tags[f"orchestrator.{group}.distribution"] = provided.provenance
        tags["orchestrator.task"] = self.splits.task
        tags["orchestrator.task.rule"] = self.splits.task_rule
        tags["orchestrator.data.source"] = self.source
        if self.cfg.get("callbacks"):
            tags["orchestrator.callbacks"] = ",".join(self.cfg.callbacks)
        if self.job_key:
            tags["orchestrator.job_key"] = self.job_key
        return tags


def prepare(cfg: DictConfig, catalog: Catalog, uri: Optional[str] = None, output_dir: Optional[str] = None,
            checked: Optional[Settings] = None, reuse: Optional[Callable[[str], Any]] = None) -> Prepared:
    """Check the config (unless ``checked`` holds its settings already), load and split the data,
    build model and trainer: or refuse. Nothing is written anywhere. (``uri`` is accepted for
    callers written when the trainer opened the store itself; nothing reads it.) ``reuse``
    (sweep.reuse=true) is asked for a FINISHED run with the job's key once the data are described;
    if it returns one, nothing more is built (see :mod:`orchestrator.jobs`)."""
    checked = checked or validate(cfg, catalog)
    chosen, names, settings, seed = checked.chosen, checked.names, checked.groups, checked.seed

    from .datasets import split
    from .provenance import describe_data
    from .settings import check_loaded, learner
    from .task import learning

    log.info("Loading data %s", names["data"])
    with learning(learner(checked, catalog)):  # data=csv infers its task for the chosen model
        data = chosen["data"].component.build(settings["data"], seed)
    splits = split(data, settings["data"], seed, names["data"])
    dataset = describe_data(data, names["data"], settings["data"])  # name, digest, source, schema
    check_loaded(checked, splits.input_kind, splits.task, splits.input_shape)
    from .jobs import job_key

    key = job_key(cfg, dataset.digest, chosen, checked.callbacks)
    reused = reuse(key) if reuse is not None else None
    if reused is not None:
        return Prepared(cfg, chosen, names, splits, data.source, None, None, dataset=dataset, job_key=key,
                        reused=reused)
    task = splits.task_object
    schedule = chosen["scheduler"].component
    scheduling = watching(settings["scheduler"], task, "scheduler")
    monitor = getattr(scheduling, "monitor", schedule.monitor)
    chosen_callbacks = [(name, provided.component, watching(values, task, f"callbacks.{name}"))
                        for name, (provided, values) in checked.callbacks.items()]

    import torch

    from .lightning import Training

    torch.manual_seed(seed)
    log.info("Building model %s for inputs %s", names["model"], splits.input_shape)
    model = chosen["model"].component.build(settings["model"], splits.input_shape, splits.output_dim)
    callbacks = [component.build(values) for _, component, values in chosen_callbacks]
    callbacks += [cb for found in catalog.pm.hook.add_callbacks(cfg=cfg) for cb in (found or [])]
    training = Training(
        model,
        splits,
        make_optimizer=partial(chosen["optimizer"].component.build, settings["optimizer"]),
        penalty=chosen["regularizer"].component.build(settings["regularizer"]),
        make_scheduler=partial(schedule.build, scheduling),
        scheduler_interval=schedule.interval,
        monitor=monitor,
        batch_size=getattr(settings["optimizer"], "batch_size", None),
        trainer_args=dict(checked.trainer),
        callbacks=callbacks,
        seed=seed,
        flush_seconds=float(checked.tracking.flush_seconds),
        # Called as a library without a folder (not through Hydra): checkpoints go to a fresh
        # temporary folder, never into whatever directory the caller happens to be in.
        output_dir=output_dir or tempfile.mkdtemp(prefix="orchestrator-"),
        tf32=bool(cfg.get("tf32", True)),
        checkpoints=bool(checked.tracking.checkpoints),
        # Full-batch epochs, 16 to a Lightning step where nothing acts between epochs (no schedule,
        # no callback): Lightning's loop around a step costs more than a small model's step.
        epochs_per_step=16 if names["scheduler"] == "none" else 1,
    )
    return Prepared(cfg, chosen, names, splits, data.source, model, training, dataset=dataset, job_key=key)


def watching(values: Any, task: Any, where: str) -> Any:
    """An option's settings with its ``monitor`` (null: the task's ranking metric) checked
    against the metrics the task publishes each epoch, and its ``mode`` (null: max for accuracy,
    f1 and r2, min otherwise) filled in; settings without ``monitor`` are returned as they are."""
    import dataclasses

    if not dataclasses.is_dataclass(values) or not hasattr(values, "monitor"):
        return values
    monitor = values.monitor or task.ranking_metric()[0]
    if monitor not in task.monitorable():
        raise OrchestratorError(
            f"{where}.monitor={monitor!r} is not a metric a {task.name} run publishes. Choose one of "
            f"{', '.join(task.monitorable())}: {where}.monitor=val/loss, for example."
        )
    changes = {"monitor": monitor}
    if hasattr(values, "mode") and values.mode is None:
        from .sweep import ranking  # the one rule for which way a metric is better

        changes["mode"] = ranking(monitor, None, task.name)[1]
    return dataclasses.replace(values, **changes)


def default_run_name(cfg: DictConfig) -> str:
    """``tracking.run_name``, or ``<model>-<optimizer>-<regularizer>-<data>``."""
    from .components import READING_ORDER

    return cfg.tracking.run_name or "-".join(
        str(cfg[g]._name_) if cfg.get(g) is not None else "?" for g in READING_ORDER)


def run(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    output_dir: Optional[str] = None,
    catalog: Optional[Catalog] = None,
    parent_run_id: Optional[str] = None,
    extra_tags: Optional[dict[str, str]] = None,
    resume_sweep: bool = False,
) -> RunResult:
    """Train once as ``cfg`` says and record it; return the run id and final metrics.

    1. Prepare. Every refusal happens here, before a run is opened. A sweep's job
       (``parent_run_id``) still records a refusal, as a FAILED run nested under the parent
       holding the reason, so that the sweep's summary can say which job failed and why. With
       ``cfg.resume`` (a run id), that run's recorded config and checkpoint are the starting point.
       With ``resume_sweep`` (a job of ``orchestrator sweep resume``), a job whose key has a
       FINISHED run under ``parent_run_id`` is already done: neither trained nor recorded again.
    2. Start: open the run (or reopen the resumed one) and record what it is; ``on_run_start``.
    3. Train and evaluate: fit, validate every epoch, test once.
    4. Log the model and the plots.
    5. End: ``on_run_end`` while the run is still open, then the run ends with the status
       :func:`~orchestrator.lifecycle.final_status` decides from the error, if any (:func:`end`).
       In a sweep whose jobs run in this process, the sweep's recorder draws the plots and ends
       the run, in a second process, while the next job starts (:mod:`orchestrator.recorder`).
    """
    catalog = catalog or get_catalog()
    hooks = catalog.pm.hook
    resume_id = str(cfg.resume) if cfg.get("resume") else None

    # 1. Prepare.
    tracker = None
    try:
        # The config alone, before torch, Lightning or the tracker is imported. A resumed run's
        # config is the recorded one: checked by prepare() once it is read.
        checked = None if resume_id else validate(cfg, catalog)
        from .lightning.ranks import worker_rank  # no torch: a reused job never needs it

        # A DDP rank other than zero records nothing: rank zero holds the run.
        tracker = None if worker_rank() else open_tracker(hooks, cfg.tracking.uri)
        resume_from = None
        if resume_id and tracker is not None:
            cfg, resume_from = recorded_config(tracker, resume_id, overrides, output_dir)
        reuse = None  # sweep.reuse=true: a FINISHED run with the job's key, not trained again
        if tracker is not None and checked is not None and checked.sweep.reuse \
                and "orchestrator.rerun_of" not in (extra_tags or {}):  # a rerun trains, by design
            from .jobs import find_reusable

            reuse = partial(find_reusable, tracker, cfg.tracking.experiment)
        if resume_sweep and parent_run_id and tracker is not None and checked is not None:
            from .sweep_resume import done_or  # orchestrator sweep resume: a FINISHED job of the sweep

            reuse = done_or(tracker, parent_run_id, reuse)
        prepared = prepare(cfg, catalog, output_dir=output_dir, checked=checked, reuse=reuse)
    except OrchestratorError as refused:
        if parent_run_id:  # a sweep's job: the sweep's summary names the refused job
            refusal = (tracker or open_tracker(hooks, cfg.tracking.uri)).start_run(
                cfg.tracking.experiment, default_run_name(cfg), dict(extra_tags or {}), parent_run_id)
            refusal.end(final_status(refused), refused)
        raise
    cfg, splits = prepared.cfg, prepared.splits
    if tracker is None:
        return RunResult("", "", prepared.training.run(None), "", None, splits)
    if prepared.reused is not None:
        from .jobs import record_reused
        from .sweep_resume import already_done, is_done

        if resume_sweep and is_done(prepared.reused, parent_run_id):  # nothing trained, nothing recorded
            return already_done(tracker, prepared)

        return record_reused(tracker, prepared, overrides, parent_run_id, extra_tags)

    # 2. Start. From here on the run is open, and every way out goes through end().
    from . import orphans  # who runs the run (host, pid, heartbeat): see orchestrator.orphans

    if parent_run_id is None:  # dead RUNNING runs of the experiment are closed (a sweep: at its start)
        orphans.close_on_open(tracker, cfg.tracking.experiment, skip=[resume_id] if resume_id else [])
    owner = orphans.owner_tags(cfg.tracking.flush_seconds)
    if resume_id:
        tracker.attach(resume_id).set_tags(owner)  # before it is RUNNING again under this process
        tracked = tracker.reopen_run(resume_id)
        tracked.set_tags({"orchestrator.job_key": prepared.job_key})  # the config resumed with
    else:
        tags = {**prepared.tags(), **git_tags(), **(extra_tags or {}), **owner}  # git: the launch directory's
        tracked = tracker.start_run(cfg.tracking.experiment, default_run_name(cfg), tags, parent_run_id)
    log.info("Run %s in %s", tracked.run_id, tracker.uri)
    metrics: dict[str, float] = {}
    try:
        record_start(tracked, tracker, cfg, splits, overrides, resumed=resume_id is not None)
        record_provenance(tracked, prepared, resumed=resume_id is not None)  # data set, environment.json
        hooks.on_run_start(run=tracked, cfg=cfg)

        # 3. Train and evaluate. A failed DDP rank that leaves this process blocked ends the
        # run from the watching thread (abort), before the process is ended.
        metrics = prepared.training.run(tracked, resume_from=resume_from, abort=partial(tracked.end, FAILED))
        best = prepared.training.best_checkpoint()
        if best is not None:  # callbacks=[model_checkpoint]: the model tested and logged is the best
            tracked.log_artifact(best, "checkpoints")
            score = {k: v for k, v in metrics.items() if k.startswith("best/") and k != "best/epoch"}
            tracked.set_tags({"orchestrator.model.selected": "best checkpoint: epoch {}, {}".format(
                int(metrics["best/epoch"]), ", ".join(f"{k[5:]}={v:.6g}" for k, v in score.items()))})

        # 4. Log: the model, from the CPU whatever trained it (it must load without CUDA), and plots.
        from .serving import Predictor, TablePredictor

        predictor = Predictor(prepared.model.cpu(), splits.mean, splits.std, splits.task, splits.num_classes).eval()
        if splits.encoder is not None:  # a table: the model takes its raw rows (text one-hot encoded)
            predictor = TablePredictor(splits.encoder, predictor).eval()
        model_uri = ""
        if cfg.tracking.log_model:
            raw_example = (splits.x_test[:5] * splits.std + splits.mean if splits.encoder is None
                           else splits.raw_test.iloc[:5])
            model_uri = tracked.log_model(predictor, raw_example, cfg.tracking.model_format)
        plots = plot_inputs(prepared.model, splits) if cfg.tracking.plots else None
        if plots is not None and not recorder.active():  # a sweep's recorder draws them: see end()
            log_plots(tracked, plots)
            plots = None
    except BaseException as error:
        end(tracked, tracker, prepared, hooks, metrics, error)  # 5. End, FAILED or KILLED.
        raise
    end(tracked, tracker, prepared, hooks, metrics, None, plots)  # 5. End, FINISHED.
    log.info("Finished run %s: %s", tracked.run_id,
             {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    return RunResult(tracked.run_id, tracker.uri, metrics, model_uri, predictor, splits)


def recorded_config(tracker: Tracker, run_id: str, overrides: Sequence[str],
                    output_dir: Optional[str]) -> tuple[DictConfig, str]:
    """The config run ``run_id`` recorded, with the settings given on the command line beside
    ``resume=`` (``trainer.max_epochs=50``) on top, and its last checkpoint; or a clear error."""
    record = tracker.find_run(run_id)
    if record is None:
        raise OrchestratorError(f"resume={run_id}: no such run in {tracker.uri}.")
    if record.status == FINISHED:
        raise OrchestratorError(
            f"resume={run_id}: that run is FINISHED; there is nothing to resume. Start a new run, "
            "or resume one that was interrupted (KILLED) or FAILED."
        )
    into = output_dir or "."
    checkpoint = tracker.download_artifact(run_id, "checkpoints/last.ckpt", into)
    config = tracker.download_artifact(run_id, "config.yaml", into) if checkpoint else None
    if checkpoint is None or config is None:
        raise OrchestratorError(
            f"resume={run_id}: the run has no checkpoint (checkpoints/last.ckpt) to resume from; "
            "checkpoints are written when a run is interrupted with Ctrl-C or SIGTERM, and while it "
            "trains each time metrics are sent to the store (every tracking.flush_seconds), unless "
            "tracking.checkpoints=false."
        )
    changes = [o for o in overrides if "=" in o and "." in o.split("=", 1)[0] and not o.startswith("resume=")]
    resumed = OmegaConf.merge(OmegaConf.load(config), OmegaConf.from_dotlist([o.lstrip("+") for o in changes]))
    resumed.resume = None
    return resumed, checkpoint


def record_start(run: TrackedRun, tracker: Tracker, cfg: DictConfig, splits: Splits,
                 overrides: Sequence[str], resumed: bool) -> None:
    """What the run is: its params, resolved config and overrides (a resumed run: how many
    times it was resumed, and this resumption's overrides); the sizes of the splits."""
    lines = "".join(f"{o}\n" for o in overrides)
    if resumed:
        record = tracker.find_run(run.run_id)
        count = int((record.tags if record else {}).get("orchestrator.resumed", "0")) + 1
        run.set_tags({"orchestrator.resumed": str(count)})
        run.log_text(lines, f"resume-{count}-overrides.txt")
    else:
        run.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        run.log_text(lines, "overrides.txt")
    run.log_metrics({"data.n_train": len(splits.y_train), "data.n_val": len(splits.y_val),
                     "data.n_test": len(splits.y_test)})


def end(run: TrackedRun, tracker: Tracker, prepared: Prepared, hooks, metrics: dict[str, float],
        error: Optional[BaseException], plots: Optional[dict[str, Any]] = None) -> None:
    """Step 5 of :func:`run`: the checkpoint of an interrupted run, ``on_run_end`` while the run
    is still open, then the run's end with the status :func:`final_status` decides from
    ``error``. If that fails (a plugin's ``on_run_end``, the store), a run that had succeeded
    ends FAILED with that error, and the error goes on. ``plots`` (:func:`plot_inputs`), in a
    sweep whose jobs run in this process: the sweep's recorder draws them and ends the run
    (:mod:`orchestrator.recorder`)."""
    status = final_status(error)
    try:
        if status == KILLED and prepared.training.on_interrupt.saved:
            run.log_artifact(prepared.training.checkpoint_path, "checkpoints")
            log.warning("Interrupted: checkpoint saved; resume with resume=%s", run.run_id)
        hooks.on_run_end(run=run, cfg=prepared.cfg, status=status, metrics=metrics, error=error)
    except BaseException as late:
        name_the_run(late, tracker, run)
        if error is None:
            status, error = final_status(late), late
        raise
    finally:
        if plots is not None and status == FINISHED:
            recorder.finish(tracker, run, plots)
        else:
            run.end(status, error)
        if error is not None:
            name_the_run(error, tracker, run)


def name_the_run(error: BaseException, tracker: Tracker, run: TrackedRun) -> None:
    """Attach ``(uri, run id)`` to the error: the command line names the run that holds it."""
    try:
        error.orchestrator_run = (tracker.uri, run.run_id)
    except AttributeError:
        pass


def plot_inputs(model, splits: Splits) -> dict[str, Any]:
    """What :func:`log_plots` draws besides the run's recorded losses: the model's predictions
    on the test split, and the truth (plain arrays, so another process can draw them)."""
    import torch

    model.eval()
    task = splits.task_object
    with torch.no_grad():
        predicted = task.prediction(model(torch.from_numpy(splits.x_test))).numpy()
    return {"task": task.name, "num_classes": task.num_classes, "y_true": splits.y_test, "y_pred": predicted}


def log_plots(run: TrackedRun, inputs: dict[str, Any]) -> None:
    """Learning curves (from the run's recorded losses); a confusion matrix (classifiers) or
    predicted-vs-true (regressors), from :func:`plot_inputs`."""
    import numpy as np

    from . import plots

    histories = {key: [v for _, v in run.metric_history(key)] for key in ("train/loss", "val/loss")}
    run.log_figure(plots.learning_curves(histories), "plots/learning_curves.png")
    if inputs["task"] == "classification":
        figure = plots.confusion_matrix(inputs["y_true"], inputs["y_pred"], inputs["num_classes"])
        run.log_figure(figure, "plots/confusion_matrix.png")
    else:
        figure = plots.predicted_vs_true(inputs["y_true"], np.asarray(inputs["y_pred"], dtype=np.float64))
        run.log_figure(figure, "plots/predicted_vs_true.png")
