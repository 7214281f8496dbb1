"""Resume starts from the run's recorded resolved config, validated like any config: a default
that changed since the run (here: a plugin's schema default, read from the environment at import)
never changes what is resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow

from conftest import all_runs, cli, make_distribution, store_uri, with_site
from test_reliability import wait_for_training

PLUGIN = """
import os
from dataclasses import dataclass

from orchestrator import Model, check, hookimpl


@dataclass
class EnvNetConfig:
    #: Hidden width; its default comes from the environment, so a test can change it.
    hidden: int = check(int(os.environ.get("ENVNET_HIDDEN", "4")), ge=1)


def build(cfg, input_shape, output_dim):
    import torch

    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], cfg.hidden), torch.nn.ReLU(),
                               torch.nn.Linear(cfg.hidden, output_dim))


@hookimpl
def register_components():
    return [Model("envnet", EnvNetConfig, build, "A net whose default width the environment sets.",
                  inputs=("tabular",), default_data="regression")]
"""


def test_resume_uses_the_recorded_config_not_todays_defaults(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "envnet", "1.0", {"envnet": "envnet"}, {"envnet.py": PLUGIN})
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(with_site(site), ENVNET_HIDDEN="4")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "model=envnet", "trainer.max_epochs=1000000",
                             "tracking.log_model=false", "tracking.plots=false", "tracking.flush_seconds=0.5"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_training(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "KILLED" and run.data.params["model.hidden"] == "4"
    reached = int(run.data.metrics["epoch"])

    # A setting given with resume= goes through the same checks as any other, and a refusal
    # leaves the run as it was.
    bad = cli(f"resume={run.info.run_id}", "optimizer.lr=-1", cwd=tmp_path, env=with_site(site), timeout=120)
    assert bad.returncode == 2 and "optimizer.lr" in bad.stderr and "Traceback" not in bad.stderr
    assert all_runs(store_uri(tmp_path))[0].info.status == "KILLED"

    # The default is now 9: a run composed today would build a net the checkpoint cannot fill.
    resumed = cli(f"resume={run.info.run_id}", f"trainer.max_epochs={reached + 3}", "tracking.log_model=false",
                  "tracking.plots=false", cwd=tmp_path, env={**with_site(site), "ENVNET_HIDDEN": "9"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = all_runs(store_uri(tmp_path))
    assert after.info.status == "FINISHED" and after.data.params["model.hidden"] == "4"
    client = mlflow.MlflowClient(store_uri(tmp_path))
    config = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert "hidden: 4" in open(config).read()
