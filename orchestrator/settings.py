"""Every rule the config alone decides, checked in one place before anything heavy is imported.

:func:`validate` turns a composed config into :class:`Settings` (the chosen option of each group
with the plugin that provides it, each group's typed settings, the tracking and sweep settings,
the Lightning ``Trainer`` arguments) or raises one :class:`OrchestratorError` that names the key,
the value, the rule and the closest valid names:

- each group's settings against its option's schema: types, unknown keys, ``check()`` rules;
- ``data.val_fraction + data.test_fraction`` leaving something to train on;
- the model against the data's input kind and task, where the data option declares them
  (``Data(..., input_kind="tabular", task="regression")``); undeclared data (``data=csv``
  without ``data.task``: its task is inferred from the file) is checked once loaded
  (:func:`check_loaded`);
- the top-level keys, and the tracking and sweep settings;
- the ``trainer`` keys against the arguments of Lightning's ``Trainer``, and the values of
  ``accelerator`` and ``precision`` against those Lightning accepts.

Nothing here imports torch, Lightning, MLflow or numpy: a refusal costs a small fraction of the
time those take to import. Lightning's argument names and accepted values are read from its
source files with :mod:`ast`, found with ``importlib.util.find_spec`` (which does not run the
package); where they cannot be read, the check is left to Lightning itself when the ``Trainer``
is built (:class:`orchestrator.lightning.Training`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from .components import CALLBACKS, GROUPS, INPUT_KINDS, TASKS
from .config import Config, SweepConfig, TrackingConfig
from .errors import OrchestratorError, closest
from .schema import validate as check_rules
from .task import Learner

if TYPE_CHECKING:
    from .plugins import Catalog, Provided

#: Trainer arguments orchestrator sets itself: the MLflow logger, its callbacks (with those of
#: the ``add_callbacks`` hook) and the output folder.
RESERVED_TRAINER_ARGUMENTS = {
    "logger": "the run's MLflow logger; every run is recorded in MLflow (tracking.uri=... picks the store)",
    "callbacks": "its own callbacks; a plugin adds more through the add_callbacks hook",
    "default_root_dir": "the job's output folder (hydra.run.dir=... moves it)",
}
#: Trainer arguments of Lightning's validation loop, which runs here inside each training epoch:
#: any other value than this one would be silently without effect, so it is refused.
WITHOUT_EFFECT = {"check_val_every_n_epoch": 1, "val_check_interval": 1.0, "limit_val_batches": 1.0,
                  "overfit_batches": 0, "num_sanity_val_steps": 0}
#: Accelerator names Lightning's connector accepts besides its registry's (``gpu``: CUDA or MPS).
SPECIAL_ACCELERATORS = ("auto", "gpu")


@dataclass
class Settings:
    """A composed config, checked: what a run builds its pieces from."""

    #: The chosen option of each group, with the plugin that provides it.
    chosen: dict[str, "Provided"]
    #: The chosen option's name, by group.
    names: dict[str, str]
    #: Each group's settings: an instance of its option's schema.
    groups: dict[str, Any]
    #: Lightning ``Trainer`` arguments, as given (names and known values checked).
    trainer: dict[str, Any]
    tracking: TrackingConfig
    sweep: SweepConfig
    seed: int
    #: The data's input kind and task as its option declares them for these settings (None:
    #: undeclared, known once the data is loaded).
    input_kind: Optional[str] = None
    task: Optional[str] = None
    #: The chosen callbacks (``callbacks=[...]``): name -> (the option, its settings).
    callbacks: dict = dataclasses.field(default_factory=dict)


def validate(cfg: DictConfig, catalog: "Catalog") -> Settings:
    """The settings of ``cfg``, every rule that needs nothing but the config checked."""
    for group in GROUPS:
        if group not in cfg or cfg[group] is None:
            raise OrchestratorError(
                f"No {group} chosen. Pick one with {group}=<option>; available: "
                f"{', '.join(sorted(catalog.options[group]))}."
            )
    chosen = {group: catalog.get(group, cfg[group]._name_) for group in GROUPS}
    names = {group: chosen[group].component.name for group in GROUPS}
    groups = {group: settings_for(group, cfg[group], chosen[group]) for group in GROUPS}
    check_fractions(groups["data"])
    input_kind, task = declared(chosen["data"], groups["data"])
    # A task that is one of the data's settings (data.task=regression) is named in the refusal;
    # a data option that infers its task declares None here and is checked once loaded.
    task_key = "data.task" if task is not None and getattr(groups["data"], "task", None) == task else None
    check_pairing(chosen["model"], names["data"], input_kind, task, task_key=task_key,
                  others=models_for(catalog, input_kind, task))
    check_top_level_keys(cfg)
    tracking, sweep = check_top_level(cfg)
    trainer = trainer_arguments(cfg)
    default_epochs(cfg, trainer, chosen["optimizer"].component)
    check_trainer_names(trainer)
    check_trainer_values(trainer)
    callbacks = {name: (catalog.get(CALLBACKS, name), None) for name in (cfg.get(CALLBACKS) or {})}
    callbacks = {name: (provided, settings_for(CALLBACKS, cfg[CALLBACKS][name], provided))
                 for name, (provided, _) in callbacks.items()}
    return Settings(chosen, names, groups, trainer, tracking, sweep, int(cfg.seed), input_kind, task,
                    callbacks)


def settings_for(group: str, node: DictConfig, provided: "Provided") -> Any:
    """The group's config node checked against its option's schema, as a dataclass instance."""
    from omegaconf.errors import OmegaConfBaseException

    values = OmegaConf.to_container(node, resolve=True)
    values.pop("_name_", None)
    schema = provided.component.schema
    option = f"{group}={provided.component.name}"
    known = [f.name for f in dataclasses.fields(schema)]
    refuse_unknown_keys(group, values, known, option)  # added with +group.key=...
    try:
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        hint = closest(key.split(".")[-1], known) if key else ""
        reason = (str(getattr(error, "msg", None) or error).strip().splitlines() or [""])[0]
        raise OrchestratorError(
            f"Bad setting for {option}: {reason}{hint}. Settings of {option}: {', '.join(known) or 'none'}."
        ) from None
    check_rules(settings, group)
    return settings


def refuse_unknown_keys(prefix: str, values: dict, known: list[str], where: str) -> None:
    """Refuse a key of ``values`` that is not one of ``known``, naming the closest."""
    for key in values:
        if key not in known:
            raise OrchestratorError(
                f"{prefix}.{key} is not a setting{closest(key, known)}. Settings of {where}: "
                f"{', '.join(known) or 'none'}."
            )


def check_fractions(data: Any) -> None:
    """The validation and test shares of a data option: each in (0, 1), together below 1."""
    if not all(hasattr(data, key) for key in ("val_fraction", "test_fraction")):
        return  # a data schema always has them (DataConfig); anything else is not split
    for key in ("val_fraction", "test_fraction"):
        value = getattr(data, key)
        if not 0 < value < 1:
            raise OrchestratorError(f"data.{key}={value} must be between 0 and 1 (exclusive).")
    if data.val_fraction + data.test_fraction >= 1:
        raise OrchestratorError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction} "
            "leaves nothing to train on; their sum must stay below 1."
        )


# ---------------------------------------------------------------------------------------------
# Model and data


def declared(data: "Provided", settings: Any) -> tuple[Optional[str], Optional[str]]:
    """The input kind and task the data option declares for ``settings`` (None: undeclared)."""
    component = data.component
    found = []
    for attr, allowed in (("input_kind", INPUT_KINDS), ("task", TASKS)):
        value = getattr(component, attr, None)
        if callable(value):
            value = value(settings)
        if value is not None and value not in allowed:
            raise OrchestratorError(
                f"data={component.name} (plugin {data.plugin.name!r} from {data.plugin.distribution}) "
                f"declares {attr}={value!r} for these settings; expected one of {', '.join(allowed)}. "
                "Fix the declaration in the plugin, or leave it out."
            )
        found.append(value)
    return found[0], found[1]


def check_pairing(model: "Provided", data_name: str, input_kind: Optional[str], task: Optional[str],
                  input_shape: Optional[tuple] = None, task_key: Optional[str] = None,
                  others: Sequence[str] = ()) -> None:
    """Refuse a model that cannot take the data's inputs or learn its task. ``None`` for an input
    kind or task not known yet passes. ``task_key``: the setting the task comes from
    (``data.task``), whose other values the refusal names; ``others``: models that would do."""
    component = model.component
    if task_key is not None and task is not None and task not in component.tasks and (
            input_kind is None or input_kind in component.inputs):
        instead = f" ({', '.join(f'model={m}' for m in others)})" if others else ""
        raise OrchestratorError(
            f"model={component.name} cannot train on data={data_name} with {task_key}={task}: it "
            f"learns only {' or '.join(component.tasks)}. Set {task_key}="
            f"{' or '.join(component.tasks)} if the target is that, leave {task_key} out to infer "
            f"the task from the target, or train a model that learns {task}{instead}."
        )
    problems = []
    if input_kind is not None and input_kind not in component.inputs:
        shape = f" of shape {input_shape}" if input_shape is not None else ""
        problems.append(
            f"it takes {' or '.join(component.inputs)} inputs, but data={data_name} gives "
            f"{input_kind} inputs{shape}"
        )
    if task is not None and task not in component.tasks:
        problems.append(
            f"it learns {' or '.join(component.tasks)}, but data={data_name} is a {task} task"
        )
    if problems:
        default = f" Leave data= out to use {component.default_data}." if component.default_data else ""
        raise OrchestratorError(
            f"model={component.name} cannot train on data={data_name}: {'; and '.join(problems)}."
            f"{default}"
        )


def models_for(catalog: "Catalog", input_kind: Optional[str], task: Optional[str]) -> list[str]:
    """The model options that take ``input_kind`` inputs and learn ``task`` (None: any)."""
    return sorted(name for name, provided in catalog.options["model"].items()
                  if (input_kind is None or input_kind in provided.component.inputs)
                  and (task is None or task in provided.component.tasks))


def learner(settings: Settings, catalog: "Catalog") -> Learner:
    """The chosen model, as a data option that infers its task sees it (:func:`~orchestrator.task.infer_task`)."""
    model = settings.chosen["model"].component
    others = {task: tuple(models_for(catalog, settings.input_kind, task)) for task in TASKS}
    return Learner(settings.names["model"], tuple(model.tasks), others)


def check_loaded(settings: Settings, input_kind: str, task: str, input_shape: tuple) -> None:
    """Once the data is loaded: the pairing with what it holds, and its declaration kept."""
    data = settings.chosen["data"]
    for attr, said, found in (("input_kind", settings.input_kind, input_kind), ("task", settings.task, task)):
        if said is not None and said != found:
            raise OrchestratorError(
                f"data={settings.names['data']} (plugin {data.plugin.name!r} from "
                f"{data.plugin.distribution}) declares {attr}={said!r} but gave {found!r}. Fix the "
                "declaration in the plugin, or leave it out."
            )
    check_pairing(settings.chosen["model"], settings.names["data"], input_kind, task, input_shape)


# ---------------------------------------------------------------------------------------------
# Top level: tracking, sweep


def check_top_level_keys(cfg: DictConfig) -> None:
    """Keys added at the top level (``+name=value``) that no part of the config reads."""
    known = [f.name for f in dataclasses.fields(Config)]
    for key in cfg.keys():
        if key not in known:
            raise OrchestratorError(
                f"{key} is not a setting{closest(key, known)}. Top-level settings: {', '.join(known)}."
            )


def check_top_level(cfg: DictConfig) -> tuple[TrackingConfig, SweepConfig]:
    """The tracking and sweep settings: keys, types and rules."""
    from omegaconf.errors import OmegaConfBaseException

    found = []
    for key, schema in (("tracking", TrackingConfig), ("sweep", SweepConfig)):
        node = cfg.get(key)
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else {}
        known = [f.name for f in dataclasses.fields(schema)]
        refuse_unknown_keys(key, values, known, key)
        try:
            settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
        except OmegaConfBaseException as error:
            reason = (str(getattr(error, "msg", None) or error).strip().splitlines() or [""])[0]
            raise OrchestratorError(f"Bad setting for {key}: {reason}.") from None
        check_rules(settings, key)
        found.append(settings)
    return found[0], found[1]


# ---------------------------------------------------------------------------------------------
# Lightning Trainer arguments


def trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    node = cfg.get("trainer")
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        raise OrchestratorError(f"trainer={node!r} is not valid: trainer holds Lightning Trainer arguments "
                                "(trainer=cpu, trainer=gpu, trainer.max_epochs=5).")
    return OmegaConf.to_container(node, resolve=True)


def default_epochs(cfg: DictConfig, trainer: dict, optimizer) -> None:
    """``trainer.max_epochs`` left null (the default) becomes the optimizer's ``epochs``: what it
    needs on the data the built-in models are made for (40 full-batch steps of gd, 12 epochs of
    Adam). Written into ``cfg`` too, so that the run's params, config and job key hold the number
    trained, and a rerun or a resume trains exactly as many. ``trainer.max_steps`` set alone
    leaves the epochs unbounded, as Lightning does."""
    if trainer.get("max_epochs") is not None or trainer.get("max_steps") not in (None, -1):
        return
    epochs = getattr(optimizer, "epochs", 20)
    trainer["max_epochs"] = epochs
    if isinstance(cfg.get("trainer"), DictConfig):
        with open_dict(cfg.trainer):
            cfg.trainer.max_epochs = epochs


def check_trainer_names(args: dict, accepted: Optional[Iterable[str]] = None) -> None:
    """Each key a ``Trainer`` argument that orchestrator does not set itself. ``accepted``:
    the argument names (default: read from Lightning's source; unknown there: not checked)."""
    for key in args:
        if key in RESERVED_TRAINER_ARGUMENTS:
            raise OrchestratorError(
                f"trainer.{key} cannot be set: orchestrator gives the Trainer "
                f"{RESERVED_TRAINER_ARGUMENTS[key]}."
            )
    names = set(accepted) if accepted is not None else lightning_trainer_arguments()
    if names is None:
        return
    for key in args:
        if key not in names:
            raise OrchestratorError(f"trainer.{key} is not a Lightning Trainer argument{closest(key, names)}.")


def check_trainer_values(args: dict) -> None:
    """``accelerator`` and ``precision`` among the values Lightning accepts (others are left to
    Lightning when the Trainer is built)."""
    for key, neutral in WITHOUT_EFFECT.items():
        if key in args and args[key] is not None and args[key] != neutral:
            raise OrchestratorError(
                f"The trainer settings are refused: trainer.{key}={args[key]!r} would have no effect. "
                "Validation here runs on the whole validation split at the end of every training "
                "epoch (the split is in memory; Lightning's validation loop is not used), so "
                f"{', '.join(f'trainer.{k}' for k in WITHOUT_EFFECT)} cannot change it. Leave "
                f"trainer.{key} out; to validate less often, make the epochs longer or fewer."
            )
    for key in ("max_epochs", "min_epochs", "max_steps", "min_steps"):
        value = args.get(key)
        if value is not None and (type(value) is not int or value < -1):
            null = "the optimizer's default" if key == "max_epochs" else "none"
            raise OrchestratorError(
                f"The trainer settings are refused: trainer.{key}={value!r} is not a whole number of "
                f"{key.split('_')[1]}; it must be an integer >= 0 (or -1: no limit, or null: {null}). In a "
                f"search, use range(a,b) or choice(...) for trainer.{key}, not interval(a,b), whose values are floats."
            )
    if "accelerator" in args:
        value, names = args["accelerator"], lightning_accelerators()
        if names is not None and not (isinstance(value, str) and value in names):
            raise OrchestratorError(
                f"The trainer settings are refused: trainer.accelerator={value!r} is not an accelerator "
                f"Lightning knows; it must be one of {', '.join(names)}{closest(value, names)}."
            )
    if args.get("precision") is not None:  # None: Lightning's default (32-true)
        value, allowed = args["precision"], lightning_precisions()
        exact = type(value) in (int, str)  # not True (== 1), nor 32.0
        if allowed is not None and not (exact and value in allowed):
            shown = list(dict.fromkeys(map(str, allowed)))  # 32 and "32" are both accepted
            raise OrchestratorError(
                f"The trainer settings are refused: trainer.precision={value!r} is not a precision "
                f"Lightning accepts; it must be one of {', '.join(shown)}{closest(value, shown)}."
            )


def _package_dir(name: str) -> Optional[Path]:
    """Where an installed package's source lies, without importing (running) it."""
    from importlib.util import find_spec

    try:
        spec = find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _parse(package: str, *parts: str) -> Optional[ast.Module]:
    folder = _package_dir(package)
    if folder is None:
        return None
    try:
        return ast.parse(folder.joinpath(*parts).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def lightning_trainer_arguments() -> Optional[frozenset]:
    """The parameter names of ``pytorch_lightning.Trainer.__init__``, read from its source; None
    where they cannot be read, or where it takes ``**kwargs`` (then any name may do)."""
    tree = _parse("pytorch_lightning", "trainer", "trainer.py")
    trainer = next((node for node in getattr(tree, "body", [])
                    if isinstance(node, ast.ClassDef) and node.name == "Trainer"), None)
    init = next((node for node in getattr(trainer, "body", [])
                 if isinstance(node, ast.FunctionDef) and node.name == "__init__"), None)
    if init is None or init.args.kwarg is not None:
        return None
    params = [*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs]
    names = frozenset(p.arg for p in params[1:])  # without self
    return names or None


@functools.lru_cache(maxsize=None)
def lightning_accelerators() -> Optional[tuple]:
    """Accelerator names the Trainer accepts: ``auto``, ``gpu`` and each accelerator Lightning
    registers (the ``name()`` of each class with ``register_accelerators`` in
    ``pytorch_lightning/accelerators/``); None where none can be read."""
    folder = _package_dir("pytorch_lightning")
    if folder is None:
        return None
    names = []
    for path in sorted((folder / "accelerators").glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
            if "register_accelerators" not in methods or "name" not in methods:
                continue
            returned = [n.value for n in ast.walk(methods["name"]) if isinstance(n, ast.Return)]
            if len(returned) == 1 and isinstance(returned[0], ast.Constant) and isinstance(returned[0].value, str):
                names.append(returned[0].value)
    return (*SPECIAL_ACCELERATORS, *sorted(set(names))) if names else None


@functools.lru_cache(maxsize=None)
def lightning_precisions() -> Optional[tuple]:
    """The ``precision`` values the Trainer accepts: the literals of Lightning Fabric's
    ``_PRECISION_INPUT`` (in ``lightning_fabric/plugins/precision/precision.py``, a ``Union``
    of ``Literal`` aliases); None where it cannot be read."""
    tree = _parse("lightning_fabric", "plugins", "precision", "precision.py")
    aliases = {
        node.targets[0].id: node.value
        for node in getattr(tree, "body", [])
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }

    def literals(node, depth=0) -> list:
        if depth > 5:
            return []
        if isinstance(node, ast.Name) and node.id in aliases:
            return literals(aliases[node.id], depth + 1)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if node.value.id == "Literal":
                return [i.value for i in items if isinstance(i, ast.Constant)]
            if node.value.id in ("Union", "Optional"):
                return [v for i in items for v in literals(i, depth + 1)]
        return []

    values = literals(aliases.get("_PRECISION_INPUT"))
    return tuple(dict.fromkeys(values)) or None
