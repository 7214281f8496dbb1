"""The data side: splits held as tensors, served by whole batches.

A ``DataLoader`` over a ``TensorDataset`` would collate every example on every step, which costs
more than the training itself for full-batch gradient descent; these index in-memory tensors by
whole batches instead, and move to the training device once.
"""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch

from ..datasets import Splits


class TensorBatches:
    """Iterates over ``(x, y)`` batches of in-memory tensors, reshuffled each epoch if asked.

    ``batch_size=None`` yields the whole set as one batch (full-batch gradient descent).
    """

    def __init__(self, x, y, batch_size: Optional[int], shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.x, self.y = x, y
        self.rank, self.world_size = rank, world_size
        # With several processes (DDP) each takes an equal, disjoint shard of every epoch's
        # order, and ``batch_size`` stays the global batch: each process steps on its share.
        self.shard = len(x) // world_size
        n = self.shard
        size = n if batch_size is None else -(-int(batch_size) // world_size)
        self.batch_size = max(1, min(size, n))
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)  # the same order on every rank

    def __len__(self) -> int:
        return -(-self.shard // self.batch_size)

    def __iter__(self):
        n, size = self.shard, self.batch_size
        if self.world_size == 1 and size >= n:
            yield self.x, self.y
            return
        order = torch.randperm(len(self.x), generator=self.generator) if self.shuffle else None
        if self.world_size > 1:
            order = (order if order is not None else torch.arange(len(self.x)))[self.rank :: self.world_size][:n]
        if order is not None:  # one copy an epoch, not an index copy (and a sync) every step
            order = order.to(self.x.device)
        for start in range(0, n, size):
            if order is None:
                yield self.x[start : start + size], self.y[start : start + size]
            else:
                index = order[start : start + size]
                yield self.x[index], self.y[index]


class TensorDataModule(pl.LightningDataModule):
    """Serves the splits of any data plugin as whole-batch tensors."""

    def __init__(self, splits: Splits, batch_size: Optional[int], seed: int):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.seed = seed
        as_target = splits.task_object.target_dtype()
        self.tensors = {
            stage: (
                torch.from_numpy(getattr(splits, f"x_{stage}")),
                torch.from_numpy(getattr(splits, f"y_{stage}")).to(as_target),
            )
            for stage in ("train", "val", "test")
        }

    def to(self, device) -> None:
        """Move every split to ``device`` once, instead of each batch at every step."""
        self.tensors = {k: (x.to(device), y.to(device)) for k, (x, y) in self.tensors.items()}

    def train_dataloader(self):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatches(*self.tensors["train"], self.batch_size, shuffle=True, seed=self.seed,
                             rank=rank, world_size=world)

    def test_dataloader(self):
        # In chunks, like validation: one batch of a large test split could exhaust a GPU.
        return TensorBatches(*self.tensors["test"], 8192, shuffle=False)
