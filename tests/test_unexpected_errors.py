"""An unexpected error during training (a bug, here or in a plugin) ends the run FAILED with the
error as a tag and the full traceback as an artifact; the terminal gets one paragraph saying
where the traceback is, and the exit status is 1. Expected errors keep exit 2, no traceback."""

from __future__ import annotations

import mlflow
import pytest

from conftest import all_runs, cli, make_distribution, store_uri, with_site

BUGGY = """
from dataclasses import dataclass

from orchestrator import Model, hookimpl


@dataclass
class BuggyConfig:
    pass


def build(cfg, input_shape, output_dim):
    import torch

    class Buggy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(input_shape[0], output_dim)

        def forward(self, x):
            if self.training:
                return {}["a key the plugin author forgot"]
            return self.linear(x)

    return Buggy()


@hookimpl
def register_components():
    return [Model("buggy", BuggyConfig, build, "Fails in its first training step.",
                  inputs=("tabular",), default_data="regression")]
"""


@pytest.fixture
def buggy_site(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "buggy-plugin", "1.0", {"buggy": "buggy_plugin"}, {"buggy_plugin.py": BUGGY})
    return site


def test_a_bug_in_training_fails_the_run_with_its_traceback_and_exits_1(buggy_site, tmp_path):
    result = cli("model=buggy", "trainer.max_epochs=2", cwd=tmp_path, env=with_site(buggy_site))
    assert result.returncode == 1, result.stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("KeyError") and "forgot" in run.data.tags["error"]
    client = mlflow.MlflowClient(store_uri(tmp_path))
    traceback_text = open(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))).read()
    assert "Traceback" in traceback_text and "buggy_plugin.py" in traceback_text
    # One paragraph, naming the run and the local traceback file; no raw traceback on screen.
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "unexpected KeyError" in errors[0] and run.info.run_id in errors[0] and "traceback.txt" in errors[0]
    assert "Traceback (most recent call last)" not in result.stderr
    local = errors[0].split("traceback is in ", 1)[1].split(" and in", 1)[0]
    assert "buggy_plugin.py" in open(local if local.startswith("/") else tmp_path / local).read()


def test_expected_errors_keep_exit_2_and_no_traceback(tmp_path):
    result = cli("optimizer.lr=-1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "traceback.txt" not in result.stderr
