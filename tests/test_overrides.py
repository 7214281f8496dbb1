"""What a user types on the command line, refused or accepted before anything runs: code
injection through reserved keys, sweeps whose jobs would get a setting their option lacks,
``+key`` sweeps, ``--version``. Real ``python -m orchestrator`` processes."""

from __future__ import annotations

import pytest

from conftest import TINY, all_runs, cli, store_uri

INJECTIONS = [
    "+model._target_=builtins.print",
    "+hydra.callbacks.evil._target_=builtins.print",
    "+hydra.callbacks={evil:{_target_:builtins.print,_args_:[x]}}",
    "+model.extra={a:{b:[{_partial_:true}]}}",
    "+tracking.x=[{_convert_:all}]",
    "+trainer.plugins={_recursive_:false}",
    "+model.extra={_args_:[1]},{y:1}",
]


@pytest.mark.parametrize("override", INJECTIONS)
def test_reserved_keys_are_refused_as_keys_and_inside_values(tmp_path, override):
    result = cli(override, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "is refused" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_a_string_that_merely_contains_target_is_data(tmp_path):
    folder = tmp_path / "sales_target_2025"
    folder.mkdir()
    rows = "\n".join(f"{i},{2 * i + 1}" for i in range(60))
    (folder / "x.csv").write_text("a,_target_price\n" + rows + "\n")
    result = cli("data=csv", f"data.path={folder / 'x.csv'}", "data.target=_target_price",
                 "trainer.max_epochs=2", "tracking.log_model=false", "tracking.plots=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FINISHED" and run.data.params["data.path"].endswith("sales_target_2025/x.csv")


def test_sweep_with_a_setting_some_options_lack_is_refused_before_anything_starts(tmp_path):
    result = cli("-m", "model=linear,cnn", "model.channels1=4,8", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr
    assert "model.channels1=4,8" in message and "model=linear" in message and "model=cnn" not in message.split("(job")[0]
    assert "job 0: model=linear model.channels1=4" in message and "2 of the sweep's jobs" in message
    assert "one sweep per model option" in message and "experiment" in message
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no parent run, FAILED or RUNNING
    assert not (tmp_path / "multirun").exists()


def test_a_preset_that_chooses_the_options_is_not_refused_for_their_settings(tmp_path):
    """hparams_search=linear_optuna picks regularizer=l2 itself: sweeping its strength is fine."""
    result = cli("hparams_search=linear_optuna", "regularizer.strength=choice(0.001,0.01)",
                 "hydra.sweeper.n_trials=2", "trainer.max_epochs=2", *TINY, "tracking.log_model=false",
                 "tracking.plots=false", cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    children = [r for r in all_runs(store_uri(tmp_path)) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["orchestrator.regularizer"] for r in children} == {"l2"}


def test_plus_key_sweeps_run_and_name_the_parent_params_without_the_prefix(tmp_path):
    result = cli("-m", "model=linear", "+trainer.gradient_clip_val=0.5,1.0", "++trainer.min_epochs=1",
                 *TINY, "tracking.log_model=false", "tracking.plots=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(store_uri(tmp_path))
    parent = next(r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent")
    assert parent.data.params["sweep.trainer.gradient_clip_val"] == "0.5,1.0"
    assert parent.data.params["sweep.trainer.min_epochs"] == "1"
    children = [r for r in runs if r is not parent]
    assert sorted(r.data.params["trainer.gradient_clip_val"] for r in children) == ["0.5", "1.0"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_an_unknown_key_with_a_list_value_names_the_real_top_level_settings(tmp_path):
    result = cli("foo=[a,b]", "foo.x=5", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "foo" in result.stderr and "Top-level settings: data, model" in result.stderr


def test_version_prints_orchestrator_and_hydra(tmp_path):
    from orchestrator import __version__

    result = cli("--version", cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    assert f"orchestrator {__version__}" in result.stdout and "Hydra 1." in result.stdout


COUNT_COMPOSITIONS = """
import atexit, sys
from hydra._internal import config_loader_impl
count = [0]
original = config_loader_impl.ConfigLoaderImpl.load_configuration
def counted(self, *args, **kwargs):
    count[0] += 1
    return original(self, *args, **kwargs)
config_loader_impl.ConfigLoaderImpl.load_configuration = counted
atexit.register(lambda: print(f"compositions: {count[0]}", file=sys.stderr))
sys.argv = ["orchestrator", *sys.argv[1:]]
from orchestrator.cli import main
main()
"""


def test_a_run_is_composed_only_by_hydra_and_a_typo_still_gets_a_clear_message(tmp_path):
    """No composition pass of our own: Hydra composes a single run twice (to find the mode,
    then to run); a refusal is Hydra's own failure, translated."""
    script = tmp_path / "count.py"
    script.write_text(COUNT_COMPOSITIONS)
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, str(script), "model=linear", *TINY, "tracking.log_model=false",
                         "tracking.plots=false"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "compositions: 2" in ok.stderr
    typo = subprocess.run([sys.executable, str(script), "optimizer.lrr=0.1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert typo.returncode == 2
    assert "optimizer.lrr is not a setting (did you mean 'lr'?). Settings of optimizer=gd: lr, momentum, nesterov." in typo.stderr
