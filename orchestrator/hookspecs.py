"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions named like the hooks below, each marked with
``@orchestrator.hookimpl``. It is found through the ``orchestrator`` entry-point group of an
installed distribution::

    [project.entry-points.orchestrator]
    my_plugin = "my_package.plugin"

The built-in plugins (``plugins/`` in this repository) are registered exactly this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - import for annotations only
    from .components import Component

hookspec = pluggy.HookspecMarker("orchestrator")


# --------------------------------------------------------------------------------------------
# Registration: called once at start-up, before Hydra composes the config.
# --------------------------------------------------------------------------------------------


@hookspec
def register_components() -> list[Component]:
    """Return the components this plugin provides.

    Each item is a :class:`orchestrator.Model`, :class:`orchestrator.Optimizer`,
    :class:`orchestrator.Regularizer` or :class:`orchestrator.Data`. Its ``name`` becomes an
    option of the matching config group (``model=<name>``) and its ``schema`` (a dataclass whose
    fields all have defaults) becomes that option's config node, so ``model.<field>=...`` works
    on the command line with type checking. No YAML file is needed.

    Two plugins that provide the same option of the same group are an error that names both.
    """
