"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions named like the hooks below, each marked with
``@orchestrator.hookimpl``. It is found through the ``orchestrator`` entry-point group of an
installed distribution::

    [project.entry-points.orchestrator]
    my_plugin = "my_package.plugin"

The built-in plugins (``plugins/`` in this repository) are registered exactly this way. A hook
may take any subset of the arguments its specification names, in any order. A plugin that
implements a function whose name matches no hook here is refused (a misspelling, most likely).

Every hook documented here must also be described in ``docs/writing-a-plugin.md``; a test checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from omegaconf import DictConfig

    from .components import Component
    from .tracking_api import Tracker, TrackedRun

hookspec = pluggy.HookspecMarker("orchestrator")


# --------------------------------------------------------------------------------------------
# Start-up: called once, before Hydra composes the config. Keep them cheap: `orchestrator
# plugins` and `--help` call them, and they must not import torch.
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


@hookspec
def config_search_paths() -> list[str]:
    """Return places holding YAML config files to add to Hydra's search path.

    Each is ``"pkg://my_package.conf"`` (a package shipping the files) or an absolute directory.
    Files there are used like ``conf/``: ``<group>/<name>.yaml`` adds a preset option to a
    group (for example ``experiment/mlp_moons.yaml``, or ``model/mlp_wide.yaml`` that sets
    ``_name_: mlp`` and other values).
    """


# --------------------------------------------------------------------------------------------
# One run: called by ``orchestrator.run(cfg)`` in the process that trains.
# --------------------------------------------------------------------------------------------


@hookspec
def add_callbacks(cfg: DictConfig) -> list[Any]:
    """Return ``pytorch_lightning.Callback`` instances to add to the trainer of this run.

    ``cfg`` is the run's composed config. Import Lightning inside the hook, not at module level,
    so that listing plugins stays fast.
    """


@hookspec
def on_run_start(run: TrackedRun, cfg: DictConfig) -> None:
    """The run is open and its config logged; training is about to begin.

    ``run`` is a :class:`orchestrator.tracking_api.TrackedRun`: it offers ``run_id``,
    ``set_tags(dict)``, ``log_params(dict)``, ``log_text(text, name)``, ``log_artifact(path,
    folder=None)``, ``log_metrics(dict, step)`` and ``log_figure(figure, name)``, whatever
    tracker records the run.
    """


@hookspec
def on_run_end(
    run: TrackedRun, cfg: DictConfig, status: str, metrics: dict[str, float], error: Optional[BaseException]
) -> None:
    """Training ended; the run is still open, so tags, params and artifacts may be added.

    ``run`` is the same :class:`orchestrator.tracking_api.TrackedRun` as in ``on_run_start``.
    ``status`` is the status the run is about to end with,
    :func:`orchestrator.lifecycle.final_status` of ``error``: ``"FINISHED"``, ``"FAILED"`` or
    ``"KILLED"``; ``metrics`` holds the final train, val and test metrics (empty if training
    failed early); ``error`` is the exception that ended the run, or ``None``.
    """


# --------------------------------------------------------------------------------------------
# Record keeping: called in every process that records runs.
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def tracker(uri: Optional[str]) -> Optional[Tracker]:
    """Return the :class:`orchestrator.tracking_api.Tracker` that records runs in the store at
    ``uri`` (the config's ``tracking.uri``; ``None``: the tracker's own default), or ``None`` to
    leave it to another plugin.

    The first answer that is not ``None`` is used; plugins are asked in the reverse order of
    registration, so a third-party plugin's tracker takes the place of the built-in one
    (``builtin.tracking``: MLflow). Called when a run or a sweep's parent run is opened, before
    training; import your store's client inside the hook.
    """


# --------------------------------------------------------------------------------------------
# Sweeps: called in the launching process of ``python -m orchestrator -m ...``.
# --------------------------------------------------------------------------------------------


@hookspec
def on_sweep_start(sweep_dir: str, overrides: list[str]) -> None:
    """A multirun sweep is about to launch its jobs. ``sweep_dir`` is Hydra's sweep output
    directory; ``overrides`` the sweep's command-line overrides."""


@hookspec
def on_sweep_end(sweep_dir: str, overrides: list[str]) -> None:
    """Every job of a multirun sweep has ended (finished or failed)."""
