"""Lightning glue, one concern a module; nothing else in orchestrator imports Lightning.

- :mod:`.module`: the one LightningModule (:class:`TrainingModule`) around any model plugin;
- :mod:`.data`: the splits as tensors, served by whole batches (:class:`TensorDataModule`);
- :mod:`.trainer`: the Trainer, built and checked before a run opens, and one run of it
  (:class:`Training`);
- :mod:`.distributed`: DDP on loopback only, the other ranks started and watched by rank zero;
- :mod:`.ranks`: which rank this process is, from the environment (no torch);
- :mod:`.callbacks`: Lightning's own callbacks, built from the ``callbacks`` group's settings;
- :mod:`.interrupt`: Ctrl-C and SIGTERM stop at a batch boundary with a checkpoint;
- :mod:`.logger`: metric points to the run, in batches.

Importing it changes no global state: warning filters apply inside a run only, and the DDP
strategy is Lightning's own DDP, whose process group is opened here first (loopback only).
"""

from __future__ import annotations

import importlib
from typing import Any

#: What the package offers, and the module that holds it: imported on first use, so that
#: ``orchestrator.lightning.ranks`` (no torch) costs nothing to import.
_EXPORTS = {
    "RankFailed": ".distributed",
    "TensorBatches": ".data",
    "TensorDataModule": ".data",
    "Training": ".trainer",
    "TrainingDiverged": ".module",
    "TrainingModule": ".module",
    "worker_rank": ".ranks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
