"""One broken plugin never breaks the others (issue #11).

Whatever a plugin gets wrong at load, registration or schema time is reported with the plugin's
name, its distribution, the reason and the fix; the plugin is skipped as a whole (none of its
options exists); every other command works; ``orchestrator plugins`` lists it as failed; and
``ORCHESTRATOR_STRICT_PLUGINS=1`` makes it fatal: exit status 2, one paragraph, no traceback.

Each kind of mistake is a throwaway distribution made under ``tmp_path`` (a module and a
``*.dist-info`` with ``entry_points.txt``) put on the ``PYTHONPATH`` of real subprocesses of
``python -m orchestrator``. Commands that train nothing run for every kind; training runs for a
few representative ones (each costs seconds of torch, Lightning and MLflow imports). The mistakes
made at registration time are also checked in process, on the catalogue itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from conftest import make_distribution

#: Every broken plugin also offers this option, so a test can see that none of its options
#: survives, not only the broken one.
GOOD = '''
from dataclasses import dataclass
from orchestrator import Model, check, hookimpl

@dataclass
class Fine:
    width: int = check(3, ge=1)

def build(cfg, input_shape, output_dim):
    raise AssertionError("a skipped plugin is never built")

GOOD = Model("{slug}_ok", Fine, build, "The broken plugin's option that works.")
'''


def components(*lines: str) -> str:
    """A ``register_components`` hook returning the good option and ``lines`` (source)."""
    extra = "".join(f"\n        {line}," for line in lines)
    return f"@hookimpl\ndef register_components():\n    return [\n        GOOD,{extra}\n    ]\n"


#: kind -> (module source after GOOD, words the reason has, words the fix has, whether the
#: mistake is the catalogue's to find, so that it can also be checked in process).
CASES = {
    "import error": (
        "import not_a_module_anywhere\n" + components(),
        ["cannot be imported", "ModuleNotFoundError", "not_a_module_anywhere"],
        ["Fix the module or reinstall"], False),
    "hook with a wrong signature": (
        "@hookimpl\ndef register_components(cfg):\n    return [GOOD]\n",
        ["has a hook with a wrong signature", "register_components", "cfg"],
        ["Match the hook's arguments"], False),
    "unknown hook name": (
        components() + "\n@hookimpl\ndef on_run_ended(run):\n    pass\n",
        ["'on_run_ended' (did you mean 'on_run_end'?)", "not an orchestrator hook"],
        ["Rename it to one of"], False),
    "default of the wrong type": (
        "@dataclass\nclass Config:\n    width: int = check('wide')\n\n"
        + components("Model('{slug}', Config, build)"),
        ["provides model={slug}", "Config.width", "'wide'", "could not be converted to Integer"],
        ["match its field's type"], True),
    "schema that is not a dataclass": (
        "class Config:\n    width = 3\n\n" + components("Model('{slug}', Config, build)"),
        ["failed in register_components", "TypeError", "schema must be a dataclass"],
        ["Fix register_components in"], True),
    "field without a default": (
        "@dataclass\nclass Config:\n    width: int\n\n" + components("Model('{slug}', Config, build)"),
        ["provides model={slug}", "Config.width has no default"],
        ["Give Config.width a default"], True),
    "default that breaks its own rule": (
        "@dataclass\nclass Config:\n    width: int = check(0, ge=1)\n\n"
        + components("Model('{slug}', Config, build)"),
        ["model.width=0 is not allowed: it must be >= 1"],
        ["Change the default or the rule"], True),
    "reserved field name": (
        "@dataclass\nclass Config:\n    defaults: int = 3\n\n" + components("Model('{slug}', Config, build)"),
        ["Config has a field 'defaults'"], ["Rename Config.defaults"], True),
    "option name that cannot be typed": (
        components("Model('my model', Fine, build)"),
        ["model option named 'my model'"], ["letters, digits"], True),
    "duplicate option": (
        components("Model('linear', Fine, build)"),
        ["provides model=linear, which plugin 'builtin.models' from orchestrator"],
        ["Rename the option in one of them", "ORCHESTRATOR_BLOCK_PLUGINS=bad_{slug}"], True),
    "model preferring data nobody provides": (
        components("Model('{slug}', Fine, build, default_data='nowhere')"),
        ["default_data='nowhere'", "which no loaded plugin provides"],
        ["Name an installed data option"], True),
    "register_components raises": (
        "@hookimpl\ndef register_components():\n    raise RuntimeError('the registry is down')\n",
        ["failed in register_components: RuntimeError: the registry is down"],
        ["Fix register_components in"], True),
    "register_components returns garbage": (
        "@hookimpl\ndef register_components():\n    return GOOD\n",
        ["from register_components, not a list"], ["Return a list of orchestrator.Model"], True),
    "config_search_paths raises": (
        components() + "\n@hookimpl\ndef config_search_paths():\n    raise OSError('no conf here')\n",
        ["failed in config_search_paths: OSError: no conf here"],
        ["Fix config_search_paths"], True),
    "config_search_paths returns garbage": (
        components() + "\n@hookimpl\ndef config_search_paths():\n    return 'pkg://somewhere.conf'\n",
        ["returned 'pkg://somewhere.conf' from config_search_paths, not a list"],
        ["Return a list such as ['pkg://my_package.conf']"], True),
    "config_search_paths names a missing package": (
        components() + "\n@hookimpl\ndef config_search_paths():\n    return ['pkg://no_such_package.conf']\n",
        ["there is no package 'no_such_package.conf'"], ["Ship the YAML folder"], True),
    "config_search_paths names an unknown scheme": (
        components() + "\n@hookimpl\ndef config_search_paths():\n    return ['s3://bucket/conf']\n",
        ["'s3://bucket/conf'", "Hydra reads only pkg:// and file:// paths"],
        ["Return a list such as"], True),
}
#: Kinds whose register_components never returns a list: the failure cannot name its options.
NOTHING_RETURNED = ("schema that is not a dataclass", "register_components raises",
                    "register_components returns garbage")
#: Kinds that also train a model in a subprocess (seconds each): the issue's own example and
#: one of each other stage (import, the register hook, the search path hook).
TRAINED = ["default of the wrong type", "import error", "register_components raises",
           "config_search_paths returns garbage"]
TRAIN = ["model=linear", "trainer.max_epochs=1", "tracking.log_model=false", "tracking.plots=false"]


def slug_of(kind: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in kind)


def source_of(kind: str) -> str:
    slug = slug_of(kind)
    return textwrap.dedent(GOOD).format(slug=slug) + "\n" + CASES[kind][0].format(slug=slug)


def words_of(kind: str) -> tuple[list[str], list[str]]:
    slug = slug_of(kind)
    _, reason, fix, _ = CASES[kind]
    return [w.format(slug=slug) for w in reason], [w.format(slug=slug) for w in fix]


def names_of(kind: str) -> tuple[str, str]:
    """The broken plugin's entry point (and module) name, and its distribution's name."""
    slug = slug_of(kind)
    return f"bad_{slug}", f"bad-{slug.replace('_', '-')}"


def make_broken(site: Path, kind: str) -> tuple[str, str]:
    """Install the broken plugin of ``kind`` in ``site``; return (entry point, distribution)."""
    name, dist = names_of(kind)
    make_distribution(site, dist, "1.0", {name: name}, {f"{name}.py": source_of(kind)})
    return name, dist


def orchestrator(*args: str, cwd: Path, site: Path, strict: bool = False, code: str | None = None):
    """``python -m orchestrator ARGS`` (or ``python -c CODE``) in ``cwd``, with ``site`` on the
    path and plugin autoload on (the suite's conftest turns it off)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD", "ORCHESTRATOR_STRICT_PLUGINS",
                        "ORCHESTRATOR_BLOCK_PLUGINS", "MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    if strict:
        env["ORCHESTRATOR_STRICT_PLUGINS"] = "1"
    command = ["-c", code] if code is not None else ["-m", "orchestrator", *args]
    return subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


def assert_reported(text: str, name: str, dist: str, kind: str) -> None:
    """``text`` names the plugin, its distribution, the reason and the fix."""
    reason, fix = words_of(kind)
    assert f"Plugin {name!r} from {dist} 1.0 ({name})" in text, text
    for word in reason + fix:
        assert word in text, f"{word!r} not in {text!r}"


@pytest.mark.parametrize("kind", CASES)
def test_broken_plugin_is_listed_skipped_and_fatal_only_when_strict(site, tmp_path, kind):
    name, dist = make_broken(site, kind)
    # (a) orchestrator plugins: works, lists the plugin as failed with the reason and the fix
    listed = orchestrator("plugins", cwd=tmp_path, site=site)
    assert listed.returncode == 0, listed.stderr[-2000:]
    loaded, _, failed = listed.stdout.partition("1 plugin failed to load:")
    assert failed, listed.stdout
    assert f"{name}  (" not in loaded and "_ok" not in loaded
    assert "builtin.models  (orchestrator" in loaded and "model=linear: " in loaded
    (line,) = [line for line in failed.splitlines() if line.startswith("  FAILED ")]
    assert_reported(line, name, dist, kind)
    assert "Traceback" not in listed.stdout + listed.stderr
    # (c) --help: works, with the built-in options and a warning naming the plugin
    helped = orchestrator("--help", cwd=tmp_path, site=site)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "model: cnn, linear, logistic\n" in helped.stdout
    assert f"Warning: Plugin {name!r} from {dist} 1.0" in helped.stderr
    assert "Traceback" not in helped.stderr
    # (d) strict: fatal before anything runs, one paragraph naming the plugin, no traceback
    strict = orchestrator(*TRAIN, cwd=tmp_path, site=site, strict=True)
    assert strict.returncode == 2, strict.stderr[-2000:]
    message = strict.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("Error: Plugins failed to load (ORCHESTRATOR_STRICT_PLUGINS is set)")
    assert_reported(message, name, dist, kind)
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("kind", TRAINED)
def test_other_plugins_still_train_next_to_a_broken_one(site, tmp_path, kind):
    name, dist = make_broken(site, kind)
    # (b) a run with built-in options works, with one warning naming the plugin
    ran = orchestrator(*TRAIN, cwd=tmp_path, site=site)
    assert ran.returncode == 0, ran.stderr[-3000:]
    (warning,) = [line for line in ran.stderr.splitlines() if line.startswith("Warning: Plugin")]
    assert_reported(warning, name, dist, kind)
    assert "Traceback" not in ran.stderr and "FINISHED" in ran.stdout
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_an_option_of_a_skipped_plugin_names_the_failure(site, tmp_path):
    kind = "default of the wrong type"
    name, dist = make_broken(site, kind)
    slug = slug_of(kind)
    # its working option is gone too: choosing it names the plugin's failure, not Hydra's
    chosen = orchestrator(f"model={slug}_ok", cwd=tmp_path, site=site)
    assert chosen.returncode == 2, chosen.stderr[-2000:]
    assert f"model={slug}_ok is not available" in chosen.stderr
    assert_reported(chosen.stderr, name, dist, kind)
    assert "Traceback" not in chosen.stderr


def test_every_broken_plugin_at_once_next_to_a_working_one(site, tmp_path):
    """All the kinds installed together: each is reported, the built-ins and a working
    third-party plugin are listed with their descriptions, and listing imports no torch."""
    broken = {kind: make_broken(site, kind) for kind in CASES}
    (site / "fine_plugin.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from orchestrator import Optimizer, hookimpl

        @dataclass
        class Config:
            lr: float = 0.1

        @hookimpl
        def register_components():
            return [Optimizer("fine", Config, lambda cfg, params: None, "A working plugin's optimizer.")]
        '''))
    make_distribution(site, "fine-dist", "1.0", {"fine": "fine_plugin"})
    code = ("import sys; sys.argv = ['orchestrator', 'plugins']\n"
            "from orchestrator.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'mlflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    listed = orchestrator(cwd=tmp_path, site=site, code=code)
    assert listed.returncode == 0, listed.stderr[-3000:]
    loaded, _, failed = listed.stdout.partition(f"{len(CASES)} plugins failed to load:")
    assert "fine  (fine-dist 1.0, fine_plugin)" in loaded
    assert "optimizer=fine: A working plugin's optimizer." in loaded
    assert "model=cnn: " in loaded and "_ok" not in loaded
    lines = [line for line in failed.splitlines() if line.startswith("  FAILED ")]
    assert len(lines) == len(CASES), failed
    for kind, (name, dist) in broken.items():
        (line,) = [line for line in lines if f"Plugin {name!r} " in line]
        assert_reported(line, name, dist, kind)
    # --help lists every working option with its description, and none of the broken ones
    helped = orchestrator("--help", "hydra/help=orchestrator", cwd=tmp_path, site=site)
    assert helped.returncode == 0, helped.stderr[-2000:]
    options = helped.stdout.split("== Plugin options ==")[1].split("== Config ==")[0]
    assert "optimizer=fine" in options and "A working plugin's optimizer. [fine]" in options
    assert "Linear regression with bias" in options and "_ok" not in options
    assert helped.stderr.count("Warning: Plugin ") == len(CASES)


@pytest.mark.parametrize("kind", [kind for kind, case in CASES.items() if case[3]])
def test_catalog_skips_the_whole_plugin(kind, monkeypatch):
    """The catalogue itself: the plugin is unregistered, none of its options exists, the
    failure names it, and the built-ins are untouched."""
    from orchestrator.plugins import Catalog, PluginInfo, load_plugins

    name, dist = names_of(kind)
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)  # as an import would, undone after the test
    exec(compile(source_of(kind), name, "exec", dont_inherit=True), module.__dict__)
    builtins = {group: set(names) for group, names in Catalog(*load_plugins(), strict=False).options.items()}
    pm, infos, failures = load_plugins()  # the built-ins: the suite turns autoload off
    pm.register(module, name=name)
    infos[name] = PluginInfo(name, dist, "1.0", name)
    catalog = Catalog(pm, infos, failures, strict=False)
    (failure,) = catalog.failures
    assert_reported(str(failure), name, dist, kind)
    if kind not in NOTHING_RETURNED:
        assert f"model={slug_of(kind)}_ok" in failure.options
    assert {group: set(names) for group, names in catalog.options.items()} == builtins
    assert not pm.has_plugin(name) and name not in catalog.plugins
    assert catalog.search_paths == []
    assert "_ok" not in catalog.help_config()["template"]
