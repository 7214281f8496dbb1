"""GPU check: the CNN on the digits, on the CPU and on the GPU, with time and accuracy.

    python -m bench.gpu_check [--epochs 20] [--precision 32-true]

Run it on a machine with a CUDA GPU (it says so and exits 0 where there is none). Each run is a
real `python -m orchestrator` process into a temporary MLflow store; the table gives the fit
time, the whole-process time and the test accuracy, and checks both devices agree within noise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def one(device: str, epochs: int, precision: str) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "orchestrator", "experiment=cnn_digits", f"trainer={device}",
             f"trainer.max_epochs={epochs}", f"trainer.precision={precision if device == 'gpu' else '32-true'}"],
            cwd=tmp, env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"{device} run failed:\n{out.stderr[-3000:]}")
        (run,) = mlflow.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db").search_runs(["1"])
        return {"fit": run.data.metrics["time/fit_seconds"], "wall": wall,
                "accuracy": run.data.metrics["test/accuracy"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--precision", default="32-true", help="GPU precision: 32-true, 16-mixed, bf16-mixed")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU here: nothing to compare (run this on a machine with one).")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {args.epochs} epochs")
    rows = {device: one(device, args.epochs, args.precision) for device in ("cpu", "gpu")}
    print(f"{'device':<6} | {'fit s':>7} | {'process s':>9} | test accuracy")
    for device, row in rows.items():
        print(f"{device:<6} | {row['fit']:7.2f} | {row['wall']:9.2f} | {row['accuracy']:.4f}")
    print(f"GPU / CPU fit time: {rows['gpu']['fit'] / rows['cpu']['fit']:.2f}")
    return 0 if abs(rows["gpu"]["accuracy"] - rows["cpu"]["accuracy"]) <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
