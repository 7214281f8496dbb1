"""Lightning's own callbacks, built from the settings of the ``callbacks`` group.

Validation runs inside the training epoch here (there is no Lightning validation loop), so the
callbacks that watch a metric check it at the end of each training epoch: Lightning calls them
after the module has published that epoch's ``val/*`` metrics.
"""

from __future__ import annotations

from pytorch_lightning import callbacks as pl_callbacks


def early_stopping(cfg):
    return pl_callbacks.EarlyStopping(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience,
                                      min_delta=cfg.min_delta, check_on_train_epoch_end=True)


class BestCheckpoint(pl_callbacks.ModelCheckpoint):
    """ModelCheckpoint that keeps the best checkpoints by the monitored metric, saved at the end
    of each training epoch; the run logs the best one and tests and logs the best model."""


def model_checkpoint(cfg):
    return BestCheckpoint(monitor=cfg.monitor, mode=cfg.mode, save_top_k=cfg.save_top_k,
                          every_n_epochs=cfg.every_n_epochs, save_on_train_epoch_end=True,
                          filename="best-epoch{epoch}", auto_insert_metric_name=False)


def lr_monitor(cfg):
    return pl_callbacks.LearningRateMonitor(logging_interval=cfg.logging_interval)


def swa(cfg):
    return pl_callbacks.StochasticWeightAveraging(swa_lrs=cfg.swa_lr, swa_epoch_start=cfg.swa_epoch_start,
                                                  annealing_epochs=cfg.annealing_epochs)
