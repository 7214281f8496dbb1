"""``orchestrator plugins``: what is installed, without importing torch."""

from __future__ import annotations

import sys

from .components import CALLBACKS, GROUPS
from .plugins import Catalog

USAGE = """usage: orchestrator plugins [--help]

List every installed orchestrator plugin: its distribution and version, its hooks and the
options it provides, and each plugin that failed to load, with the reason and the fix."""


def list_plugins(catalog: Catalog, seconds: float) -> str:
    """What ``orchestrator plugins`` prints: each loaded plugin with its hooks, one line per
    option (``model=mlp: description``) and its config search path; then each plugin that
    failed to load, with the reason, the fix and the options it would have provided."""
    from . import __version__

    loaded = len(catalog.plugins)
    lines = [f"orchestrator {__version__}: {loaded} plugin{'s' if loaded != 1 else ''} loaded "
             f"in {seconds:.3f} s"]
    for info in catalog.plugins.values():
        lines.append("")
        lines.append(f"{info.name}  ({info.distribution} {info.version}, {info.module})")
        lines.append(f"  hooks: {', '.join(info.hooks) or 'none'}")
        for group in (*GROUPS, CALLBACKS):
            for name, provided in sorted(catalog.options[group].items()):
                if provided.plugin.name == info.name:
                    text = " ".join(str(provided.component.description or "").split())
                    lines.append(f"  {group}={name}" + (f": {text}" if text else ""))
        paths = catalog.plugin_search_paths.get(info.name)
        if paths:
            lines.append(f"  config search path: {', '.join(paths)}")
    if catalog.failures:
        failed = len(catalog.failures)
        lines.append("")
        lines.append(f"{failed} plugin{'s' if failed != 1 else ''} failed to load:")
        for failure in catalog.failures:
            lines.append(f"  FAILED {failure}")
            if failure.options:
                lines.append(f"    options skipped: {', '.join(failure.options)}")
        lines.append("Failed plugins are skipped; ORCHESTRATOR_STRICT_PLUGINS=1 makes them an error.")
    return "\n".join(lines)


def plugins_command(argv: list[str], catalog: Catalog, seconds: float) -> int:
    """Run ``orchestrator plugins ARGV``; return the exit status."""
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    if argv:
        print(f"Error: orchestrator plugins takes no arguments, got {' '.join(argv)!r}.\n{USAGE}",
              file=sys.stderr)
        return 2
    print(list_plugins(catalog, seconds))
    return 0
