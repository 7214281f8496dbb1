"""The plugin host: loads plugins through pluggy and turns their components into Hydra options.

Start-up runs, in order:

1. ``load_plugins()`` registers every entry point of the ``orchestrator`` group, the built-ins
   (this distribution's own entry points) first, then third-party distributions. A plugin that
   cannot be imported or implements a hook that does not exist is reported and skipped.
2. ``Catalog`` asks each plugin for its components (``register_components``) and its YAML
   folders (``config_search_paths``), and checks them before Hydra sees anything: each schema is
   read by OmegaConf as Hydra will read it (types, defaults, the ``check()`` rules), each name
   and search path entry must be usable. A plugin with any problem (the hook raises, returns
   something else, a schema that does not load, an option another plugin already provides, a
   model preferring data nobody provides) is reported with the reason and the fix, and skipped
   as a whole: none of its options exists, its other hooks are not called.
3. ``Catalog.register_with_hydra()`` puts each component's schema into Hydra's ``ConfigStore``
   as an option of its group, adds the plugins' YAML folders to Hydra's search path, and stores
   ``hydra/help=orchestrator``: ``--help`` with each option's description.

Environment switches, in the spirit of pytest and datasette:

- ``ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-in plugins.
- ``ORCHESTRATOR_BLOCK_PLUGINS=name,name``: skip the named plugins (entry-point names).
- ``ORCHESTRATOR_STRICT_PLUGINS=1``: a plugin that fails to load is an error, not a warning.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field, make_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, List, Optional

import pluggy

from . import hookspecs
from .components import CALLBACKS, GROUPS, INPUT_KINDS, TASKS, Component, Model
from .errors import OrchestratorError, closest

ENTRY_POINT_GROUP = "orchestrator"
PROJECT = "orchestrator"
hookimpl = pluggy.HookimplMarker(PROJECT)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


@dataclass
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)

    @property
    def provenance(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass
class PluginFailure:
    """A plugin that was skipped, why, and what to do about it."""

    plugin: PluginInfo
    reason: str
    fix: str
    #: Options the plugin tried to provide, where known, as ``group=name``.
    options: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        p = self.plugin
        return (
            f"Plugin {p.name!r} from {p.distribution} {p.version} ({p.module}) {self.reason} "
            f"{self.fix}"
        )


@dataclass
class Provided:
    """A component together with the plugin that provided it."""

    component: Component
    plugin: PluginInfo
    #: The config node Hydra stores for the option (``_config_node``), built once when checked.
    node: Optional[type] = field(default=None, repr=False)

    @property
    def provenance(self) -> str:
        return self.plugin.provenance


def _info(ep) -> PluginInfo:
    dist = ep.dist
    return PluginInfo(
        name=ep.name,
        distribution=dist.metadata["Name"] if dist else "unknown",
        version=dist.version if dist else "unknown",
        module=ep.value,
    )


def _skip_hint(name: str) -> str:
    return f"To silence this, uninstall it or set ORCHESTRATOR_BLOCK_PLUGINS={name}."


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line (OmegaConf and pluggy messages span several)."""
    text = str(error)
    if hasattr(error, "full_key"):  # OmegaConf: the first line says it, then key and type follow
        text = (text.strip().splitlines() or [""])[0]
    text = " ".join(text.split()).rstrip(".")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Refused(Exception):
    """What is wrong with one thing a plugin provides, and the fix."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def load_plugins() -> tuple[pluggy.PluginManager, dict[str, PluginInfo], list[PluginFailure]]:
    """A plugin manager with every installed plugin that loads registered, where each came
    from, and the plugins that failed."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    failures: list[PluginFailure] = []

    autoload = not _flag("ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD")
    blocked = _env_list("ORCHESTRATOR_BLOCK_PLUGINS")
    entry_points = [(ep, _info(ep)) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    # Built-ins first, then third parties, each in a stable order.
    entry_points.sort(key=lambda item: (item[1].distribution != PROJECT, item[1].distribution, item[0].name))
    for ep, info in entry_points:
        if info.name in blocked or (info.distribution != PROJECT and not autoload):
            continue
        if pm.has_plugin(info.name) or info.name in infos:
            continue  # the same distribution found twice on sys.path
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as error:  # anything a broken import raises, exit() too
            failures.append(PluginFailure(
                info, f"cannot be imported: {_one_line(error)}.",
                f"Fix the module or reinstall {info.distribution}. {_skip_hint(info.name)}",
            ))
            continue
        try:
            pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as error:
            failures.append(PluginFailure(
                info, f"has a hook with a wrong signature: {_one_line(error)}.",
                f"Match the hook's arguments in orchestrator/hookspecs.py. {_skip_hint(info.name)}",
            ))
            continue
        except ValueError as error:  # its module is already registered under another name
            other = pm.get_name(plugin)
            failures.append(PluginFailure(
                info, f"cannot be registered: its module {info.module} is already plugin {other!r}.",
                f"Give each entry point of the {ENTRY_POINT_GROUP!r} group its own module. "
                + _skip_hint(info.name),
            ) if other else PluginFailure(
                info, f"cannot be registered: {_one_line(error)}.",
                f"Fix the plugin or reinstall {info.distribution}. {_skip_hint(info.name)}",
            ))
            continue
        unknown = [c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            pm.unregister(plugin)
            known = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "orchestrator_spec")]
            failures.append(PluginFailure(
                info, f"implements {unknown[0]!r}{closest(unknown[0], known)}, which is not an "
                f"orchestrator hook.",
                f"Rename it to one of: {', '.join(sorted(known))}. {_skip_hint(info.name)}",
            ))
            continue
        info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
        infos[info.name] = info
    return pm, infos, failures


