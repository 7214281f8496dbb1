"""The built-in side of Optuna searches: each job of ``hydra/sweeper=optuna`` finds its trial.

Registered as ``builtin.optuna``. In a job of an Optuna search (:func:`orchestrator.optuna_search.trial_of`)
the run is tagged with its study and trial; with ``sweep.pruner`` set, the pruning callback
(:mod:`orchestrator.lightning.pruning`) reports the metric to the trial every epoch and stops
training when Optuna says so, and the run, FINISHED, is tagged ``pruned=true``. Outside a
search these hooks do nothing; neither Optuna nor Lightning is imported until a trial needs them.
"""

from __future__ import annotations

from typing import Any, Optional

from orchestrator import hookimpl

#: The pruning callback of the run in progress in this process (one run at a time per process).
_active: dict[str, Any] = {}


@hookimpl
def add_callbacks(cfg) -> list:
    from orchestrator.optuna_search import trial_of

    _active.clear()
    trial = trial_of()
    if trial is None or trial.get("pruner", "none") == "none":
        return []
    from orchestrator.lightning.pruning import OptunaPruning

    callback = OptunaPruning(trial)
    _active["callback"] = callback
    return [callback]


@hookimpl
def on_run_start(run, cfg) -> None:
    from orchestrator.optuna_search import trial_of

    trial = trial_of()
    if trial is not None:
        run.set_tags({"optuna.study_name": trial["study_name"], "optuna.trial": str(trial["trial_number"])})


@hookimpl
def on_run_end(run, cfg, status: str, metrics: dict, error: Optional[BaseException]) -> None:
    callback = _active.pop("callback", None)
    if callback is not None and callback.pruned_at is not None:
        run.set_tags({"pruned": "true", "pruned_at_epoch": str(callback.pruned_at)})
