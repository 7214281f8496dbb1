"""Correctness benchmark: the built-in models reach what the reference solvers reach.

    python -m bench.correctness [--quick] [--json FILE]

Each row trains with ``orchestrator.run`` on a config composed exactly as the CLI composes it
(MLflow store in a temporary directory) and compares with numpy or scikit-learn on the same
split. It prints a table and exits non-zero when a row misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

def composer(store: Path):
    from orchestrator.config import compose

    def _compose(*overrides):
        return compose([f"tracking.uri=sqlite:///{store}/mlflow.db", "tracking.log_model=false", *overrides])

    return _compose


def export_csv(bunch, path: Path) -> Path:
    import pandas as pd

    frame = pd.DataFrame(bunch.data, columns=[f"f{i}" for i in range(bunch.data.shape[1])])
    frame["target"] = bunch.target
    frame.to_csv(path, index=False)
    return path


def linear_least_squares(compose, quick):
    from orchestrator import run

    epochs = 300 if quick else 1000
    result = run(compose("model=linear", "optimizer=gd", "data=regression", "data.n_samples=1000",
                         "data.n_features=1", "data.standardize=false", f"trainer.max_epochs={epochs}"))
    s = result.splits
    design = np.c_[s.x_train, np.ones(len(s.x_train))].astype(np.float64)
    exact, *_ = np.linalg.lstsq(design, s.y_train.astype(np.float64), rcond=None)
    layer = result.predictor.model.linear
    learned = np.r_[layer.weight.detach().numpy().ravel(), layer.bias.detach().numpy()]
    error = float(np.max(np.abs(learned - exact) / np.abs(exact)))
    return {
        "check": f"linear+gd, y=3x+2+noise, {epochs} full-batch steps",
        "ours": f"w={learned[0]:.5f} b={learned[1]:.5f}",
        "reference": f"numpy lstsq w={exact[0]:.5f} b={exact[1]:.5f}",
        "measure": f"max rel. error {error:.1e}",
        "target": "<= 1e-3",
        "ok": error <= 1e-3,
    }


def linear_diabetes(compose, folder, quick):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    from orchestrator import run

    path = export_csv(load_diabetes(), folder / "diabetes.csv")
    epochs = 500 if quick else 3000
    result = run(compose("model=linear", "optimizer=gd", "optimizer.lr=0.2", "data=csv",
                         f"data.path={path}", "data.target=target", f"trainer.max_epochs={epochs}"))
    s = result.splits
    reference = r2_score(s.y_test, LinearRegression().fit(s.x_train, s.y_train).predict(s.x_test))
    ours = result.metrics["test/r2"]
    return {
        "check": f"linear+gd on diabetes.csv, {epochs} steps",
        "ours": f"test R2 {ours:.4f}",
        "reference": f"sklearn LinearRegression {reference:.4f}",
        "measure": f"|diff| {abs(ours - reference):.4f}",
        "target": "<= 0.01",
        "ok": abs(ours - reference) <= 0.01,
    }


def logistic(compose, folder, quick, loader, name):
    from sklearn.linear_model import LogisticRegression

    from orchestrator import run

    path = export_csv(loader(), folder / f"{name}.csv")
    epochs = 300 if quick else 2000
    args = ["model=logistic", "optimizer=gd", "optimizer.lr=0.5", "data=csv", f"data.path={path}",
            "data.target=target", "data.task=classification", f"trainer.max_epochs={epochs}"]
    # scikit-learn's default penalty is 0.5 * |w|^2 / C on the summed loss; ours is on the mean
    # loss, so the same model has strength 1 / (2 * C * n_train).
    probe = run(compose(*args, "trainer.max_epochs=1"))
    n_train = len(probe.splits.y_train)
    result = run(compose(*args, "regularizer=l2", f"regularizer.strength={1 / (2 * n_train)}"))
    s = result.splits
    reference = LogisticRegression(C=1.0, max_iter=10000).fit(s.x_train, s.y_train).score(s.x_test, s.y_test)
    ours = result.metrics["test/accuracy"]
    return {
        "check": f"logistic+gd+l2 on {name}.csv, {epochs} steps",
        "ours": f"test accuracy {ours:.4f}",
        "reference": f"sklearn LogisticRegression {reference:.4f}",
        "measure": f"diff {100 * (ours - reference):+.2f} points",
        "target": ">= -1 point",
        "ok": ours >= reference - 0.01,
    }


def cnn_digits(compose, quick):
    from orchestrator import run

    epochs = 3 if quick else 20
    seeds = [0] if quick else [0, 1, 2]
    scores, seconds = [], []
    for seed in seeds:
        start = time.perf_counter()
        result = run(compose("model=cnn", "optimizer=adam", "optimizer.lr=0.003",
                             "optimizer.batch_size=32", f"trainer.max_epochs={epochs}", f"seed={seed}"))
        seconds.append(time.perf_counter() - start)
        scores.append(result.metrics["test/accuracy"])
    median = float(np.median(scores))
    return {
        "check": f"cnn+adam on digits, {epochs} epochs, seeds {seeds}",
        "ours": "test accuracy " + ", ".join(f"{a:.4f}" for a in scores),
        "reference": "target from the issue",
        "measure": f"median {median:.4f}, {np.median(seconds):.1f} s/run",
        "target": ">= 0.97" if not quick else "(quick: not checked)",
        "ok": quick or median >= 0.97,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it still runs")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_breast_cancer, load_wine

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        compose = composer(folder)
        rows = [
            linear_least_squares(compose, args.quick),
            linear_diabetes(compose, folder, args.quick),
            logistic(compose, folder, args.quick, load_breast_cancer, "breast_cancer"),
            logistic(compose, folder, args.quick, load_wine, "wine"),
            cnn_digits(compose, args.quick),
        ]
    columns = ["check", "ours", "reference", "measure", "target", "ok"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(str(row[c]).ljust(widths[c]) for c in columns))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if args.quick or all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