class Catalog:
    """Every option of every group, by name, with the plugin that provides it.

    Each plugin is checked as a whole when the catalogue is built, before Hydra sees anything:
    its components (their names, schemas and defaults, read by OmegaConf exactly as Hydra will)
    and its config search path. A plugin with any problem is recorded in ``failures`` and
    unregistered, none of its options is kept, and every other plugin works as before.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        infos: dict[str, PluginInfo],
        failures: Optional[list[PluginFailure]] = None,
        strict: Optional[bool] = None,
    ):
        start = time.perf_counter()
        self.pm = pm
        self.plugins = infos
        self.failures = list(failures or [])
        self.options: dict[str, dict[str, Provided]] = {group: {} for group in (*GROUPS, CALLBACKS)}
        #: Each loaded plugin's YAML folders, by plugin name.
        self.plugin_search_paths: dict[str, list[str]] = {}
        registers = {i.plugin_name: i.function for i in pm.hook.register_components.get_hookimpls()}
        path_hooks = {i.plugin_name: i.function for i in pm.hook.config_search_paths.get_hookimpls()}
        for name, plugin in pm.list_name_plugin():
            if plugin is None or (name not in registers and name not in path_hooks):
                continue
            info = infos.get(name) or PluginInfo(name, "unknown", "?", "?")
            try:
                problem = self._add_plugin(info, registers.get(name), path_hooks.get(name))
            except Exception as error:  # a check of ours tripped over something unforeseen
                problem = PluginFailure(info, f"could not be checked: {_one_line(error)}.",
                                        f"Fix the plugin or reinstall {info.distribution}. "
                                        + _skip_hint(info.name))
            if problem is not None:
                self._drop(problem)
        self._check_preferred_data()
        # In the order pluggy calls the hook (the last registered first), as before.
        self.search_paths: list[str] = [
            path for impl in reversed(pm.hook.config_search_paths.get_hookimpls())
            for path in self.plugin_search_paths.get(impl.plugin_name, [])
        ]
        self.load_seconds = time.perf_counter() - start
        if (strict if strict is not None else _flag("ORCHESTRATOR_STRICT_PLUGINS")) and self.failures:
            raise OrchestratorError(
                "Plugins failed to load (ORCHESTRATOR_STRICT_PLUGINS is set): "
                + " ".join(str(f) for f in self.failures)
                + " Unset ORCHESTRATOR_STRICT_PLUGINS to skip such plugins with a warning instead."
            )

    def _add_plugin(self, info: PluginInfo, register, search_paths) -> Optional[PluginFailure]:
        """Add all of a plugin's components and search path, or none of them and say why."""
        components: list = []
        if register is not None:
            try:
                returned = register()
                if returned is not None and (isinstance(returned, (str, bytes, dict, Component))
                                             or not hasattr(returned, "__iter__")):
                    return PluginFailure(
                        info, f"returned {returned!r} from register_components, not a list.",
                        "Return a list of orchestrator.Model, Optimizer, Regularizer or Data "
                        f"objects. {_skip_hint(info.name)}",
                    )
                components = list(returned or [])  # a generator runs the plugin's code here
            except (Exception, SystemExit) as error:
                return PluginFailure(
                    info, f"failed in register_components: {_one_line(error)}.",
                    f"Fix register_components in {info.module}, or reinstall {info.distribution}. "
                    + _skip_hint(info.name),
                )
        options = [f"{getattr(c, 'group', '?')}={getattr(c, 'name', '?')}" for c in components]
        nodes = []
        for component in components:
            if not isinstance(component, Component) or component.group not in self.options:
                return PluginFailure(
                    info, f"returned {component!r} from register_components.",
                    "Return orchestrator.Model, Optimizer, Regularizer or Data objects. "
                    + _skip_hint(info.name), options,
                )
            existing = self.options[component.group].get(component.name)
            if existing is not None:
                return PluginFailure(
                    info,
                    f"provides {component.group}={component.name}, which plugin "
                    f"{existing.plugin.name!r} from {existing.plugin.distribution} "
                    f"{existing.plugin.version} already provides.",
                    f"Rename the option in one of them, or choose one with "
                    f"ORCHESTRATOR_BLOCK_PLUGINS={info.name}.",
                    options,
                )
            try:
                nodes.append(_checked_node(component))
            except _Refused as refused:
                return PluginFailure(info, refused.reason, f"{refused.fix} {_skip_hint(info.name)}", options)
        seen = set()
        for component in components:
            key = (component.group, component.name)
            if key in seen:
                return PluginFailure(info, f"provides {component.group}={component.name} twice.",
                                     "Give each option its own name.", options)
            seen.add(key)
        paths: list[str] = []
        if search_paths is not None:
            try:
                paths = _checked_search_paths(search_paths)
            except _Refused as refused:
                return PluginFailure(info, refused.reason, f"{refused.fix} {_skip_hint(info.name)}", options)
        for component, node in zip(components, nodes):
            self.options[component.group][component.name] = Provided(component, info, node)
        if paths:
            self.plugin_search_paths[info.name] = paths
        return None

    def _drop(self, failure: PluginFailure) -> None:
        """Skip a plugin as a whole: record why, remove its options and unregister it."""
        name = failure.plugin.name
        for group, options in self.options.items():
            for option in [n for n, p in options.items() if p.plugin.name == name]:
                del options[option]
                if f"{group}={option}" not in failure.options:
                    failure.options.append(f"{group}={option}")
        self.plugin_search_paths.pop(name, None)
        self.failures.append(failure)
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.plugins.pop(name, None)

    def _check_preferred_data(self) -> None:
        """Each model's ``default_data`` must be a data option that exists once every plugin is
        in; a plugin whose model prefers a missing one is skipped (which may, in turn, remove
        data another plugin's model prefers: repeat until nothing changes)."""
        while True:
            for name, provided in self.options["model"].items():
                wanted = provided.component.default_data
                if not wanted or wanted in self.options["data"] or self.has_yaml_option("data", wanted):
                    continue
                info = provided.plugin
                exact = [f.plugin.name for f in self.failures if f"data={wanted}" in f.options]
                unknown = [f.plugin.name for f in self.failures if not f.options]
                note = (f" It comes from plugin {exact[0]!r}, which failed to load." if exact else
                        f" Plugins that failed to load may provide it: {', '.join(unknown)}." if unknown
                        else "")
                self._drop(PluginFailure(
                    info, f"provides model={name} with default_data={wanted!r}, which no loaded "
                    f"plugin provides{closest(wanted, self.options['data'])}.{note}",
                    f"Name an installed data option (orchestrator plugins lists them), or install the "
                    f"plugin that provides data={wanted}. {_skip_hint(info.name)}",
                ))
                break
            else:
                return

    def has_yaml_option(self, group: str, name: str) -> bool:
        """Whether ``<group>/<name>.yaml`` exists in ``conf/`` or a plugin's search path."""
        from importlib import resources

        from .config import conf_dir

        places = [str(conf_dir())] + [p for ps in self.plugin_search_paths.values() for p in ps]
        for place in places:
            try:
                if place.startswith("pkg://"):
                    root = resources.files(place[len("pkg://"):].replace("/", "."))
                else:
                    root = Path(place.removeprefix("file://"))
                if root.joinpath(group, f"{name}.yaml").is_file():
                    return True
            except Exception:  # a package that cannot be imported has no options
                continue
        return False

    def get(self, group: str, name: str) -> Provided:
        """The option ``name`` of ``group``; a clear error naming the choices if it is unknown."""
        options = self.options[group]
        if name not in options:
            raise OrchestratorError(
                f"Unknown {group} {name!r}{closest(name, options)}. Available {group} options: "
                f"{', '.join(sorted(options))}.{self.failure_note(group, name)}"
            )
        return options[name]

    def failure_note(self, group: str, name: str) -> str:
        """What a failed plugin has to do with a missing option, if anything."""
        wanted = f"{group}={name}"
        exact = [f for f in self.failures if wanted in f.options]
        unknown = [f for f in self.failures if not f.options]
        if exact:
            return f" {wanted} comes from a plugin that failed to load: {exact[0]}"
        if unknown:
            return " Plugins that failed to load, which may provide it: " + " ".join(map(str, unknown))
        return ""

    def register_with_hydra(self) -> None:
        """Put each option's schema in Hydra's ConfigStore and the plugins' YAML folders on
        Hydra's search path."""
        from hydra.core.config_store import ConfigStore
        from hydra.core.plugins import Plugins
        from hydra.plugins.search_path_plugin import SearchPathPlugin

        from .config import register_schema

        register_schema()
        store = ConfigStore.instance()
        for group, options in self.options.items():
            for name, provided in options.items():
                # callbacks=[a,b] selects several: each option lands under callbacks.<name>
                package = f"{CALLBACKS}.{name}" if group == CALLBACKS else None
                store.store(group=group, name=name, node=provided.node or _config_node(provided.component),
                            provider=provided.plugin.name, package=package)
        # Selected by ``override hydra/help: orchestrator`` (or ``hydra/help=orchestrator``).
        store.store(group="hydra/help", name="orchestrator", node=self.help_config(), provider=PROJECT)
        paths = list(self.search_paths)

        class PluginSearchPath(SearchPathPlugin):
            def manipulate_search_path(self, search_path) -> None:
                for path in paths:
                    search_path.append(provider="orchestrator-plugin", path=_as_search_path(path))

        Plugins.instance().register(PluginSearchPath)

    def help_config(self) -> dict:
        """Hydra's ``hydra/help`` node for ``--help``: Hydra's own layout (the groups and the
        composed config) with a section listing every plugin option and its description."""
        width = max([len(f"{g}={n}") for g, options in self.options.items() for n in options] or [0])
        lines = []
        for group, options in self.options.items():
            for name in sorted(options):
                provided = options[name]
                text = " ".join(str(provided.component.description or "").split())
                lines.append(f"{f'{group}={name}':<{width}}  {text} [{provided.plugin.name}]".rstrip())
        failed = ", ".join(f.plugin.name for f in self.failures)
        if failed:
            lines.append(f"Plugins that failed to load and were skipped: {failed} "
                         "(orchestrator plugins says why).")
        options = _escape_help("\n".join(lines))
        return {
            "app_name": PROJECT,
            "header": "${hydra.help.app_name}: train the models that plugins provide with PyTorch "
                      "Lightning, and track every run in MLflow.\n"
                      "Usage: python -m orchestrator [group=option ...] [key=value ...] "
                      "[-m for a sweep]; `orchestrator plugins` lists what is installed; "
                      "`orchestrator rerun <run id>` recreates a recorded run; `orchestrator sweep close` closes "
                      "runs a dead process left RUNNING; `orchestrator sweep resume <parent run id>` runs "
                      "a sweep's unfinished jobs; several callbacks: "
                      "callbacks=[early_stopping,model_checkpoint].\n",
            "footer": "Powered by Hydra (https://hydra.cc)\nUse --hydra-help to view Hydra specific help\n",
            "template": "${hydra.help.header}\n"
                        "== Configuration groups ==\n"
                        "Compose your configuration from those groups (group=option)\n\n"
                        "$APP_CONFIG_GROUPS\n\n"
                        "== Plugin options ==\n"
                        f"{options}\n\n"
                        "== Config ==\n"
                        "Override anything in the config (foo.bar=value)\n\n"
                        "$CONFIG\n\n"
                        "${hydra.help.footer}\n",
        }


