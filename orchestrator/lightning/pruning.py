"""Optuna pruning: the metric reported to the job's trial every epoch, training stopped when
the study's pruner says so (``sweep.pruner=median|hyperband``).

The trial is reached through the study's storage (``optuna.load_study`` and the trial's id), so
the callback works wherever the job runs: in the sweeping process (the basic launcher) or in
another one (joblib, submitit). A pruned trial sets the attribute
:data:`orchestrator.optuna_search.PRUNED_AT`; the sweeper then tells the study PRUNED.
"""

from __future__ import annotations

from typing import Any, Optional

from pytorch_lightning import Callback


class OptunaPruning(Callback):
    """Report ``metric`` (null: val/accuracy where the run publishes it, else val/loss) at the
    end of each epoch; stop training (``trainer.should_stop``) when the trial should be pruned."""

    def __init__(self, trial: dict[str, Any]) -> None:
        self.info = trial
        self.trial = None
        #: The epoch after which training was stopped, or None.
        self.pruned_at: Optional[int] = None

    def on_fit_start(self, trainer, pl_module) -> None:
        import optuna

        from orchestrator.optuna_search import build_pruner, open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = open_storage(self.info["storage"])
        study = optuna.load_study(study_name=self.info["study_name"], storage=self.storage,
                                  pruner=build_pruner(self.info["pruner"], self.info.get("pruner_kwargs") or {}))
        self.trial = optuna.trial.Trial(study, int(self.info["trial_id"]))

    def teardown(self, trainer, pl_module, stage) -> None:
        """Close the storage's connections: under the basic launcher every trial runs in the
        sweeping process, which would otherwise keep one engine per trial."""
        engine = getattr(getattr(self, "storage", None), "engine", None)
        if engine is not None and stage == "fit":
            engine.dispose()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.trial is None or self.pruned_at is not None or trainer.sanity_checking:
            return
        found = trainer.callback_metrics
        metric = self.info.get("metric") or ("val/accuracy" if "val/accuracy" in found else "val/loss")
        if metric not in found:
            return
        epoch = int(trainer.current_epoch)
        self.trial.report(float(found[metric]), step=epoch)
        if self.trial.should_prune():
            from orchestrator.optuna_search import PRUNED_AT

            self.pruned_at = epoch
            self.trial.set_user_attr(PRUNED_AT, epoch)
            trainer.should_stop = True
