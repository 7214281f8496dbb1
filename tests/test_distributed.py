"""Beyond one process: DDP on the CPU (2 ranks, gloo, rendezvous on 127.0.0.1 only), its
refusal inside sweeps, Hydra's submitit launcher, and the Slurm preset. DDP runs in a
subprocess with a wall-clock limit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import all_runs, cli, make_distribution, store_uri
from servers import descendants, listening_addresses


def test_ddp_on_cpu_trains_two_ranks_into_one_run_on_loopback_only(tmp_path):
    args = ["model=cnn", "optimizer=adam", "trainer.max_epochs=3", "tracking.log_model=false", "tracking.plots=false"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "trainer=ddp_cpu", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_ranks, addresses = 0, set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        tree = descendants(proc.pid)
        seen_ranks = max(seen_ranks, sum(1 for p in tree if p != proc.pid and _is_orchestrator(p)) + 1)
        if shutil.which("ss"):
            addresses |= set().union(*(listening_addresses(p) for p in tree))
        time.sleep(0.3)
    if proc.poll() is None:
        proc.kill()
        pytest.fail("DDP did not finish within 300 s")
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert seen_ranks == 2  # rank 0 and the process Lightning started for rank 1
    assert addresses <= {"127.0.0.1"}, addresses
    (run,) = all_runs(store_uri(tmp_path))  # exactly one MLflow run, from rank zero
    assert run.info.status == "FINISHED" and run.data.params["trainer.strategy"] == "ddp_loopback"
    single = cli("trainer=cpu", *args, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    one = next(r for r in all_runs(store_uri(tmp_path)) if r.info.run_id != run.info.run_id)
    # the same global batch: the same training, up to floating-point reduction order
    assert abs(run.data.metrics["test/accuracy"] - one.data.metrics["test/accuracy"]) <= 0.02
    assert run.data.metrics["train/loss"] == pytest.approx(one.data.metrics["train/loss"], rel=0.05)


def _is_orchestrator(pid: int) -> bool:
    try:
        return b"orchestrator" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def test_ddp_inside_a_sweep_is_refused_with_the_reason(tmp_path):
    result = cli("-m", "trainer=ddp_cpu", "model=linear,logistic", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "cannot run inside a multirun sweep" in result.stderr and "submitit" in result.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or all_runs(store_uri(tmp_path)) == []


def test_ddp_shards_are_disjoint_and_cover_the_epoch():
    import torch

    from orchestrator.lightning import TensorBatches

    x = torch.arange(100).float().unsqueeze(1)
    shards = [list(TensorBatches(x, x[:, 0], 20, shuffle=True, seed=3, rank=r, world_size=2)) for r in range(2)]
    seen = [torch.cat([b[0][:, 0] for b in shard]).tolist() for shard in shards]
    assert len(shards[0]) == len(shards[1]) == 5  # equal batch counts, or DDP would hang
    assert all(len(b[0]) == 10 for shard in shards for b in shard)  # global batch 20 = 2 x 10
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 100


def test_submitit_local_sweep_nests_its_runs(tmp_path):
    result = cli("-m", "hydra/launcher=submitit_local", "model=linear,logistic", "trainer.max_epochs=2",
                 "tracking.log_model=false", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(store_uri(tmp_path))
    parent = next(r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["orchestrator.launcher"] == "LocalLauncher"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)


def test_slurm_preset_documents_what_a_slurm_user_sets(tmp_path):
    result = cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_task=1",
                 "--cfg", "hydra", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("partition: gpu", "gpus_per_task: 1", "timeout_min: 60", "SlurmLauncher"):
        assert line in result.stdout


# --------------------------------------------------------------------------------------------
# A failure in any rank ends every rank: the run is FAILED with the reason, exit status non-zero.
# --------------------------------------------------------------------------------------------

BREAKER = '''
import os

import pytorch_lightning as pl

from orchestrator import hookimpl


class BreakRankOne(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.global_rank == 1 and trainer.current_epoch == 2:
            raise RuntimeError("rank one broke on purpose")


@hookimpl
def add_callbacks(cfg):
    return [BreakRankOne()] if os.environ.get("BREAK_RANK_ONE") else []
'''


def _breaker_plugin(root):
    """A throwaway installed distribution whose callback raises in rank 1 only."""
    make_distribution(root, "rank-breaker", "1.0", {"rank_breaker": "rank_breaker"}, {"rank_breaker.py": BREAKER})


def _start_ddp(tmp_path, env_extra=None, epochs=400):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ORCHESTRATOR_DISABLE_PLUGIN_AUTOLOAD")}
    env.update(env_extra or {})
    args = ["trainer=ddp_cpu", "model=cnn", "optimizer=adam", f"trainer.max_epochs={epochs}",
            "tracking.log_model=false", "tracking.plots=false"]
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc, limit):
    try:
        _, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"rank zero was still running {limit} s after the other rank failed")
    return stderr


def test_a_rank_killed_ends_every_rank_and_fails_the_run(tmp_path):
    from orchestrator.tracking import ensure_store

    ensure_store(store_uri(tmp_path))  # made before the test polls it, so no migration race
    proc = _start_ddp(tmp_path)
    deadline = time.monotonic() + 240
    others: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        others = {p for p in descendants(proc.pid) if p != proc.pid and _is_orchestrator(p)}
        runs = all_runs(store_uri(tmp_path))
        if others and runs and runs[0].data.metrics.get("train/loss") is not None:
            break  # both ranks are training
        time.sleep(0.5)
    assert others and proc.poll() is None, "DDP did not start training"
    os.kill(next(iter(others)), 9)
    killed_at = time.monotonic()
    stderr = _finish(proc, 60)
    assert time.monotonic() - killed_at < 30
    assert proc.returncode not in (0, None), stderr[-2000:]
    assert not any(os.path.exists(f"/proc/{p}") and _is_orchestrator(p) for p in others)
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FAILED"
    assert "DDP rank 1" in run.data.tags["error"] and "SIGKILL" in run.data.tags["error"]
    assert "DDP rank 1" in stderr


def test_a_rank_that_raises_ends_every_rank_with_its_reason(tmp_path):
    _breaker_plugin(tmp_path)
    proc = _start_ddp(tmp_path, {"PYTHONPATH": str(tmp_path), "BREAK_RANK_ONE": "1"}, epochs=50)
    stderr = _finish(proc, 240)
    assert proc.returncode == 1, stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.info.status == "FAILED"
    assert "rank one broke on purpose" in run.data.tags["error"] and "DDP rank 1" in run.data.tags["error"]
    # one paragraph and where the traceback is, not Hydra's raw traceback
    assert "rank one broke on purpose" in stderr and "traceback is in" in stderr
    assert "Error executing job" not in stderr
