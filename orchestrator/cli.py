"""The command line: ``python -m orchestrator`` and the ``orchestrator`` console script.

``main()`` loads the plugins first (so their options exist), registers their config schemas
with Hydra, then hands the command line to one Hydra app whose primary config is ``conf/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .errors import OrchestratorError
from .plugins import get_catalog

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def fail(error: OrchestratorError) -> None:
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from .runner import run

    hydra_cfg = HydraConfig.get()
    try:
        result = run(cfg, overrides=hydra_cfg.overrides.task, output_dir=hydra_cfg.runtime.output_dir)
    except OrchestratorError as error:
        fail(error)
    print(f"MLflow run {result.run_id} FINISHED in {result.tracking_uri}")
    return None


def main() -> None:
    try:
        get_catalog().store_configs()
    except OrchestratorError as error:
        fail(error)
    hydra_app()


if __name__ == "__main__":
    main()
