"""Ctrl-C and SIGTERM: stop at the next batch boundary with a checkpoint to resume from."""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..errors import Interrupted


class CheckpointOnInterrupt(pl.Callback):
    """Stops training at the next batch boundary after SIGINT or SIGTERM, and writes
    ``last.ckpt`` then, so the run can be resumed.

    The signal handler only notes the signal: raising from inside it could cut an MLflow write
    or a checkpoint in half. A second signal stops at once.
    """

    def __init__(self, path: str):
        self.path = path
        self.saved = False
        self.pending: Optional[int] = None

    def handle(self, signum, frame):
        if self.pending is not None:
            raise Interrupted(signum)
        self.pending = signum

    def _stop_if_asked(self):
        if self.pending is not None:
            raise Interrupted(self.pending)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._stop_if_asked()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stop_if_asked()

    def on_exception(self, trainer, pl_module, exception):
        # Lightning's own SIGTERM handling stops at a safe point with SIGTERMException.
        if isinstance(exception, (Interrupted, SIGTERMException)):
            trainer.save_checkpoint(self.path)
            self.saved = True