def _escape_help(text: str) -> str:
    """Plugin text inside Hydra's help template: ``$`` doubled for ``string.Template``, then
    ``${`` escaped for OmegaConf, which resolves the template first."""
    return text.replace("$", "$$").replace("${", "\\${")


#: Option names a user can type as ``group=name`` and Hydra reads as a name.
_OPTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
#: Fields of a schema that orchestrator or Hydra give a meaning of their own.
_RESERVED_FIELDS = ("_name_", "defaults")


def _is_value(name: str) -> bool:
    """Whether Hydra reads ``name`` as a number, a bool or null instead of a name."""
    if name.lower() in ("null", "true", "false"):
        return True
    try:
        float(name)
    except ValueError:
        return False
    return True


def _checked_node(component: Component) -> type:
    """The option's config node (``_config_node``), read by OmegaConf as Hydra will read it,
    with every default checked against its type and its rules; ``_Refused`` if anything fails.
    Cheap: OmegaConf and the plugin's dataclasses only, nothing the builders import."""
    from omegaconf import OmegaConf

    from .schema import validate

    group, name, schema = component.group, component.name, component.schema
    option = f"{group}={name}"
    if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name) or _is_value(name):
        raise _Refused(f"provides a {group} option named {name!r}, which cannot be chosen as "
                       f"{group}=<name>.", "Name it with letters, digits, '_', '-' and '.' only.")
    if not callable(component.build):
        raise _Refused(f"provides {option} whose build is {component.build!r}, not a function.",
                       f"Pass the function that builds the {group} as build.")
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise _Refused(f"provides {option} with schema {schema!r}, which is not a dataclass.",
                       "Pass a class decorated with @dataclasses.dataclass as schema.")
    where = schema.__name__
    if isinstance(component, Model):
        for attr, allowed in (("inputs", INPUT_KINDS), ("tasks", TASKS)):
            value = getattr(component, attr)
            if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value \
                    or not all(isinstance(v, str) and v in allowed for v in value):
                raise _Refused(f"provides {option} with {attr}={value!r}.",
                               f"Use a non-empty tuple of: {', '.join(allowed)}.")
        if component.default_data is not None and not isinstance(component.default_data, str):
            raise _Refused(f"provides {option} with default_data={component.default_data!r}.",
                           "Use the name of a data option, or None.")
    for f in dataclasses.fields(schema):
        if f.name in _RESERVED_FIELDS:
            raise _Refused(f"provides {option} whose schema {where} has a field {f.name!r}, a name "
                           "orchestrator and Hydra reserve.", f"Rename {where}.{f.name}.")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Refused(f"provides {option} whose schema field {where}.{f.name} has no default.",
                           f"Give {where}.{f.name} a default (`{f.name}: <type> = <value>`, "
                           "check(<value>, ...) or field(default_factory=...)): every setting "
                           "of an option needs one.")
    try:
        node = _config_node(component)
        cfg = OmegaConf.structured(node)
    except Exception as error:  # OmegaConf's ValidationError, or the plugin's default_factory
        key = getattr(error, "full_key", None)
        raise _Refused(
            f"provides {option} whose schema OmegaConf cannot read: "
            f"{where}{'.' + key if key else ''}: {_one_line(error)}.",
            f"Make each default of {where} match its field's type (or fix the type); "
            "OmegaConf types the option's settings from the dataclass.",
        ) from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise _Refused(f"provides {option} whose schema field {where}.{missing[0]} is '???' "
                       "(MISSING).", f"Give {where}.{missing[0]} a real default.")
    try:
        validate(OmegaConf.to_object(cfg), group)
    except OrchestratorError as error:
        raise _Refused(f"provides {option} whose default breaks its own rule: {error}",
                       f"Change the default or the rule in {where}.") from None
    except Exception as error:  # the schema's own __post_init__, for one
        raise _Refused(f"provides {option} whose schema {where} cannot be built from its "
                       f"defaults: {_one_line(error)}.", f"Fix {where}.") from None
    return node


