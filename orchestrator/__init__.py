"""orchestrator: plugin-based experiment orchestration for deep learning.

Plugin authors need only what is exported here::

    from orchestrator import Model, hookimpl

(``Tracker``, ``TrackedRun`` and ``RunRecord`` are the record-keeping interface a ``tracker``
hook returns and ``on_run_start``/``on_run_end`` receive.)

Importing this package is cheap: it does not import torch, Lightning or MLflow.
"""

from .components import (
    Component,
    Data,
    DataConfig,
    Dataset,
    Model,
    Optimizer,
    Regularizer,
    Scheduler,
    Callback,
)
from .errors import OrchestratorError
from .plugins import hookimpl
from .schema import check
from .tracking_api import RunRecord, TrackedRun, Tracker



def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("orchestrator")  # pyproject.toml is the one place it is set
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "Component",
    "Data",
    "DataConfig",
    "Dataset",
    "Model",
    "Optimizer",
    "OrchestratorError",
    "Regularizer",
    "Scheduler",
    "Callback",
    "RunRecord",
    "TrackedRun",
    "Tracker",
    "check",
    "hookimpl",
    "run",
]


def run(cfg):
    """Train once with a composed config; see :func:`orchestrator.runner.run`."""
    from .runner import run as _run

    return _run(cfg)
