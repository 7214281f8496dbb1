"""``run(cfg)``: one training run, from a composed config to a FINISHED MLflow run.

It builds each piece in turn, in the order a reader expects: resolve the chosen options, load and
split the data, check the model fits the data, build model, optimizer and penalty (``prepare``),
then train inside an MLflow run, log the model and the plots. Everything that can be refused is
refused before the MLflow run is opened, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from .components import GROUPS
from .datasets import Splits, split
from .errors import OrchestratorError, closest
from .plugins import Catalog, Provided, get_catalog
from .schema import validate

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


def settings_for(group: str, node: DictConfig, provided: Provided) -> Any:
    """The group's config node checked against its option's schema, as a dataclass instance."""
    from omegaconf.errors import OmegaConfBaseException

    values = OmegaConf.to_container(node, resolve=True)
    values.pop("_name_", None)
    schema = provided.component.schema
    try:
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        known = [f.name for f in schema.__dataclass_fields__.values()]
        hint = closest(key.split(".")[-1], known) if key else ""
        raise OrchestratorError(
            f"Bad setting for {group}={provided.component.name}: {getattr(error, 'msg', error)}"
            f"{hint}. Settings of {group}={provided.component.name}: {', '.join(known) or 'none'}."
        ) from None
    validate(settings, group)
    return settings


def check_pairing(model: Provided, data_name: str, splits: Splits) -> None:
    """Refuse a model that cannot take the data's inputs or learn its task, before training."""
    component = model.component
    problems = []
    if splits.input_kind not in component.inputs:
        problems.append(
            f"it takes {' or '.join(component.inputs)} inputs, but data={data_name} gives "
            f"{splits.input_kind} inputs of shape {splits.input_shape}"
        )
    if splits.task not in component.tasks:
        problems.append(
            f"it learns {' or '.join(component.tasks)}, but data={data_name} is a {splits.task} task"
        )
    if problems:
        default = f" Leave data= out to use {component.default_data}." if component.default_data else ""
        raise OrchestratorError(
            f"model={component.name} cannot train on data={data_name}: {'; and '.join(problems)}."
            f"{default}"
        )


def check_top_level(cfg: DictConfig) -> None:
    """The rules on tracking and sweep settings (their types are checked by Hydra)."""
    from .config import SweepConfig, TrackingConfig

    for key, schema in (("tracking", TrackingConfig), ("sweep", SweepConfig)):
        node = cfg.get(key) or {}
        validate(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node)), key)


def prepare(cfg: DictConfig, catalog: Catalog, uri: str, output_dir: Optional[str] = None) -> Prepared:
    """Resolve the chosen options, load and split the data, build model and trainer: or refuse."""
    for group in GROUPS:
        if group not in cfg or cfg[group] is None:
            raise OrchestratorError(
                f"No {group} chosen. Pick one with {group}=<option>; available: "
                f"{', '.join(sorted(catalog.options[group]))}."
            )
    chosen = {group: catalog.get(group, cfg[group]._name_) for group in GROUPS}
    settings = {group: settings_for(group, cfg[group], chosen[group]) for group in GROUPS}
    check_top_level(cfg)
    names = {group: chosen[group].component.name for group in GROUPS}
    seed = int(cfg.seed)

    log.info("Loading data %s", names["data"])
    data = chosen["data"].component.build(settings["data"], seed)
    splits = split(data, settings["data"], seed, names["data"])
    check_pairing(chosen["model"], names["data"], splits)

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
        trainer_args=OmegaConf.to_container(cfg.trainer, resolve=True),
        callbacks=callbacks,
        seed=seed,
        tracking_uri=uri,
        flush_seconds=float(cfg.tracking.get("flush_seconds", 10.0)),
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
    from .lightning import worker_rank
    from .tracking import Run, ensure_store, flatten, resolve_uri

    catalog = catalog or get_catalog()
    uri = resolve_uri(cfg.tracking.uri)
    if worker_rank():  # a DDP rank other than zero: train, and leave MLflow to rank zero
        prepared = prepare(cfg, catalog, uri, output_dir)
        return RunResult("", uri, prepared.training.run(None), "", None, prepared.splits)
    ensure_store(uri)
    if cfg.get("resume"):
        return resume(cfg, uri, overrides, output_dir, catalog)
    tags = dict(extra_tags or {})
    try:
        prepared = prepare(cfg, catalog, uri, output_dir)
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
        predictor = Predictor(prepared.model, splits.mean, splits.std, splits.task, splits.num_classes).eval()
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
