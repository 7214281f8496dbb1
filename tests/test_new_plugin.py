"""``orchestrator new-plugin``: the distribution it writes is installed for real (pip, from the
generated folder) and passes its own tests unchanged; ``orchestrator plugins`` lists its option
and one command trains with it. Bad names, occupied folders and unknown flags are refused."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import all_runs, store_uri

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
KINDS = ("model", "optimizer", "regularizer", "scheduler", "callback", "data")
#: The config group of each kind, where it is not the kind's name.
GROUP = {"callback": "callbacks"}
#: What chooses the generated option on the command line, where it is not ``KIND=my_thing``.
CHOICE = {"callback": "callbacks=[my_thing]"}
#: Names of the contract suite's tests each kind's generated tests must run and pass.
CONTRACT_TESTS = {
    "model": ("TestMyThing::test_trains_end_to_end_on_its_default_data",
              "TestMyThing::test_gradients_reach_every_parameter",
              "test_forward_makes_no_tensor_on_another_device"),
    "optimizer": ("TestMyThing::test_trains_end_to_end", "TestMyThing::test_steps_downhill_on_a_quadratic",
                  "test_step_makes_no_tensor_on_another_device"),
    "regularizer": ("TestMyThing::test_penalty_is_a_non_negative_differentiable_scalar",
                    "test_adds_its_penalty_to_the_loss"),
    "scheduler": ("TestMyThing::test_trains_end_to_end_and_logs_the_rate",
                  "TestMyThing::test_learning_rate_stays_finite_and_positive_through_the_fit",
                  "test_warms_up_then_decays"),
    "callback": ("TestMyThing::test_trains_end_to_end", "TestMyThing::test_builds_a_lightning_callback",
                 "test_logs_the_gradient_norm_each_epoch",
                 "test_the_norm_is_the_gradients_and_makes_no_tensor_on_another_device"),
    "data": ("TestMyThing::test_same_seed_same_data", "TestMyThing::test_returns_consistent_arrays"),
}


def child_env(site: Path | None = None) -> dict:
    """The environment of a process a user starts: plugin autoload on (the suite's conftest
    turns it off), no telemetry, and ``site`` (where the plugin is installed) on the path."""
    drop = ("ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD", "ORCHESTRATOR_BLOCK_PLUGINS",
            "ORCHESTRATOR_STRICT_PLUGINS", "MLFLOW_TRACKING_URI", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def python(*args: str, cwd: Path, site: Path | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=child_env(site), capture_output=True,
                          text=True, timeout=timeout)


def new_plugin(*args: str, cwd: Path):
    return python("-m", "orchestrator", "new-plugin", *args, cwd=cwd, timeout=60)


@pytest.fixture(scope="module", params=KINDS)
def installed(request, tmp_path_factory):
    """``orchestrator new-plugin my-thing --kind KIND``, then ``pip install`` of what it wrote
    into a private site folder (no network: no dependencies, no build isolation)."""
    kind = request.param
    group, choice = GROUP.get(kind, kind), CHOICE.get(kind, f"{kind}=my_thing")
    tmp = tmp_path_factory.mktemp(f"new-plugin-{kind}")
    made = new_plugin("my-thing", "--dir", str(tmp), "--kind", kind, cwd=tmp)
    assert made.returncode == 0, made.stderr
    source, site = tmp / "my-thing", tmp / "site"
    assert choice in made.stdout and str(source) in made.stdout
    pip = python("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                 "--disable-pip-version-check", "--quiet", "--target", str(site), str(source), cwd=tmp)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "my_thing" / "plugin.py").is_file()
    assert [p.name for p in site.glob("my_thing-0.1.0.dist-info")]
    return SimpleNamespace(kind=kind, group=group, choice=choice, tmp=tmp, source=source, site=site)


def test_generated_tests_pass_unchanged(installed):
    result = python("-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-o", "addopts=",
                    str(installed.source / "tests"), cwd=installed.tmp, site=installed.site, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and not re.search(r"failed|error|skipped", summary), summary
    for name in CONTRACT_TESTS[installed.kind]:
        assert re.search(rf"^PASSED \S*{re.escape(name)}", result.stdout, re.M), name


def test_plugins_command_lists_it(installed):
    listed = python("-m", "orchestrator", "plugins", cwd=installed.tmp, site=installed.site, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "my_thing  (my-thing 0.1.0, my_thing.plugin)" in listed.stdout
    assert re.search(rf"^\s+{installed.group}(=|: )my_thing\b", listed.stdout, re.M), listed.stdout
    assert "failed to load" not in listed.stdout


def test_trains_from_the_command_line(installed):
    workdir = installed.tmp / "work"
    workdir.mkdir()
    trained = python("-m", "orchestrator", installed.choice, "trainer.max_epochs=2", cwd=workdir,
                     site=installed.site)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = all_runs(store_uri(workdir))
    assert run.info.status == "FINISHED"
    assert run.data.tags[f"orchestrator.{installed.group}"] == "my_thing"
    if installed.kind == "callback":  # runs tag the distribution of each group's option, not of callbacks
        assert run.data.params["callbacks.my_thing._name_"] == "my_thing"
    else:
        assert run.data.tags[f"orchestrator.{installed.group}.distribution"] == "my-thing==0.1.0"


def test_writing_a_plugin_imports_no_torch(tmp_path):
    code = ("import sys; sys.argv = ['orchestrator', 'new-plugin', 'light-one', '--kind', 'optimizer']\n"
            "from orchestrator.cli import main\n"
            "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'mlflow') if m in sys.modules]\n"
            "assert not heavy, heavy")
    result = python("-c", code, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "light-one" / "light_one" / "optim.py").is_file()


# --- the command line: help, refusals -------------------------------------------------------


def test_help_prints_the_usage(tmp_path):
    result = new_plugin("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: orchestrator new-plugin NAME [--dir DIR] [--kind")
    for word in ("--dir", "--kind", *KINDS, "orchestrator-mlp gives model=mlp"):
        assert word in result.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["My Thing"], "'My Thing' is not a valid plugin name (did you mean 'my-thing'?)"),
    (["my-thing", "--colour"], "unrecognized arguments: --colour"),
    (["my-thing", "--kind", "loss"], "invalid choice: 'loss'"),
    ([], "the following arguments are required: NAME"),
])
def test_bad_command_lines_are_refused_in_one_paragraph(tmp_path, args, message):
    result = new_plugin(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_existing_folder_is_refused_unless_empty(tmp_path):
    (tmp_path / "my-thing").mkdir()
    (tmp_path / "my-thing" / "notes.txt").write_text("mine\n")
    refused = new_plugin("my-thing", cwd=tmp_path)
    assert refused.returncode == 2
    assert "already exists and is not empty" in refused.stderr and refused.stderr.count("\n") == 1
    assert [p.name for p in (tmp_path / "my-thing").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "my-thing").mkdir()
    written = new_plugin("my-thing", "--dir", "empty", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "empty" / "my-thing" / "pyproject.toml").is_file()
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["my-thing"]  # no staging left


@pytest.mark.parametrize("name,message", [
    ("1thing", "'1thing' is not a valid plugin name"),
    ("my--thing", "did you mean 'my-thing'?"),
    ("my.thing", "did you mean 'my-thing'?"),
    ("class", "is a Python keyword"),
    ("null", "read by Hydra as a value"),
    ("tests", "would share its folder with the distribution's own tests/ folder"),
    ("json", "A module named 'json' can already be imported"),
    ("orchestrator", "A module named 'orchestrator' can already be imported"),
    ("linear", "model=linear is already provided by plugin 'builtin.models'"),
])
def test_names_that_cannot_work_are_refused(tmp_path, capsys, name, message):
    from orchestrator.scaffold import main

    assert main([name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


def test_an_option_taken_in_one_group_is_free_in_another(tmp_path, capsys):
    from orchestrator.scaffold import main

    assert main(["gd", "--dir", str(tmp_path), "--kind", "optimizer"]) == 2
    assert "optimizer=gd is already provided" in capsys.readouterr().err
    assert main(["early-stopping", "--dir", str(tmp_path), "--kind", "callback"]) == 2
    assert "callbacks=early_stopping is already provided" in capsys.readouterr().err
    assert main(["gd", "--dir", str(tmp_path), "--kind", "data"]) == 0
    assert main(["early-stopping", "--dir", str(tmp_path), "--kind", "scheduler"]) == 0


def test_an_orchestrator_prefix_is_left_out_of_the_option(tmp_path):
    from orchestrator.scaffold import main

    assert main(["orchestrator-widget", "--dir", str(tmp_path), "--kind", "data"]) == 0
    source = tmp_path / "orchestrator-widget"
    assert 'widget = "orchestrator_widget.plugin"' in (source / "pyproject.toml").read_text()
    assert 'name="widget"' in (source / "orchestrator_widget" / "plugin.py").read_text()
    assert 'name = "widget"' in (source / "tests" / "test_orchestrator_widget.py").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_the_pyproject_depends_on_orchestrator_alone(tmp_path, kind):
    import tomllib

    from orchestrator.scaffold import main

    assert main(["my-thing", "--dir", str(tmp_path), "--kind", kind]) == 0
    project = tomllib.loads((tmp_path / "my-thing" / "pyproject.toml").read_text())
    assert project["project"]["dependencies"] == ["orchestrator>=0.1.0"]  # never a bare torch
    assert project["project"]["entry-points"]["orchestrator"] == {"my_thing": "my_thing.plugin"}
    for path in (tmp_path / "my-thing").rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


# --- the guide ----------------------------------------------------------------------------


def test_the_guide_starts_with_new_plugin_and_names_every_contract_test():
    from orchestrator import testing

    text = GUIDE.read_text()
    first = re.search(r"^## (.*)$", text, re.M).group(1)
    assert "orchestrator new-plugin" in first
    for suite in (testing.ModelContract, testing.OptimizerContract, testing.RegularizerContract,
                  testing.SchedulerContract, testing.CallbackContract, testing.DataContract):
        for name, _ in inspect.getmembers(suite, inspect.isfunction):
            if name.startswith("test_"):
                assert f"`{name}`" in text, f"{suite.__name__}.{name} is not described in {GUIDE.name}"
    for key in ("train/loss", "train/penalty", "val/loss", "val/accuracy", "val/f1", "test/mse",
                "test/mae", "test/r2", "test/accuracy", "test/f1", "time/fit_seconds", "_name_",
                "Device-agnostic"):
        assert key in text, key
