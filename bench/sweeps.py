"""Sweep benchmark: the same 12-job sweep with Hydra's basic launcher and with the joblib
launcher (2 workers), in one run, each into a fresh store.

    python -m bench.sweeps [--epochs N] [--json FILE]

Prints wall times, their ratio (joblib / basic), and checks that both sweeps leave one parent
with 12 FINISHED children and every child's metric history complete.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    basic = run_sweep([], args.epochs)
    joblib = run_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], args.epochs)
    ratio = joblib["seconds"] / basic["seconds"]
    print(f"12-job sweep, {args.epochs} epochs per job, {os.cpu_count()} cores")
    print(f"{'launcher':<10} | {'wall s':>7} | parents | FINISHED children | metric points lost")
    for name, row in (("basic", basic), ("joblib x2", joblib)):
        print(f"{name:<10} | {row['seconds']:7.1f} | {row['parents']:7d} | {row['finished_children']:17d} | {row['points_lost']:18d}")
    print(f"ratio joblib / basic: {ratio:.2f} (target <= 0.65)")
    if args.json:
        Path(args.json).write_text(json.dumps({"basic": basic, "joblib": joblib, "ratio": ratio}, indent=2))
    ok = all(r["parents"] == 1 and r["finished_children"] == 12 and r["points_lost"] == 0 for r in (basic, joblib))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
