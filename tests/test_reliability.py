"""Whatever goes wrong, the framework says what happened, the MLflow store stays consistent, and
no run is left RUNNING: bad input, divergence, Ctrl-C and SIGTERM, resume, concurrent sweeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from conftest import all_runs, cli, store_uri

CSV = "x1,x2,y\n1,2,3\n4,5,6\n7,8,9\n"
# (arguments, exit code, words the message must hold, runs the store must hold after)
BAD_INPUTS = [
    (["model=mlp"], 2, ["Unknown model 'mlp'", "cnn, linear, logistic"]),
    (["model=logistc"], 2, ["did you mean 'logistic'", "cnn, linear, logistic"]),
    (["optimizer=adamw"], 2, ["Unknown optimizer 'adamw'", "did you mean 'adam'", "gd, minibatch"]),
    (["regularizer=l3"], 2, ["Unknown regularizer 'l3'", "elasticnet, l1, l2, none"]),
    (["data=mnist"], 2, ["Unknown data 'mnist'", "classification, csv, digits, regression"]),
    (["model=cnn", "data=regression"], 2, ["model=cnn cannot train on data=regression", "image", "tabular"]),
    (["model=linear", "data=classification"], 2, ["model=linear", "learns regression", "classification task"]),
    (["model.hidden=3"], 2, ["model.hidden is not a setting", "Settings of model=linear: bias"]),
    (["model=cnn", "model.hiden=3"], 2, ["model.hiden", "did you mean 'hidden'", "channels1"]),
    (["trainer.max_epoch=3"], 2, ["trainer.max_epoch", "did you mean 'max_epochs'"]),
    (["nonsense=1"], 2, ["nonsense is not a setting", "Top-level settings", "seed"]),
    (["optimizer.lr=fast"], 2, ["optimizer.lr='fast'", "Float"]),
    (["seed=abc"], 2, ["seed='abc'", "Integer"]),
    (["optimizer.lr=-1"], 2, ["optimizer.lr=-1.0", "> 0"]),
    (["optimizer=minibatch", "optimizer.batch_size=0"], 2, ["optimizer.batch_size=0", ">= 1"]),
    (["optimizer=minibatch", "optimizer.momentum=1.5"], 2, ["optimizer.momentum=1.5", "< 1"]),
    (["regularizer=l2", "regularizer.strength=-0.1"], 2, ["regularizer.strength=-0.1", ">= 0"]),
    (["regularizer=elasticnet", "regularizer.l1_ratio=2"], 2, ["regularizer.l1_ratio=2.0", "<= 1"]),
    (["data.val_fraction=1.5"], 2, ["data.val_fraction=1.5", "< 1"]),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], 2, ["leaves nothing to train on"]),
    (["model=cnn", "model.activation=relux"], 2, ["model.activation='relux'", "did you mean 'relu'", "tanh"]),
    (["model=cnn", "model.dropout=1"], 2, ["model.dropout=1.0", "< 1"]),
    (["tracking.model_format=onnx"], 2, ["tracking.model_format='onnx'", "pickle, pt2"]),
    (["trainer.accelerator=tpux"], 2, ["trainer settings are refused", "tpux"]),
    (["data=csv", "data.path=nope.csv", "data.target=y"], 2, ["nope.csv", "no such file"]),
    (["data=csv", "data.path=table.csv", "data.target=price"], 2, ["no target column 'price'", "x1, x2, y"]),
    (["data=csv", "data.path=table.csv"], 2, ["data.target=<column>", "x1, x2, y"]),
    (["data=csv", "data.path=table.csv", "data.target=y", "data.features=[x1,x9]"], 2, ["no feature column 'x9'"]),
    (["data=csv", "data.path=text.csv", "data.target=y"], 2, ["column 'x1' must be numeric", "line 3", "'oops'"]),
    (["data=csv", "data.path=holes.csv", "data.target=y"], 2, ["column 'x2' has a missing value", "line 2"]),
    (["data=csv", "data.path=empty.csv", "data.target=y"], 2, ["empty"]),
    (["data=csv", "data.path=table.csv", "data.target=y", "data.task=ranking"], 2, ["data.task='ranking'", "regression, classification"]),
    (["+model._target_=os.system"], 2, ["_target_ cannot be set", "registered names"]),
    (["+hydra.callbacks.evil._target_=os.getcwd"], 2, ["_target_ cannot be set"]),
    (["resume=0123456789abcdef"], 2, ["resume=0123456789abcdef", "no such run"]),
]


@pytest.mark.parametrize("args,code,words", BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_is_refused_clearly_and_writes_nothing(tmp_path, args, code, words):
    (tmp_path / "table.csv").write_text(CSV)
    (tmp_path / "text.csv").write_text("x1,x2,y\n1,2,3\noops,5,6\n")
    (tmp_path / "holes.csv").write_text("x1,x2,y\n1,,3\n4,5,6\n")
    (tmp_path / "empty.csv").write_text("")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr[-2000:]
    for word in words:
        assert word in result.stderr, f"{word!r} missing from: {result.stderr[-1500:]}"
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")  # one paragraph, last
    if (tmp_path / "mlruns" / "mlflow.db").exists():
        assert all_runs(store_uri(tmp_path)) == []  # refused before any run was opened


def test_table_has_at_least_twenty_inputs():
    assert len(BAD_INPUTS) >= 20


def test_divergence_stops_at_once_and_fails_the_run(tmp_path):
    result = cli("model=linear", "optimizer.lr=50", "trainer.max_epochs=500", "data.n_samples=100", cwd=tmp_path)
    assert result.returncode == 2
    assert "training diverged" in result.stderr and "smaller learning rate" in result.stderr
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FAILED"
    assert "at epoch" in run.data.tags["error"] and "step" in run.data.tags["error"]
    assert run.data.metrics["epoch"] < 100  # stopped at once, not after the remaining epochs


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(tmp_path: Path, proc: subprocess.Popen, runs: int = 1, timeout: float = 120) -> None:
    """Until ``runs`` runs have logged an epoch, or the process ended."""
    deadline = time.monotonic() + timeout
    db = tmp_path / "mlruns" / "mlflow.db"
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            from orchestrator.tracking import store_lock

            with store_lock(store_uri(tmp_path)):  # never while the process is creating the store
                training = [r for r in all_runs(store_uri(tmp_path)) if "epoch" in r.data.metrics]
            if len(training) >= runs:
                return
        time.sleep(0.5)
    raise AssertionError(f"no training seen: {proc.communicate(timeout=30)[1][-2000:]}")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_is_killed_with_a_checkpoint_and_resumes_into_the_same_run(tmp_path, signum, code):
    proc = start(tmp_path, "trainer.max_epochs=1000000", "tracking.log_model=false", "tracking.plots=false",
                 "tracking.flush_seconds=0.5")
    wait_for_training(tmp_path, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Interrupted" in stderr and "resume=" in stderr
    uri = store_uri(tmp_path)
    (run,) = all_runs(uri)  # the store is readable and holds one run
    assert run.info.status == "KILLED"
    client = mlflow.MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.ckpt"]
    before = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    reached = int(run.data.metrics["epoch"])

    resumed = cli(f"resume={run.info.run_id}", f"trainer.max_epochs={reached + 5}", "tracking.plots=false",
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (after,) = all_runs(uri)  # the same run, not a new one
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["orchestrator.resumed"] == "1" and "error" not in after.data.tags
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps[: len(before)] == before  # history kept...
    assert len(steps) > len(before) and all(b > a for a, b in zip(steps, steps[1:]))  # ...and carried on
    assert after.data.metrics["epoch"] == reached + 5  # the epoch count once trainer.max_epochs is reached
    assert "test/loss" in after.data.metrics


def test_resume_refuses_a_finished_run_and_a_run_without_checkpoint(tmp_path):
    done = cli("trainer.max_epochs=2", "tracking.log_model=false", cwd=tmp_path)
    assert done.returncode == 0
    diverged = cli("optimizer.lr=50", "trainer.max_epochs=300", cwd=tmp_path)
    assert diverged.returncode == 2
    runs = {r.info.status: r.info.run_id for r in all_runs(store_uri(tmp_path))}
    finished = cli(f"resume={runs['FINISHED']}", cwd=tmp_path)
    assert finished.returncode == 2 and "FINISHED; there is nothing to resume" in finished.stderr
    failed = cli(f"resume={runs['FAILED']}", cwd=tmp_path)
    assert failed.returncode == 2 and "no checkpoint" in failed.stderr
    assert {r.info.status for r in all_runs(store_uri(tmp_path))} == {"FINISHED", "FAILED"}


def test_interrupted_sweep_keeps_finished_children_and_kills_the_rest(tmp_path):
    # with figures: the sweep's recorder holds job 0's end (orchestrator.recorder) when Ctrl-C comes
    proc = start(tmp_path, "-m", "trainer.max_epochs=2,1000000", "tracking.log_model=false",
                 "tracking.flush_seconds=0.5")
    wait_for_training(tmp_path, proc, runs=2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    runs = all_runs(store_uri(tmp_path))
    parent = next(r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent")
    children = {r.data.tags["orchestrator.sweep.job"]: r for r in runs if r is not parent}
    assert parent.info.status == "KILLED"
    assert children["0"].info.status == "FINISHED" and children["1"].info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in runs)
    figures = mlflow.MlflowClient(store_uri(tmp_path)).list_artifacts(children["0"].info.run_id, "plots")
    assert len(figures) == 2


def test_two_sweeps_at_once_on_a_new_store_lose_nothing(tmp_path):
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=linear,logistic",
            "optimizer=gd,minibatch", "seed=1,2", "trainer.max_epochs=4", "tracking.log_model=false",
            "tracking.plots=false"]
    procs = [start(tmp_path, *args) for _ in range(2)]  # the store does not exist yet
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    uri = store_uri(tmp_path)
    runs = all_runs(uri)
    parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents}]
    assert len(parents) == 2 and len(children) == 16 and len(runs) == 18
    assert all(r.info.status == "FINISHED" for r in runs)
    client = mlflow.MlflowClient(uri)
    for child in children:  # every metric point of every epoch arrived
        for key in ("train/loss", "val/loss"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)].__len__() == 4


# Property: whatever override a user types, the CLI either trains (one FINISHED run) or refuses
# with a one-paragraph error, and never leaves a RUNNING run or an unexplained traceback.
KEYS = ["model", "optimizer", "regularizer", "data", "seed", "model.hidden", "model.bias", "optimizer.lr",
        "optimizer.batch_size", "optimizer.momentum", "regularizer.strength", "data.n_samples",
        "data.noise", "data.val_fraction", "data.standardize", "trainer.max_epochs", "tracking.plots",
        "sweep.mode", "model.activation", "nonsense", "data.path"]


def overrides():
    from hypothesis import strategies as st

    values = st.one_of(
        st.sampled_from(["linear", "logistic", "cnn", "gd", "adam", "l1", "csv", "digits", "null", "true", "min"]),
        st.integers(-3, 40).map(str),
        st.floats(-2, 2, allow_nan=False).map(lambda f: f"{f:.3g}"),
        st.text(alphabet="abcxyz019._-", min_size=1, max_size=6),
    )
    pair = st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.lists(pair, min_size=1, max_size=3)


@pytest.mark.slow
def test_random_overrides_never_leave_a_running_run_or_a_bare_traceback(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings

    seen = {"examples": 0, "trained": 0, "refused": 0, "runs_checked": 0}

    @settings(max_examples=int(os.environ.get("ORCHESTRATOR_FUZZ_EXAMPLES", "25")), deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(overrides())
    def check(args):
        folder = tmp_path_factory.mktemp("fuzz")
        result = cli(*args, "trainer.max_epochs=1", "tracking.log_model=false", "tracking.plots=false",
                     cwd=folder, timeout=300)
        seen["examples"] += 1
        assert "Traceback" not in result.stderr, (args, result.stderr[-2000:])
        runs = all_runs(store_uri(folder)) if (folder / "mlruns" / "mlflow.db").exists() else []
        seen["runs_checked"] += len(runs)
        assert all(r.info.status != "RUNNING" for r in runs), args
        if result.returncode == 0:
            seen["trained"] += 1
            assert [r.info.status for r in runs] == ["FINISHED"], args
        else:
            seen["refused"] += 1
            assert result.returncode == 2, (args, result.returncode, result.stderr[-1500:])
            assert result.stderr.strip().splitlines()[-1].startswith("Error: "), (args, result.stderr[-1500:])

    check()
    print(f"\nfuzzed {seen}")
    assert seen["trained"] and seen["refused"]


def test_a_hard_killed_run_resumes_from_its_periodic_checkpoint(tmp_path):
    """kill -9 leaves no chance to write anything: the checkpoint logged before the last metric
    send is what resume= continues from, in the same run, never behind an epoch the store holds."""
    proc = start(tmp_path, "trainer.max_epochs=1000000", "tracking.log_model=false", "tracking.plots=false",
                 "tracking.flush_seconds=0.3")
    wait_for_training(tmp_path, proc)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=60)
    uri = store_uri(tmp_path)
    (run,) = all_runs(uri)
    assert run.info.status == "RUNNING"  # nobody could end it
    client = mlflow.MlflowClient(uri)
    path = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    import torch

    saved_epoch = torch.load(path, weights_only=True)["epoch"]
    recorded = max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    global_steps_in_checkpoint = torch.load(path, weights_only=True)["global_step"]
    assert global_steps_in_checkpoint >= recorded  # the checkpoint covers every recorded point

    resumed = cli(f"resume={run.info.run_id}", f"trainer.max_epochs={saved_epoch + 3}", "tracking.plots=false",
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (after,) = all_runs(uri)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert max(steps) > recorded and "test/loss" in after.data.metrics


def test_periodic_checkpoints_can_be_turned_off(tmp_path):
    done = cli("trainer.max_epochs=30", "tracking.flush_seconds=0.001", "tracking.checkpoints=false",
               "tracking.log_model=false", "tracking.plots=false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert mlflow.MlflowClient(store_uri(tmp_path)).list_artifacts(run.info.run_id, "checkpoints") == []


CTRL_C_BETWEEN_JOBS = """
import os, signal

