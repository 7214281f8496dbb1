"""Which process this is under DDP: read from the environment, without importing torch."""

from __future__ import annotations

import os


def worker_rank() -> bool:
    """True in the processes started for ranks other than zero: they train but neither open
    nor write runs."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0