def _checked_search_paths(hook) -> list[str]:
    """What a plugin's ``config_search_paths`` returns, checked; ``_Refused`` if unusable."""
    try:
        returned = hook()
    except (Exception, SystemExit) as error:
        raise _Refused(f"failed in config_search_paths: {_one_line(error)}.",
                       "Fix config_search_paths in the plugin.") from None
    example = "Return a list such as ['pkg://my_package.conf'] (a package shipping YAML) or absolute folders."
    if returned is None:
        return []
    if isinstance(returned, (str, bytes)) or not isinstance(returned, (list, tuple)):
        raise _Refused(f"returned {returned!r} from config_search_paths, not a list.", example)
    for path in returned:
        if not isinstance(path, str) or not path.strip():
            raise _Refused(f"returned {path!r} in config_search_paths, not a path.", example)
        scheme, sep, rest = path.partition("://")
        if sep and scheme == "pkg":
            if not _package_exists(rest.replace("/", ".")):
                raise _Refused(f"returned {path!r} from config_search_paths, but there is no package "
                               f"{rest!r}.", "Ship the YAML folder as a package (package data) of the "
                               "plugin's distribution, or correct the name.")
        elif sep and scheme != "file":
            raise _Refused(f"returned {path!r} from config_search_paths: Hydra reads only pkg:// "
                           "and file:// paths.", example)
        else:
            folder = rest if sep else path
            if not os.path.isabs(folder):
                raise _Refused(f"returned {path!r} from config_search_paths, a relative path (it "
                               "would depend on the folder the command runs in).", example)
            if not os.path.isdir(folder):
                raise _Refused(f"returned {path!r} from config_search_paths, which is not a folder.",
                               "Return a folder that exists, or ship it as package data.")
    return list(returned)


def _package_exists(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return bool(name) and find_spec(name) is not None
    except Exception:  # a parent package that is missing or fails to import
        return False


def _as_search_path(path: str) -> str:
    return path if "://" in path else f"file://{os.path.abspath(path)}"


def _config_node(component: Component) -> type:
    """The schema, plus ``_name_`` (the option's name) and, for a model with a preferred data
    option, a defaults-list entry that selects it unless the user names ``data=``."""
    fields: list[tuple[str, Any, Any]] = [("_name_", str, field(default=component.name))]
    if isinstance(component, Model) and component.default_data:
        entry = [{"override /data@_global_.data": component.default_data}, "_self_"]
        fields.append(("defaults", List[Any], field(default_factory=lambda: list(entry))))
    return make_dataclass(component.schema.__name__, fields, bases=(component.schema,))


_catalog: Optional[Catalog] = None


def get_catalog() -> Catalog:
    """The process-wide catalogue, loaded on first use."""
    global _catalog
    if _catalog is None:
        _catalog = Catalog(*load_plugins())
    return _catalog
