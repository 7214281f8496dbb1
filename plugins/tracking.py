"""The built-in tracker: runs recorded in MLflow (``orchestrator.tracking``).

Registered as ``builtin.tracking`` through the same entry-point group as every plugin. The
framework records runs only through the :class:`orchestrator.tracking_api.Tracker` this hook
returns; a plugin registered after it (any third-party one) that returns a tracker of its own
takes its place. MLflow is imported when the hook is called, not when this module is.
"""

from __future__ import annotations

from typing import Optional

from orchestrator import hookimpl


@hookimpl
def tracker(uri: Optional[str]):
    from orchestrator.tracking import MLflowTracker

    return MLflowTracker(uri)
