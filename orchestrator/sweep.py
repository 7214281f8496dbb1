"""Sweep glue: a Hydra callback that tells plugins when a multirun sweep starts and ends."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepHooks(Callback):
    """Calls the ``on_sweep_start`` and ``on_sweep_end`` hooks in the launching process."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._call("on_sweep_start", config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._call("on_sweep_end", config)

    @staticmethod
    def _call(hook: str, config: DictConfig) -> None:
        from .plugins import get_catalog

        getattr(get_catalog().pm.hook, hook)(
            sweep_dir=str(config.hydra.sweep.dir), overrides=list(config.hydra.overrides.task)
        )
