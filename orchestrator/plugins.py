"""The plugin host: loads plugins through pluggy and turns their components into Hydra options.

Start-up runs, in order:

1. ``load_plugins()`` registers every entry point of the ``orchestrator`` group, the built-ins
   (this distribution's own entry points) first, then third-party distributions. A plugin that
   cannot be imported or implements a hook that does not exist is reported and skipped.
2. ``Catalog`` asks each plugin for its components (``register_components``) and merges them.
   A plugin whose components cannot be read, or that provides an option another plugin already
   provides, is reported and skipped as a whole.
3. ``Catalog.register_with_hydra()`` puts each component's schema into Hydra's ``ConfigStore``
   as an option of its group, and adds the plugins' YAML folders to Hydra's search path.

Environment switches, in the spirit of pytest and datasette:

- ``ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-in plugins.
- ``ORCHESTRATOR_BLOCK_PLUGINS=name,name``: skip the named plugins (entry-point names).
- ``ORCHESTRATOR_STRICT_PLUGINS=1``: a plugin that fails to load is an error, not a warning.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, make_dataclass
from importlib import metadata
from typing import Any, List, Optional

import pluggy

from . import hookspecs
from .components import GROUPS, Component, Model
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
        except Exception as error:  # anything a broken import raises
            failures.append(PluginFailure(
                info, f"cannot be imported: {type(error).__name__}: {error}.",
                f"Fix the module or reinstall {info.distribution}. {_skip_hint(info.name)}",
            ))
            continue
        try:
            pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as error:
            failures.append(PluginFailure(
                info, f"has a hook with a wrong signature: {error}.",
                f"Match the hook's arguments in orchestrator/hookspecs.py. {_skip_hint(info.name)}",
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
    """Every option of every group, by name, with the plugin that provides it."""

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
        self.options: dict[str, dict[str, Provided]] = {group: {} for group in GROUPS}
        self.search_paths: list[str] = []
        for impl in pm.hook.register_components.get_hookimpls():
            info = infos.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "unknown", "?", "?")
            problem = self._add_plugin(impl.function, info)
            if problem is not None:
                self.failures.append(problem)
                pm.unregister(name=info.name)
                infos.pop(info.name, None)
        for paths in pm.hook.config_search_paths():
            self.search_paths.extend(paths or [])
        self.load_seconds = time.perf_counter() - start
        if (strict if strict is not None else _flag("ORCHESTRATOR_STRICT_PLUGINS")) and self.failures:
            raise OrchestratorError(
                "Plugins failed to load (ORCHESTRATOR_STRICT_PLUGINS is set): "
                + " ".join(str(f) for f in self.failures)
            )

    def _add_plugin(self, register, info: PluginInfo) -> Optional[PluginFailure]:
        """Add all of a plugin's components, or none of them and say why."""
        try:
            components = list(register() or [])
        except Exception as error:
            return PluginFailure(
                info, f"failed in register_components: {type(error).__name__}: {error}.",
                f"Fix the plugin or reinstall {info.distribution}. {_skip_hint(info.name)}",
            )
        options = [f"{getattr(c, 'group', '?')}={getattr(c, 'name', '?')}" for c in components]
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
        seen = set()
        for component in components:
            key = (component.group, component.name)
            if key in seen:
                return PluginFailure(info, f"provides {component.group}={component.name} twice.",
                                     "Give each option its own name.", options)
            seen.add(key)
        for component in components:
            self.options[component.group][component.name] = Provided(component, info)
        return None

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
                store.store(group=group, name=name, node=_config_node(provided.component),
                            provider=provided.plugin.name)
        paths = list(self.search_paths)

        class PluginSearchPath(SearchPathPlugin):
            def manipulate_search_path(self, search_path) -> None:
                for path in paths:
                    search_path.append(provider="orchestrator-plugin", path=_as_search_path(path))

        Plugins.instance().register(PluginSearchPath)


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
