"""Lightning glue, one concern a module; nothing else in orchestrator imports Lightning.

- :mod:`.module`: the one LightningModule (:class:`TrainingModule`) around any model plugin;
- :mod:`.data`: the splits as tensors, served by whole batches (:class:`TensorDataModule`);
- :mod:`.trainer`: the Trainer, built and checked before a run opens, and one run of it
  (:class:`Training`);
- :mod:`.distributed`: DDP on loopback only, the other ranks started and watched by rank zero;
- :mod:`.interrupt`: Ctrl-C and SIGTERM stop at a batch boundary with a checkpoint;
- :mod:`.logger`: metric points to the run, in batches.

Importing it changes no global state: warning filters apply inside a run only, and the DDP
strategy is Lightning's own DDP, whose process group is opened here first (loopback only).
"""

from .data import TensorBatches, TensorDataModule
from .distributed import RankFailed, worker_rank
from .module import TrainingDiverged, TrainingModule
from .trainer import Training

__all__ = [
    "RankFailed",
    "TensorBatches",
    "TensorDataModule",
    "Training",
    "TrainingDiverged",
    "TrainingModule",
    "worker_rank",
]
