"""The plugin host: loads plugins through pluggy and turns their components into Hydra options.

Start-up runs, in order:

1. ``load_plugins()`` registers every entry point of the ``orchestrator`` group, the built-ins
   (this distribution's own entry points) first, then third-party distributions.
2. ``Catalog`` asks each plugin for its components (``register_components``) and merges them,
   refusing an option that two plugins provide.
3. ``Catalog.store_configs()`` puts each component's schema into Hydra's ``ConfigStore`` as an
   option of its group, so ``model=cnn model.hidden=32`` composes and type-checks.

Environment switches, in the spirit of pytest and datasette:

- ``ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-in plugins.
- ``ORCHESTRATOR_BLOCK_PLUGINS=name,name``: skip the named plugins (entry-point names).
"""

from __future__ import annotations

import os
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


@dataclass
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    distribution: str
    version: str
    module: str


@dataclass
class Provided:
    """A component together with the plugin that provided it."""

    component: Component
    plugin: PluginInfo

    @property
    def provenance(self) -> str:
        return f"{self.plugin.distribution}=={self.plugin.version}"


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def load_plugins() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """A plugin manager with every installed plugin registered, and where each came from."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    autoload = os.environ.get("ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    blocked = _env_list("ORCHESTRATOR_BLOCK_PLUGINS")
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    # Built-ins first, then third parties, each in a stable order.
    entry_points.sort(key=lambda ep: (_dist_name(ep) != PROJECT, _dist_name(ep), ep.name))
    for ep in entry_points:
        builtin = _dist_name(ep) == PROJECT
        if ep.name in blocked or (not builtin and not autoload):
            continue
        if pm.has_plugin(ep.name):
            continue  # the same distribution found twice on sys.path
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
        infos[ep.name] = PluginInfo(
            name=ep.name,
            distribution=_dist_name(ep),
            version=ep.dist.version if ep.dist else "unknown",
            module=ep.value,
        )
    pm.check_pending()
    return pm, infos


def _dist_name(ep) -> str:
    return ep.dist.metadata["Name"] if ep.dist else "unknown"


class Catalog:
    """Every option of every group, by name, with the plugin that provides it."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]):
        self.pm = pm
        self.plugins = infos
        self.options: dict[str, dict[str, Provided]] = {group: {} for group in GROUPS}
        for impl in pm.hook.register_components.get_hookimpls():
            info = infos.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "unknown", "", "")
            for component in impl.function() or []:
                self._add(component, info)

    def _add(self, component: Component, info: PluginInfo) -> None:
        if not isinstance(component, Component) or component.group not in self.options:
            raise OrchestratorError(
                f"Plugin {info.name!r} ({info.distribution}) returned {component!r} from "
                "register_components; expected orchestrator.Model, Optimizer, Regularizer or Data."
            )
        existing = self.options[component.group].get(component.name)
        if existing is not None:
            raise OrchestratorError(
                f"Option {component.group}={component.name} is provided twice: by plugin "
                f"{existing.plugin.name!r} ({existing.provenance}) and by plugin {info.name!r} "
                f"({info.distribution}=={info.version}). Uninstall one of them, or block one "
                f"with ORCHESTRATOR_BLOCK_PLUGINS={info.name}."
            )
        self.options[component.group][component.name] = Provided(component, info)

    def get(self, group: str, name: str) -> Provided:
        """The option ``name`` of ``group``; a clear error naming the choices if it is unknown."""
        options = self.options[group]
        if name not in options:
            raise OrchestratorError(
                f"Unknown {group} {name!r}{closest(name, options)}. Available {group} options: "
                f"{', '.join(sorted(options))}. Is the plugin that provides it installed?"
            )
        return options[name]

    def store_configs(self) -> None:
        """Register each option's schema with Hydra's ConfigStore under its group."""
        from hydra.core.config_store import ConfigStore

        store = ConfigStore.instance()
        for group, options in self.options.items():
            for name, provided in options.items():
                store.store(
                    group=group,
                    name=name,
                    node=_config_node(provided.component),
                    provider=provided.plugin.name,
                )


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
