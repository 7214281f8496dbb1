"""A Lightning callback contributed through the add_callbacks hook."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class EpochTimer(pl.Callback):
    """Logs the wall time of each training epoch as ``time/epoch_seconds``."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("time/epoch_seconds", time.perf_counter() - self._start, on_epoch=True)
