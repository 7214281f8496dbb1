"""The typed schema of the primary config (``conf/config.yaml``): top-level keys, tracking and
sweep settings. Group options (model, optimizer, ...) are typed by their plugins' schemas;
``trainer`` holds Lightning ``Trainer`` arguments, checked against ``Trainer`` itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

from .schema import check

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from omegaconf import DictConfig

    from .plugins import Catalog


def compose(overrides: Sequence[str] = (), catalog: Optional["Catalog"] = None) -> "DictConfig":
    """The config ``python -m orchestrator OVERRIDES`` trains with, composed the way the command
    line composes it: the installed plugins' options registered with Hydra, the primary config
    from :func:`conf_dir`. For tests, benchmarks and ``orchestrator.testing``; the command line
    itself lets ``@hydra.main`` compose."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from .plugins import get_catalog

    (catalog or get_catalog()).register_with_hydra()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def conf_dir() -> Path:
    """The folder of the primary config: ``conf/`` in a checkout, installed as the package
    ``orchestrator.conf`` (so a wheel or ``pip install .`` carries it)."""
    from importlib import resources

    return Path(str(resources.files("orchestrator.conf")))


@dataclass
class TrackingConfig:
    #: MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else SQLite at ./mlruns/mlflow.db.
    uri: Optional[str] = None
    #: MLflow experiment that holds the runs.
    experiment: str = "orchestrator"
    #: Run name; None: <model>-<optimizer>-<regularizer>-<data>.
    run_name: Optional[str] = None
    #: Log the trained model (scaling + network + output link) in MLflow's PyTorch format.
    log_model: bool = True
    #: pickle (fast; loading needs the model's classes installed) or pt2 (torch.export).
    model_format: str = check("pickle", choices=("pickle", "pt2"))
    #: Log learning curves and a confusion matrix or predicted-vs-true plot.
    plots: bool = True
    #: Seconds between sends of buffered metric points to the store while training.
    flush_seconds: float = check(10.0, gt=0)
    #: Before each send of metric points while training, save a checkpoint and log it to the run
    #: (checkpoints/last.ckpt), so that resume=<run id> continues after a hard kill from no
    #: earlier than the last epoch the store records.
    checkpoints: bool = True


@dataclass
class SweepConfig:
    #: The metric that ranks a sweep's runs and that a job returns to a sweeper (Optuna); a list
    #: of metrics ([val/loss,time/fit_seconds]) makes an Optuna search multi-objective (the first
    #: one ranks the summary).
    metric: Any = None
    #: min or max; None: max for accuracy, f1 and r2, min otherwise.
    mode: Optional[str] = check(None, choices=("min", "max"))
    #: Reuse instead of training: a job whose key (orchestrator.job_key: its training config, data
    #: digest and plugin versions) matches a FINISHED run of the same experiment is recorded as a
    #: run tagged orchestrator.reused_from=<that run> holding its metrics, and is not trained.
    reuse: bool = False
    #: In a sweep, run a job again, up to this many times, when it fails for a reason other than
    #: bad input or divergence (an unexpected error: a crash, a lost connection); each attempt is
    #: a run tagged orchestrator.attempt, a superseded one also orchestrator.retried=true.
    retries: int = check(0, ge=0)
    #: The Optuna study's database (an SQLAlchemy URL); None: optuna.db beside a local SQLite
    #: MLflow store (required with a tracking server). The same command run again continues the study.
    storage: Optional[str] = None
    #: Stop unpromising Optuna trials early, from the metric each epoch: none, median or hyperband.
    pruner: str = check("none", choices=("none", "median", "hyperband"))


@dataclass
class Config:
    data: Any = None
    model: Any = None
    optimizer: Any = None
    regularizer: Any = None
    scheduler: Any = None
    callbacks: Any = None
    trainer: Dict[str, Any] = field(default_factory=dict)
    #: Seeds torch, numpy and the data split.
    seed: int = 0
    #: An MLflow run id to resume from its last checkpoint, logging into the same run.
    resume: Optional[str] = None
    #: TensorFloat-32 matmuls for fp32 training on GPUs that have them (Ampere and newer).
    tf32: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="orchestrator_schema", node=Config, provider="orchestrator")
    # The Optuna sweeper (hydra/sweeper=optuna): Hydra finds its config and class when it scans
    # its plugin namespace, which an editable install hides from that scan; registering both here
    # as well works for either install. No Optuna import.
    from hydra.core.plugins import Plugins
    from hydra_plugins.orchestrator_optuna_sweeper.config import register
    from hydra_plugins.orchestrator_optuna_sweeper.optuna_sweeper import OptunaSweeper

    register()
    Plugins.instance().register(OptunaSweeper)
