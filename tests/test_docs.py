"""Every hook is documented for plugin authors."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from orchestrator import hookspecs

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-plugin.md"
HOOKS = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(f, "orchestrator_spec")]


def test_there_are_hooks():
    assert "register_components" in HOOKS and len(HOOKS) >= 6


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_and_a_section_in_the_guide(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"
    sections = [line for line in GUIDE.read_text().splitlines() if line.startswith("### ")]
    assert any(f"`{hook}(" in line for line in sections), f"{hook} is not described in {GUIDE.name}"
