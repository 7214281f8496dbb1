"""Third-party plugins from the outside: distributions made under tmp_path (a ``*.dist-info``
with ``entry_points.txt`` on ``PYTHONPATH``) and real subprocesses of the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import all_runs, cli, make_distribution, store_uri, with_site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "orchestrator-mlp"


@pytest.fixture
def site(tmp_path):
    """A folder on the PYTHONPATH of the processes a test starts, with autoload on."""
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


@pytest.fixture
def reference_plugin(site):
    shutil.copytree(EXAMPLE / "orchestrator_mlp", site / "orchestrator_mlp")
    make_distribution(site, "orchestrator-mlp", "0.1.0", {"mlp": "orchestrator_mlp.plugin"})
    return site


def test_sweep_mixes_a_plugin_model_with_a_builtin_one(reference_plugin, tmp_path):
    result = cli("-m", "model=mlp,logistic", "data=moons", "optimizer=adam", "trainer.max_epochs=3",
                 cwd=tmp_path, env=with_site(reference_plugin))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {r.data.tags["orchestrator.model"]: r for r in all_runs(store_uri(tmp_path))
            if r.data.tags.get("orchestrator.sweep") != "parent"}
    assert set(runs) == {"mlp", "logistic"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    mlp, logistic = runs["mlp"].data.tags, runs["logistic"].data.tags
    assert mlp["orchestrator.model.plugin"] == "mlp"
    assert mlp["orchestrator.model.distribution"] == "orchestrator-mlp==0.1.0"
    assert mlp["orchestrator.data.distribution"] == "orchestrator-mlp==0.1.0"
    assert logistic["orchestrator.model.distribution"].startswith("orchestrator==")
    # the plugin's callback ran in both jobs, its run-end hook tagged the MLP run only
    assert all("time/epoch_seconds" in r.data.metrics for r in runs.values())
    assert mlp["orchestrator_mlp.hidden"] == "[64, 64]" and "orchestrator_mlp.hidden" not in logistic


def test_plugin_options_take_typed_overrides_after_install(reference_plugin, tmp_path):
    ok = cli("model=mlp", "model.hidden=[16,8]", "--cfg", "job", cwd=tmp_path, env=with_site(reference_plugin))
    assert ok.returncode == 0, ok.stderr
    assert "- 16" in ok.stdout and "_name_: moons" in ok.stdout
    bad = cli("model=mlp", "model.hidden=wide", "--cfg", "job", cwd=tmp_path, env=with_site(reference_plugin))
    assert bad.returncode != 0 and "model.hidden" in bad.stderr
    # the plugin's own rules (orchestrator.check) are enforced like the built-ins'
    ruled = cli("model=mlp", "model.hidden=[8,0]", cwd=tmp_path, env=with_site(reference_plugin))
    assert ruled.returncode == 2 and "model.hidden=[8, 0] is not allowed: it must be >= 1" in ruled.stderr


def test_reference_plugin_passes_its_own_tests_in_isolation(reference_plugin):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE, env={**__import__("os").environ, **with_site(reference_plugin)},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout


def test_plugins_command_lists_every_plugin(reference_plugin, tmp_path):
    result = cli("plugins", cwd=tmp_path, env=with_site(reference_plugin))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mlp  (orchestrator-mlp 0.1.0, orchestrator_mlp.plugin)" in out
    assert "hooks: add_callbacks, config_search_paths, on_run_end, register_components" in out
    assert "model=mlp: Multi-layer perceptron on flattened inputs." in out
    assert "data=moons: Two interleaving half circles (binary, non-linear)." in out
    assert "builtin.models  (orchestrator 0.1.0" in out
    assert "pkg://orchestrator_mlp.conf" in out


def test_plugins_command_does_not_import_torch(reference_plugin, tmp_path):
    code = ("import sys; sys.argv = ['orchestrator', 'plugins']; from orchestrator.cli import main; "
            "main(); assert 'torch' not in sys.modules and 'mlflow' not in sys.modules, 'heavy import'")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**__import__("os").environ, **with_site(reference_plugin)}, timeout=60)
    assert result.returncode == 0, result.stderr


def test_autoload_switch_and_block_list(reference_plugin, tmp_path):
    for env in ({"ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD": "1"}, {"ORCHESTRATOR_BLOCK_PLUGINS": "mlp"}):
        listed = cli("plugins", cwd=tmp_path, env={**with_site(reference_plugin), **env})
        assert "orchestrator-mlp" not in listed.stdout and "builtin.models" in listed.stdout
        chosen = cli("model=mlp", "--cfg", "job", cwd=tmp_path, env={**with_site(reference_plugin), **env})
        assert chosen.returncode == 2 and "Unknown model 'mlp'" in chosen.stderr and "Traceback" not in chosen.stderr


BROKEN = {
    "import": ({"broken.py": "import not_a_module_anywhere\n"}, "cannot be imported",
               "ModuleNotFoundError"),
    "misspelled hook": ({"broken.py": """
        from orchestrator import hookimpl

        @hookimpl
        def register_component():
            return []
        """}, "'register_component' (did you mean 'register_components'?)", "Rename it"),
    "duplicate option": ({"broken.py": """
        from dataclasses import dataclass
        from orchestrator import Model, hookimpl

        @dataclass
        class Config:
            width: int = 3

        @hookimpl
        def register_components():
            return [Model("linear", Config, lambda cfg, shape, out: None, "a second linear")]
        """}, "provides model=linear, which plugin 'builtin.models' from orchestrator 0.1.0", "BLOCK_PLUGINS=broken"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_plugin_is_reported_and_skipped_or_fatal_when_strict(site, tmp_path, kind):
    modules, reason, fix = BROKEN[kind]
    make_distribution(site, "broken-dist", "2.0", {"broken": "broken"}, modules)
    env = with_site(site)
    # listed with its name, distribution, reason and fix
    listed = cli("plugins", cwd=tmp_path, env=env)
    assert listed.returncode == 0
    failure = listed.stdout.split("failed to load:")[1]
    for word in ("'broken'", "broken-dist 2.0", reason, fix):
        assert word in failure, word
    # skipped by default: the rest keeps working, with a warning naming the plugin
    ok = cli("model=logistic", "trainer.max_epochs=1", "tracking.log_model=false", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "Warning: Plugin 'broken' from broken-dist 2.0" in ok.stderr
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FINISHED"
    # fatal when strict, before anything runs
    strict = cli("model=logistic", cwd=tmp_path, env={**env, "ORCHESTRATOR_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert "ORCHESTRATOR_STRICT_PLUGINS" in strict.stderr and "broken-dist" in strict.stderr
    assert len(all_runs(store_uri(tmp_path))) == 1


def test_choosing_an_option_of_a_plugin_that_failed_names_the_load_error(site, tmp_path):
    make_distribution(site, "broken-dist", "2.0", {"broken": "broken"}, BROKEN["import"][0])
    result = cli("model=transformer", cwd=tmp_path, env=with_site(site))
    assert result.returncode == 2
    assert "model=transformer is not available" in result.stderr
    assert "broken-dist 2.0" in result.stderr and "not_a_module_anywhere" in result.stderr
