"""``run(cfg)``: one training run, from a composed config to a FINISHED MLflow run.

It builds each piece in turn, in the order a reader expects: check the config (every rule the
config alone decides, :func:`orchestrator.settings.validate`, before torch, Lightning or MLflow is
imported and before the store is touched), load and split the data, check the model fits the
data, build model, optimizer and penalty (``prepare``), then train inside an MLflow run, log the
model and the plots. Everything that can be refused is refused before the MLflow run is opened,
so bad input never leaves a half-written run behind.

Importing this module is cheap: nothing heavier than OmegaConf at module level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from .components import GROUPS
from .errors import OrchestratorError
from .plugins import Catalog, Provided, get_catalog
from .settings import Settings, validate

if TYPE_CHECKING:
    from .datasets import Splits

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    tracking_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str = ""
    #: The trained model as logged (scaling + network + output link), and the data splits.
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

    def tags(self) -> dict[str, str]:
        tags = {}
        for group in GROUPS:
            provided = self.chosen[group]
            tags[f"orchestrator.{group}"] = self.names[group]
            tags[f"orchestrator.{group}.plugin"] = provided.plugin.name
            tags[f"orchestrator.{group}.distribution"] = provided.provenance
        tags["orchestrator.task"] = self.splits.task
        tags["orchestrator.data.source"] = self.source
        return tags


def prepare(cfg: DictConfig, catalog: Catalog, uri: str, output_dir: Optional[str] = None,
            checked: Optional[Settings] = None) -> Prepared:
    """Check the config (unless ``checked`` holds its settings already), load and split the data,
    build model and trainer: or refuse."""
    checked = checked or validate(cfg, catalog)
    chosen, names, settings, seed = checked.chosen, checked.names, checked.groups, checked.seed

    from .datasets import split
    from .settings import check_loaded

    log.info("Loading data %s", names["data"])
    data = chosen["data"].component.build(settings["data"], seed)
    splits = split(data, settings["data"], seed, names["data"])
    check_loaded(checked, splits.input_kind, splits.task, splits.input_shape)

    import torch

    from .lightning import Training

    torch.manual_seed(seed)
    log.info("Building model %s for inputs %s", names["model"], splits.input_shape)
    model = chosen["model"].component.build(settings["model"], splits.input_shape, splits.output_dim)
    callbacks = [cb for found in catalog.pm.hook.add_callbacks(cfg=cfg) for cb in (found or [])]
    training = Training(
        model,
        splits,
        make_optimizer=partial(chosen["optimizer"].component.build, settings["optimizer"]),
        penalty=chosen["regularizer"].component.build(settings["regularizer"]),
        batch_size=getattr(settings["optimizer"], "batch_size", None),
        trainer_args=dict(checked.trainer),
        callbacks=callbacks,
        seed=seed,
        tracking_uri=uri,
        flush_seconds=float(checked.tracking.flush_seconds),
        output_dir=output_dir or ".",
        tf32=bool(cfg.get("tf32", True)),
    )
    return Prepared(cfg, chosen, names, splits, data.source, model, training)


def default_run_name(cfg: DictConfig) -> str:
    """``tracking.run_name``, or ``<model>-<optimizer>-<regularizer>-<data>``."""
    groups = ("model", "optimizer", "regularizer", "data")
    return cfg.tracking.run_name or "-".join(str(cfg[g]._name_) if cfg.get(g) is not None else "?" for g in groups)


def run(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    output_dir: Optional[str] = None,
    catalog: Optional[Catalog] = None,
    parent_run_id: Optional[str] = None,
    extra_tags: Optional[dict[str, str]] = None,
) -> RunResult:
    """Train once as ``cfg`` says and record it in MLflow; return the run id and final metrics.

    With ``parent_run_id`` (a sweep's job) the run is nested under that run, and input refused
    before training is still recorded, as a FAILED run holding the reason, so that the sweep's
    summary can say which job failed and why. With ``cfg.resume`` (a run id), that run is
    continued from its checkpoint instead.
    """
    catalog = catalog or get_catalog()
    tags = dict(extra_tags or {})
    checked = None
    if not cfg.get("resume"):  # a resumed run's config is the stored one: checked in resume()
        try:  # before torch, Lightning or MLflow is imported and the store is touched
            checked = validate(cfg, catalog)
        except OrchestratorError:
            if parent_run_id:  # a sweep's job: the sweep's summary names the refused job
                from .tracking import Run, ensure_store, resolve_uri

                uri = resolve_uri(cfg.tracking.uri)
                ensure_store(uri)
                with Run(uri, cfg.tracking.experiment, default_run_name(cfg), tags, parent_run_id):
                    raise
            raise

    from .lightning import worker_rank
    from .tracking import Run, ensure_store, flatten, resolve_uri

    uri = resolve_uri(cfg.tracking.uri)
    if worker_rank():  # a DDP rank other than zero: train, and leave MLflow to rank zero
        prepared = prepare(cfg, catalog, uri, output_dir, checked)
        return RunResult("", uri, prepared.training.run(None), "", None, prepared.splits)
    ensure_store(uri)
    if cfg.get("resume"):
        return resume(cfg, uri, overrides, output_dir, catalog)
    try:
        prepared = prepare(cfg, catalog, uri, output_dir, checked)
    except OrchestratorError:
        if parent_run_id:
            with Run(uri, cfg.tracking.experiment, default_run_name(cfg), tags, parent_run_id):
                raise
        raise
    with Run(uri, cfg.tracking.experiment, default_run_name(cfg), {**prepared.tags(), **tags},
             parent_run_id) as mlflow_run:
        mlflow_run.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        mlflow_run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow_run.log_text("".join(f"{o}\n" for o in overrides), "overrides.txt")
        return track(prepared, mlflow_run, catalog)


def resume(cfg: DictConfig, uri: str, overrides: Sequence[str], output_dir, catalog: Catalog) -> RunResult:
    """Continue run ``cfg.resume`` from its last checkpoint, logging into the same MLflow run;
    settings given on the command line with it (``trainer.max_epochs=50``) apply on top of the
    run's own config."""
    from .tracking import Run, resume_material

    run_id = str(cfg.resume)
    stored, checkpoint = resume_material(uri, run_id, output_dir or ".")
    changes = [o for o in overrides if "=" in o and "." in o.split("=", 1)[0] and not o.startswith("resume=")]
    resumed = OmegaConf.merge(stored, OmegaConf.from_dotlist([o.lstrip("+") for o in changes]))
    resumed.resume = None
    prepared = prepare(resumed, catalog, uri, output_dir)
    with Run(uri, resumed.tracking.experiment, "", {}, run_id=run_id) as mlflow_run:
        count = mlflow_run.resumed()
        mlflow_run.log_text("".join(f"{o}\n" for o in overrides), f"resume-{count}-overrides.txt")
        return track(prepared, mlflow_run, catalog, resume_from=checkpoint)


def track(prepared: Prepared, mlflow_run, catalog: Catalog, resume_from: Optional[str] = None) -> RunResult:
    """Train inside the open MLflow run and record metrics, model and plots in it."""
    from .errors import Interrupted
    from .serving import Predictor

    cfg, splits = prepared.cfg, prepared.splits
    hooks = catalog.pm.hook
    log.info("MLflow run %s in %s", mlflow_run.run_id, mlflow_run.uri)
    mlflow_run.log_metrics(
        {"data.n_train": len(splits.y_train), "data.n_val": len(splits.y_val), "data.n_test": len(splits.y_test)}
    )
    metrics: dict[str, float] = {}
    try:
        hooks.on_run_start(run=mlflow_run, cfg=cfg)
        metrics = prepared.training.run(mlflow_run.run_id, resume_from=resume_from, abort=mlflow_run.abandon)
        # Logged from the CPU, whatever trained it: a GPU-trained model must load without CUDA.
        predictor = Predictor(prepared.model.cpu(), splits.mean, splits.std, splits.task, splits.num_classes).eval()
        model_uri = ""
        if cfg.tracking.log_model:
            raw_example = splits.x_test[:5] * splits.std + splits.mean
            model_uri = mlflow_run.log_model(predictor, raw_example, cfg.tracking.model_format)
        if cfg.tracking.plots:
            log_plots(mlflow_run, prepared.model, splits)
    except BaseException as error:
        try:  # the command line names the run that holds the traceback
            error.orchestrator_run = (mlflow_run.uri, mlflow_run.run_id)
        except AttributeError:
            pass
        interrupted = isinstance(error, (Interrupted, KeyboardInterrupt))
        if interrupted and prepared.training.on_interrupt.saved:
            mlflow_run.log_artifact(prepared.training.checkpoint_path, "checkpoints")
            log.warning("Interrupted: checkpoint saved; resume with resume=%s", mlflow_run.run_id)
        hooks.on_run_end(run=mlflow_run, cfg=cfg, status="KILLED" if interrupted else "FAILED",
                         metrics=metrics, error=error)
        raise
    hooks.on_run_end(run=mlflow_run, cfg=cfg, status="FINISHED", metrics=metrics, error=None)
    log.info("Finished run %s: %s", mlflow_run.run_id,
             {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    return RunResult(mlflow_run.run_id, mlflow_run.uri, metrics, model_uri, predictor, splits)


def log_plots(mlflow_run, model, splits: Splits) -> None:
    """Learning curves; a confusion matrix (classifiers) or predicted-vs-true (regressors)."""
    import numpy as np
    import torch

    from . import plots

    histories = {key: [v for _, v in mlflow_run.metric_history(key)] for key in ("train/loss", "val/loss")}
    mlflow_run.log_figure(plots.learning_curves(histories), "plots/learning_curves.png")
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(splits.x_test))
    if splits.task == "classification":
        predicted = (out.squeeze(-1) > 0).long() if splits.output_dim == 1 else out.argmax(dim=-1)
        figure = plots.confusion_matrix(splits.y_test, predicted.numpy(), max(2, splits.num_classes or 2))
        mlflow_run.log_figure(figure, "plots/confusion_matrix.png")
    else:
        figure = plots.predicted_vs_true(splits.y_test, out.squeeze(-1).numpy().astype(np.float64))
        mlflow_run.log_figure(figure, "plots/predicted_vs_true.png")
