"""Built-in callbacks, chosen several at once: ``callbacks=[early_stopping,model_checkpoint]``.

Each is Lightning's own callback (built in ``orchestrator.lightning.callbacks``, imported only
when a run builds it), with typed settings: ``callbacks.early_stopping.patience=5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator import Callback, check, hookimpl


@dataclass
class EarlyStoppingConfig:
    #: The metric watched after each epoch; null: val/loss (regression), val/accuracy (classification).
    monitor: Optional[str] = None
    #: min or max; null: max for accuracy, f1 and r2, min otherwise.
    mode: Optional[str] = check(None, choices=("min", "max"))
    #: Epochs without improvement before training stops.
    patience: int = check(5, ge=0)
    #: Smallest change that counts as an improvement.
    min_delta: float = check(0.0, ge=0)


@dataclass
class ModelCheckpointConfig:
    #: The metric that ranks checkpoints; null: val/loss (regression), val/accuracy (classification).
    monitor: Optional[str] = None
    #: min or max; null: max for accuracy, f1 and r2, min otherwise.
    mode: Optional[str] = check(None, choices=("min", "max"))
    #: How many of the best checkpoints to keep (the best is logged to the run).
    save_top_k: int = check(1, ge=1)
    #: Epochs between two checks.
    every_n_epochs: int = check(1, ge=1)


@dataclass
class LRMonitorConfig:
    #: epoch or step: how often Lightning's LearningRateMonitor logs lr-<optimizer>.
    logging_interval: str = check("epoch", choices=("epoch", "step"))


@dataclass
class SWAConfig:
    #: The learning rate of the averaging phase.
    swa_lr: float = check(0.01, gt=0)
    #: Epoch (an integer) or fraction of max_epochs (a float below 1) where averaging starts.
    swa_epoch_start: float = check(0.8, gt=0)
    #: Epochs of annealing to swa_lr.
    annealing_epochs: int = check(2, ge=1)


def _lightning(name):
    def build(cfg):
        from orchestrator.lightning import callbacks

        return getattr(callbacks, name)(cfg)

    return build


@hookimpl
def register_components():
    return [
        Callback("early_stopping", EarlyStoppingConfig, _lightning("early_stopping"),
                 "Stop when the monitored metric stops improving (Lightning's EarlyStopping)."),
        Callback("model_checkpoint", ModelCheckpointConfig, _lightning("model_checkpoint"),
                 "Keep the best checkpoint; the run tests and logs the best model (Lightning's ModelCheckpoint)."),
        Callback("lr_monitor", LRMonitorConfig, _lightning("lr_monitor"),
                 "Log the learning rate as lr-<optimizer> (Lightning's LearningRateMonitor)."),
        Callback("swa", SWAConfig, _lightning("swa"),
                 "Stochastic weight averaging over the last epochs (Lightning's StochasticWeightAveraging)."),
    ]
