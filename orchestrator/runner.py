"""``run(cfg)``: one training run, from a composed config to a FINISHED MLflow run.

It builds each piece in turn, in the order a reader expects: resolve the chosen options, load and
split the data, check the model fits the data, build model, optimizer and penalty, then train
inside an MLflow run and log the model. Everything that can be refused is refused before the
MLflow run is opened, so bad input never leaves a half-written run behind.
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


def settings_for(group: str, node: DictConfig, provided: Provided) -> Any:
    """The group's config node checked against its option's schema, as a dataclass instance."""
    from omegaconf.errors import OmegaConfBaseException

    values = OmegaConf.to_container(node, resolve=True)
    values.pop("_name_", None)
    schema = provided.component.schema
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        known = [f.name for f in schema.__dataclass_fields__.values()]
        hint = closest(key.split(".")[-1], known) if key else ""
        raise OrchestratorError(
            f"Bad setting for {group}={provided.component.name}: {error.msg if hasattr(error, 'msg') else error}"
            f"{hint}. Settings of {group}={provided.component.name}: {', '.join(known) or 'none'}."
        ) from None


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


def run(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    output_dir: Optional[str] = None,
    catalog: Optional[Catalog] = None,
) -> RunResult:
    """Train once as ``cfg`` says and record it in MLflow; return the run id and final metrics."""
    catalog = catalog or get_catalog()
    for group in GROUPS:
        if group not in cfg or cfg[group] is None:
            raise OrchestratorError(
                f"No {group} chosen. Pick one with {group}=<option>; available: "
                f"{', '.join(sorted(catalog.options[group]))}."
            )
    chosen = {group: catalog.get(group, cfg[group]._name_) for group in GROUPS}
    settings = {group: settings_for(group, cfg[group], chosen[group]) for group in GROUPS}
    names = {group: chosen[group].component.name for group in GROUPS}
    seed = int(cfg.seed)

    log.info("Loading data %s", names["data"])
    data = chosen["data"].component.build(settings["data"], seed)
    splits = split(data, settings["data"], seed, names["data"])
    check_pairing(chosen["model"], names["data"], splits)

    import torch

    torch.manual_seed(seed)
    log.info("Building model %s for inputs %s", names["model"], splits.input_shape)
    model = chosen["model"].component.build(settings["model"], splits.input_shape, splits.output_dim)
    penalty = chosen["regularizer"].component.build(settings["regularizer"])
    make_optimizer = partial(chosen["optimizer"].component.build, settings["optimizer"])
    batch_size = getattr(settings["optimizer"], "batch_size", None)

    from .lightning import train
    from .serving import Predictor
    from .tracking import Run, flatten, resolve_uri

    uri = resolve_uri(cfg.tracking.uri)
    run_name = cfg.tracking.run_name or "-".join(names[g] for g in ("model", "optimizer", "regularizer", "data"))
    tags = {}
    for group in GROUPS:
        provided = chosen[group]
        tags[f"orchestrator.{group}"] = names[group]
        tags[f"orchestrator.{group}.plugin"] = provided.plugin.name
        tags[f"orchestrator.{group}.distribution"] = provided.provenance
    tags["orchestrator.task"] = splits.task
    tags["orchestrator.data.source"] = data.source

    hooks = catalog.pm.hook
    callbacks = [cb for found in hooks.add_callbacks(cfg=cfg) for cb in (found or [])]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with Run(uri, cfg.tracking.experiment, run_name, tags) as mlflow_run:
        log.info("MLflow run %s in %s", mlflow_run.run_id, uri)
        mlflow_run.log_params(flatten(resolved))
        mlflow_run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow_run.log_text("".join(f"{o}\n" for o in overrides), "overrides.txt")
        mlflow_run.log_metrics(
            {"data.n_train": len(splits.y_train), "data.n_val": len(splits.y_val), "data.n_test": len(splits.y_test)}
        )
        metrics: dict[str, float] = {}
        try:
            hooks.on_run_start(run=mlflow_run, cfg=cfg)
            metrics = train(
                model,
                splits,
                make_optimizer=make_optimizer,
                penalty=penalty,
                batch_size=batch_size,
                trainer_args=OmegaConf.to_container(cfg.trainer, resolve=True),
                callbacks=callbacks,
                seed=seed,
                tracking_uri=uri,
                run_id=mlflow_run.run_id,
                output_dir=output_dir or ".",
            )
            predictor = Predictor(model, splits.mean, splits.std, splits.task, splits.num_classes).eval()
            model_uri = ""
            if cfg.tracking.log_model:
                raw_example = splits.x_test[:5] * splits.std + splits.mean
                model_uri = mlflow_run.log_model(predictor, raw_example, cfg.tracking.model_format)
        except BaseException as error:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            hooks.on_run_end(run=mlflow_run, cfg=cfg, status=status, metrics=metrics, error=error)
            raise
        hooks.on_run_end(run=mlflow_run, cfg=cfg, status="FINISHED", metrics=metrics, error=None)
    log.info("Finished run %s: %s", mlflow_run.run_id, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    return RunResult(mlflow_run.run_id, uri, metrics, model_uri, predictor, splits)
