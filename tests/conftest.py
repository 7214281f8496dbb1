"""Shared fixtures: a real SQLite MLflow store in a temporary directory, real Hydra composition,
and real subprocess runs of ``python -m orchestrator``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
# The suite sees the built-in plugins only, whatever else is installed here; tests of
# third-party plugins turn autoload back on for the processes they start.
os.environ["ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for name in ("ORCHESTRATOR_BLOCK_PLUGINS", "ORCHESTRATOR_STRICT_PLUGINS"):
    os.environ.pop(name, None)

#: Small enough to train in a fraction of a second, large enough to split.
TINY = ["trainer.max_epochs=2", "data.n_samples=80"]


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """Run ``python -m orchestrator ARGS`` in ``cwd``; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "MLFLOW_TRACKING_URI"
             or "MLFLOW_TRACKING_URI" in (env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def all_runs(uri: str):
    """Every run in every experiment of the store at ``uri``."""
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10000)


def make_distribution(site: Path, name: str, version: str, entry_points: dict[str, str],
                      modules: dict[str, str] | None = None) -> None:
    """Install a distribution by hand: its modules and a dist-info folder in ``site``."""
    for relative, text in (modules or {}).items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[orchestrator]\n{lines}")


def with_site(site: Path, **extra) -> dict:
    return {"PYTHONPATH": str(site), "ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD": "0", **extra}


#: Debian's chromium, driven by playwright in the MLflow UI tests (skipped without it).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def launch_chromium(playwright):
    """A headless chromium for the MLflow UI tests: no sandbox (root in CI), nothing fetched."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])


def catalog_with(plugin, name: str, distribution: str):
    """The installed plugins plus ``plugin`` (registered as ``name``, from ``distribution``),
    registered with Hydra: a third party's plugin without installing it."""
    from orchestrator.plugins import Catalog, PluginInfo, load_plugins

    pm, infos, failures = load_plugins()
    pm.register(plugin, name=name)
    infos[name] = PluginInfo(name, distribution, "1.0", "tests")
    catalog = Catalog(pm, infos, failures)
    catalog.register_with_hydra()
    return catalog


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _no_tracking_uri_between_tests(monkeypatch):
    """mlflow.set_tracking_uri (called by tests that load models) exports MLFLOW_TRACKING_URI;
    no test may inherit another's store through it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import mlflow

    mlflow.set_tracking_uri(None)  # also forgets mlflow's own module-level choice


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh directory to run from; its ``mlruns/`` is the default store."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def catalog():
    from orchestrator.plugins import get_catalog

    catalog = get_catalog()
    catalog.register_with_hydra()
    return catalog


@pytest.fixture
def compose(catalog, tmp_path):
    """``compose(*overrides)``: the config ``python -m orchestrator`` would build, with the
    store under ``tmp_path``."""
    from orchestrator.config import compose as compose_like_the_cli

    def _compose(*overrides: str):
        return compose_like_the_cli([f"tracking.uri={store_uri(tmp_path)}", *overrides], catalog)

    return _compose
