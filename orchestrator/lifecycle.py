"""How a run ends: its final status, decided in one place from the exception that ended it.

Every place that ends a run (:func:`orchestrator.runner.run`, a sweep cut short, the command
line) asks :func:`final_status`; none decides ``KILLED`` or ``FAILED`` by itself. What a
tracker records about the error (:func:`describe`, :func:`report`) is shared here too, so that
every :class:`~orchestrator.tracking_api.Tracker` records an ended run the same way.

Importing this module is cheap: nothing beyond the standard library and :mod:`.errors`.
"""

from __future__ import annotations

import traceback
from typing import Optional, Union

from .errors import Interrupted

#: The run is being written to.
RUNNING = "RUNNING"
#: The run ended without an error.
FINISHED = "FINISHED"
#: The run ended with an error: bad input found late, a bug, a diverged loss, a failed DDP rank.
FAILED = "FAILED"
#: The run was stopped on purpose: Ctrl-C (``KeyboardInterrupt``) or SIGINT/SIGTERM during
#: training (:class:`orchestrator.errors.Interrupted`); it can be resumed from its checkpoint.
KILLED = "KILLED"

#: Exception types that mean "stopped on purpose", matched by type (subclasses included).
STOPPED_ON_PURPOSE = (KeyboardInterrupt, Interrupted)


def final_status(error: Optional[BaseException]) -> str:
    """``FINISHED`` when ``error`` is None, ``KILLED`` for ``KeyboardInterrupt`` and
    :class:`~orchestrator.errors.Interrupted`, ``FAILED`` for anything else (``SystemExit``
    included)."""
    if error is None:
        return FINISHED
    if isinstance(error, STOPPED_ON_PURPOSE):
        return KILLED
    return FAILED


def describe(error: Union[BaseException, str]) -> str:
    """One line for the run's ``error`` tag: ``"KeyError: 'a'"``, or the text as given."""
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"


def report(error: Union[BaseException, str]) -> str:
    """The full story for the run's ``error.txt``: the traceback, or the text as given."""
    if isinstance(error, str):
        return error if error.endswith("\n") else error + "\n"
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def flatten(config, prefix: str = "") -> dict[str, str]:
    """A run's params from its resolved config: ``{"model.hidden": "64", ...}`` from a nested
    dict or list."""
    items: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            items.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(config, (list, tuple)) and any(isinstance(v, (dict, list)) for v in config):
        for index, value in enumerate(config):
            items.update(flatten(value, f"{prefix}{index}."))
    else:
        items[prefix[:-1]] = str(config)
    return items
