"""The sweeper's config, registered with Hydra when it scans its plugins (no Optuna import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "orchestrator"


@dataclass
class TPESamplerConfig:
    """optuna.samplers.TPESampler: a model of good and bad regions after n_startup_trials random ones."""

    _target_: str = "optuna.samplers.TPESampler"
    #: Seeds the sampler: the same seed asks for the same trials.
    seed: Optional[int] = None
    #: Random trials before the model takes over.
    n_startup_trials: int = 10
    #: Candidates drawn to pick each trial from.
    n_ei_candidates: int = 24
    #: Model the parameters jointly rather than one by one.
    multivariate: bool = False
    #: With several trials running at once, treat the running ones as bad (avoids asking twice).
    constant_liar: bool = False


@dataclass
class RandomSamplerConfig:
    """optuna.samplers.RandomSampler: independent random draws."""

    _target_: str = "optuna.samplers.RandomSampler"
    #: Seeds the sampler.
    seed: Optional[int] = None


@dataclass
class NSGAIISamplerConfig:
    """optuna.samplers.NSGAIISampler: a genetic algorithm for several objectives."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    #: Seeds the sampler.
    seed: Optional[int] = None
    #: Trials per generation.
    population_size: int = 50


@dataclass
class GridSamplerConfig:
    """optuna.samplers.GridSampler: every combination of choice(...) and range(...) values, once."""

    _target_: str = "optuna.samplers.GridSampler"
    #: The grid is built from hydra.sweeper.params when the search starts.
    _partial_: bool = True
    #: Seeds the order the grid is walked in.
    seed: Optional[int] = None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.orchestrator_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    #: The sampler that picks each trial's parameters (hydra/sweeper/sampler=tpe|random|nsgaii|grid).
    sampler: Any = MISSING
    #: minimize or maximize; a list, one per metric, with several metrics (sweep.metric=[a,b]).
    direction: Any = "minimize"
    #: The study's name in its storage (sweep.storage); null: the hparams_search preset's name.
    study_name: Optional[str] = None
    #: Trials the study holds when the search ends, counting those an earlier run of the same
    #: command ended (finished, pruned or failed).
    n_trials: int = 20
    #: Trials run at once, each started as soon as one ends (needs a launcher that runs jobs in
    #: other processes, such as hydra/launcher=joblib; the basic launcher runs one at a time).
    n_jobs: int = 1
    #: Stop asking for trials when more than this fraction of this run's trials failed.
    max_failure_rate: float = 0.0
    #: The search space: key -> choice(...), range(...), interval(...), tag(log, interval(...)) or a value.
    params: Optional[Dict[str, str]] = None
    #: Arguments of the pruner that sweep.pruner names (median: n_startup_trials, n_warmup_steps;
    #: hyperband: min_resource, max_resource, reduction_factor).
    pruner_kwargs: Dict[str, Any] = field(default_factory=dict)
    #: Not read: the study's database is sweep.storage (a value here is refused, naming it).
    storage: Optional[str] = None


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider=PROVIDER)
    for name, node in (("tpe", TPESamplerConfig), ("random", RandomSamplerConfig),
                       ("nsgaii", NSGAIISamplerConfig), ("grid", GridSamplerConfig)):
        store.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)


# Hydra reads the config store of the modules it scans in hydra_plugins: registering here, on
# import, is how a Hydra plugin offers its config (as Hydra's own launchers and sweepers do).
register()