from orchestrator import hookimpl


@hookimpl
def on_sweep_start(sweep_dir, overrides):
    # As in a terminal: a process started in the background of a non-interactive shell (CI run
    # with &) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while Hydra, not a job, is running
"""


def test_ctrl_c_outside_a_job_ends_the_sweep_with_the_clean_message(tmp_path):
    from conftest import make_distribution, with_site

    site = tmp_path / "site"
    make_distribution(site, "ctrl-c", "1.0", {"ctrl_c": "ctrl_c"}, {"ctrl_c.py": CTRL_C_BETWEEN_JOBS})
    result = cli("-m", "model=linear,logistic", "tracking.log_model=false", cwd=tmp_path, env=with_site(site))
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Interrupted" in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    (parent,) = all_runs(store_uri(tmp_path))
    assert parent.info.status == "KILLED"


FLAKY = """
from orchestrator import hookimpl

failures = {"left": 1}


@hookimpl
def on_run_start(run, cfg):
    if cfg.seed == 1 and failures["left"]:  # the first attempt of one job crashes
        failures["left"] -= 1
        raise ConnectionError("the store went away")
"""


@pytest.mark.parametrize("retries", [0, 1])
def test_sweep_retries_a_job_that_crashed_and_keeps_each_attempt(tmp_path, retries):
    from conftest import make_distribution, with_site

    site = tmp_path / "site"
    make_distribution(site, "flaky", "1.0", {"flaky": "flaky"}, {"flaky.py": FLAKY})
    result = cli("-m", "seed=0,1", f"sweep.retries={retries}", "trainer.max_epochs=2", "tracking.log_model=false",
                 "tracking.plots=false", cwd=tmp_path, env=with_site(site))
    children = [r for r in all_runs(store_uri(tmp_path)) if "mlflow.parentRunId" in r.data.tags]
    if not retries:
        assert result.returncode == 1 and "ConnectionError" in result.stderr
        assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]
        return
    assert result.returncode == 0, result.stderr[-3000:]
    assert "attempt 1 of 2 failed: ConnectionError" in result.stderr
    attempts = sorted((r.data.params["seed"], r.data.tags["orchestrator.attempt"], r.info.status,
                       r.data.tags.get("orchestrator.retried")) for r in children)
    assert attempts == [("0", "1", "FINISHED", None), ("1", "1", "FAILED", "true"), ("1", "2", "FINISHED", None)]
    parent = next(r for r in all_runs(store_uri(tmp_path)) if r.data.tags.get("orchestrator.sweep") == "parent")
    assert parent.data.tags["orchestrator.sweep.failed"] == "0" and parent.data.tags["orchestrator.sweep.retried"] == "1"


def test_bad_input_and_divergence_are_not_retried(tmp_path):
    result = cli("-m", "optimizer.lr=50", "trainer.max_epochs=300", "sweep.retries=2", "tracking.log_model=false",
                 "tracking.plots=false", cwd=tmp_path)
    assert result.returncode == 1
    children = [r for r in all_runs(store_uri(tmp_path)) if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.status for r in children] == ["FAILED"] and "trying again" not in result.stderr


def test_slow_checkpoints_space_out_the_metric_sends_not_the_metrics(compose, catalog, tmp_path, monkeypatch):
    """A checkpoint that takes long to write spaces the sends (each still behind a checkpoint)
    so that checkpointing stays a small part of training; every epoch's metrics still arrive."""
    import pytorch_lightning as pl

    from orchestrator.runner import run

    saves, original = [], pl.Trainer.save_checkpoint

    def slow(self, *args, **kwargs):
        saves.append(time.monotonic())
        time.sleep(0.1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", slow)
    result = run(compose("trainer.max_epochs=40", "tracking.flush_seconds=0.001", "tracking.log_model=false",
                         "tracking.plots=false"), catalog=catalog)
    assert 1 <= len(saves) <= 5, len(saves)  # not one a epoch: at least 10 x 0.1 s apart
    assert all(b - a >= 0.9 for a, b in zip(saves, saves[1:]))
    history = mlflow.MlflowClient(store_uri(tmp_path)).get_metric_history(result.run_id, "train/loss")
    assert len(history) == 40
