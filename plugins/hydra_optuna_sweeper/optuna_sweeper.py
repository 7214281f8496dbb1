"""The sweeper class Hydra instantiates from ``hydra.sweeper``; the search itself is
:class:`orchestrator.optuna_search.OptunaSearch`, imported when a sweep starts."""

from __future__ import annotations

from typing import Any, List, Optional

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class OptunaSweeper(Sweeper):
    """Asks Optuna for trials and runs each as one job of Hydra's launcher."""

    def __init__(self, sampler: Any = None, **settings: Any) -> None:
        self.sampler = sampler  # instantiated by Hydra (an Optuna sampler, or a partial of one)
        self.settings = OmegaConf.create(settings)
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: List[str]) -> None:
        from orchestrator.errors import OrchestratorError
        from orchestrator.optuna_search import OptunaSearch

        assert self.config is not None and self.launcher is not None
        try:
            OptunaSearch(self.sampler, self.settings, self.config, self.launcher).run(list(arguments))
        except OrchestratorError as error:
            import sys

            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(2) from error
