"""``orchestrator plugins``: what is installed, without importing torch."""

from __future__ import annotations

import sys

from .components import GROUPS
from .plugins import Catalog

USAGE = """usage: orchestrator plugins [--help]

List every installed orchestrator plugin: its distribution and version, its hooks and the
options it provides, and each plugin that failed to load, with the reason and the fix."""


def list_plugins(catalog: Catalog, seconds: float) -> str:
    """What ``orchestrator plugins`` prints."""
    from . import __version__

    lines = [f"orchestrator {__version__}: {len(catalog.plugins)} plugins loaded in {seconds:.3f} s"]
    for info in catalog.plugins.values():
        lines.append("")
        lines.append(f"{info.name}  ({info.distribution} {info.version}, {info.module})")
        lines.append(f"  hooks: {', '.join(info.hooks) or 'none'}")
        for group in GROUPS:
            names = [n for n, p in catalog.options[group].items() if p.plugin.name == info.name]
            if names:
                lines.append(f"  {group}: {', '.join(sorted(names))}")
    if catalog.search_paths:
        lines.append("")
        lines.append(f"config search path: {', '.join(catalog.search_paths)}")
    if catalog.failures:
        lines.append("")
        lines.append(f"{len(catalog.failures)} plugins failed to load:")
        lines.extend(f"  {failure}" for failure in catalog.failures)
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
