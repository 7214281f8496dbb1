"""Sweep benchmark: the same 12-job sweep with Hydra's basic launcher and with the joblib
launcher (2 workers), in one run, each into a fresh store; and an 8-job sweep run once, then
again with sweep.reuse=true (every job's key matches a FINISHED run: nothing is trained).

    python -m bench.sweeps [--epochs N] [--only launchers|reuse] [--json FILE]

Prints wall times, their ratios (joblib / basic; reuse / first), and checks that both launcher
sweeps leave one parent with 12 FINISHED children and every child's metric history complete, and
that the rerun reused all 8 jobs. Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["model=linear,logistic", "optimizer=gd,minibatch,adam", "seed=0,1"]  # 12 jobs
REUSE_SWEEP = ["model=linear,logistic", "optimizer=gd,adam", "seed=0,1", "data.n_samples=200"]  # 8 jobs


def run_sweep(launcher: list[str], epochs: int) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "-m", *SWEEP, *launcher,
             f"trainer.max_epochs={epochs}", "tracking.log_model=false"],
            cwd=tmp, env=env, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"sweep failed:\n{result.stderr[-3000:]}")
        client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        runs = client.search_runs(["1"], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        points = [len(client.get_metric_history(c.info.run_id, "val/loss")) for c in children]
        return {
            "seconds": seconds,
            "parents": len(parents),
            "finished_children": sum(c.info.status == "FINISHED" for c in children),
            "points_lost": sum(epochs - p for p in points),
        }


def run_reuse(epochs: int) -> dict:
    """The 8-job sweep into a fresh store, then the same sweep with sweep.reuse=true."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        seconds = []
        for extra in ([], ["sweep.reuse=true"]):
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "orchestrator", "-m", *REUSE_SWEEP, f"trainer.max_epochs={epochs}",
                 "tracking.log_model=false", *extra],
                cwd=tmp, env=env, capture_output=True, text=True,
            )
            seconds.append(time.perf_counter() - start)
            if result.returncode != 0:
                raise SystemExit(f"sweep failed:\n{result.stderr[-3000:]}")
        client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        runs = client.search_runs(["1"], max_results=1000, order_by=["attributes.start_time ASC"])
        parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id]
        return {
            "first_seconds": seconds[0],
            "reuse_seconds": seconds[1],
            "ratio": seconds[1] / seconds[0],
            "jobs": len(children),
            "reused": sum("orchestrator.reused_from" in c.data.tags for c in children),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--only", choices=("launchers", "reuse"))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    report, ok = {}, True
    if args.only != "reuse":
        ok = launchers(args.epochs, report)
    if args.only != "launchers":
        reuse = run_reuse(args.epochs)
        print(f"8-job sweep ({' '.join(REUSE_SWEEP)}), {args.epochs} epochs per job, then again with sweep.reuse=true")
        print(f"{'sweep':<18} | {'wall s':>7} | jobs reused")
        print(f"{'first':<18} | {reuse['first_seconds']:7.1f} | {0:11d}")
        print(f"{'sweep.reuse=true':<18} | {reuse['reuse_seconds']:7.1f} | {reuse['reused']:4d} of {reuse['jobs']}")
        print(f"ratio reuse / first: {reuse['ratio']:.2f}")
        report["reuse"] = reuse
        ok = ok and reuse["jobs"] == reuse["reused"] == 8
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


def launchers(epochs: int, report: dict) -> bool:
    """The 12-job sweep with the basic launcher and with joblib (2 workers)."""
    basic = run_sweep([], epochs)
    joblib = run_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], epochs)
    ratio = joblib["seconds"] / basic["seconds"]
    print(f"12-job sweep, {epochs} epochs per job, {os.cpu_count()} cores")
    print(f"{'launcher':<10} | {'wall s':>7} | parents | FINISHED children | metric points lost")
    for name, row in (("basic", basic), ("joblib x2", joblib)):
        print(f"{name:<10} | {row['seconds']:7.1f} | {row['parents']:7d} | {row['finished_children']:17d} | {row['points_lost']:18d}")
    print(f"ratio joblib / basic: {ratio:.2f} (target <= 0.65)")
    report.update(basic=basic, joblib=joblib, ratio=ratio)
    return all(r["parents"] == 1 and r["finished_children"] == 12 and r["points_lost"] == 0 for r in (basic, joblib))


if __name__ == "__main__":
    sys.exit(main())
