"""Performance benchmark: this framework against a hand-written loop and a Lightning template.

    python -m bench.perf [--repeat 3] [--quick] [--json FILE]

For each task, the same training (model, data split, seed, epochs, batch size, learning rate)
is done three ways, each in its own process so peak memory is its own:

  (a) floor      a minimal hand-written PyTorch loop, data as tensors in memory;
  (b) template   Lightning fed by DataLoader(TensorDataset) for train and val (what a typical
                 template gives), no logger;
  (c) framework  orchestrator.run() in process (its fit time), and the whole
                 `python -m orchestrator ...` process (wall time, start-up, after-training).

It checks the three reach the same result within a stated tolerance, then prints medians,
ratios to (a), peak memory, and the whole-process costs (floor process that only imports torch,
Lightning and MLflow; `orchestrator plugins`; `--help`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

#: name -> (overrides, metric compared, tolerance, what the tolerance means)
TASKS = {
    "linear-gd": (["model=linear", "optimizer=gd", "data.n_samples=1000", "trainer.max_epochs=1000"],
                  "test/loss", 1e-4, "relative"),
    "logistic-gd": (["model=logistic", "optimizer=gd", "data.n_samples=1000", "trainer.max_epochs=1000"],
                    "test/loss", 1e-4, "relative"),
    "cnn-adam": (["model=cnn", "optimizer=adam", "optimizer.batch_size=64", "trainer.max_epochs=10"],
                 "test/accuracy", 0.03, "absolute"),
    "linear-minibatch": (["model=linear", "optimizer=minibatch", "optimizer.batch_size=32",
                          "data.n_samples=1000", "trainer.max_epochs=100"], "test/loss", 0.05, "relative"),
}
QUICK_EPOCHS = {"linear-gd": 20, "logistic-gd": 20, "cnn-adam": 1, "linear-minibatch": 2}


def overrides_for(task: str, quick: bool) -> list[str]:
    args = list(TASKS[task][0])
    if quick:
        args = [a for a in args if not a.startswith("trainer.max_epochs")] + [f"trainer.max_epochs={QUICK_EPOCHS[task]}"]
    return args


def compose(args: list[str], store: str):
    from orchestrator.config import compose as compose_like_the_cli

    return compose_like_the_cli([f"tracking.uri={store}", "tracking.log_model=false", "tracking.plots=false", *args])


def evaluate(model, splits, loss_of) -> dict[str, float]:
    import torch

    model.eval()
    with torch.no_grad():
        x, y = torch.from_numpy(splits.x_test), torch.from_numpy(splits.y_test)
        loss, prediction = loss_of(model(x), y)
    out = {"test/loss": float(loss)}
    if splits.task == "classification":
        out["test/accuracy"] = float((prediction == y).float().mean())
    return out


def loss_function(splits):
    """The framework's own loss for the task, so all three optimise the same objective: the
    loss and what the metrics compare with the targets (``orchestrator.task``)."""
    task = splits.task_object
    return lambda out, y: (task.loss(out, y), task.prediction(out))


def pieces(prepared):
    """The optimizer factory, penalty and batch size the framework would train with."""
    module, data = prepared.training.module, prepared.training.data
    return module.make_optimizer, module.penalty, data.batch_size


def floor(cfg) -> tuple[float, dict]:
    """(a): the forty lines a user would write by hand."""
    import torch

    from orchestrator.plugins import get_catalog
    from orchestrator.runner import prepare

    p = prepare(cfg, get_catalog(), cfg.tracking.uri)
    s, model, loss_of = p.splits, p.model, loss_function(p.splits)
    make_optimizer, penalty, batch_size = pieces(p)
    x = torch.from_numpy(s.x_train)
    y = torch.from_numpy(s.y_train).to(s.task_object.target_dtype())
    optimizer = make_optimizer(model.parameters())
    size = len(x) if batch_size is None else batch_size
    generator = torch.Generator().manual_seed(int(cfg.seed))
    start = time.perf_counter()
    for _ in range(cfg.trainer.max_epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator) if size < len(x) else None
        for first in range(0, len(x), size):
            index = slice(first, first + size) if order is None else order[first : first + size]
            loss, _ = loss_of(model(x[index]), y[index])
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return seconds, evaluate(model, s, loss_of)


def template(cfg) -> tuple[float, dict]:
    """(b): Lightning with DataLoader(TensorDataset), as a typical template sets it up."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from orchestrator.plugins import get_catalog
    from orchestrator.runner import prepare

    p = prepare(cfg, get_catalog(), cfg.tracking.uri)
    s, loss_of = p.splits, loss_function(p.splits)
    make_optimizer, penalty, batch_size = pieces(p)
    as_y = lambda a: torch.from_numpy(a).to(s.task_object.target_dtype())
    train = TensorDataset(torch.from_numpy(s.x_train), as_y(s.y_train))
    val = TensorDataset(torch.from_numpy(s.x_val), as_y(s.y_val))
    size = len(train) if batch_size is None else batch_size

    class Module(pl.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            loss, _ = loss_of(self.model(batch[0]), batch[1])
            return loss if penalty is None else loss + penalty(self.model)

        def validation_step(self, batch, batch_idx):
            loss, _ = loss_of(self.model(batch[0]), batch[1])
            self.log("val/loss", loss)

        def configure_optimizers(self):
            return make_optimizer(self.model.parameters())

    module = Module(p.model)
    trainer = pl.Trainer(max_epochs=cfg.trainer.max_epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, DataLoader(train, batch_size=size, shuffle=size < len(train)),
                DataLoader(val, batch_size=len(val)))
    seconds = time.perf_counter() - start
    return seconds, evaluate(p.model, s, loss_of)


def framework(cfg) -> tuple[float, dict]:
    """(c) in process: orchestrator.run(); its fit time (validation and MLflow logging included)."""
    from orchestrator.runner import run

    result = run(cfg)
    extra = {"logging_seconds": result.metrics["time/logging_seconds"]}
    return result.metrics["time/fit_seconds"], {**{k: v for k, v in result.metrics.items() if k.startswith("test/")}, **extra}


VARIANTS = {"floor": floor, "template": template, "framework": framework}


def worker(task: str, variant: str, repeat: int, quick: bool) -> None:
    """One (task, variant) in this process: repeated runs, then peak memory."""
    import resource

    import mlflow  # noqa: F401  (imported before timing, like torch and Lightning)
    import pytorch_lightning  # noqa: F401

    times, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            cfg = compose(overrides_for(task, quick), f"sqlite:///{tmp}/mlflow.db")
            seconds, result = VARIANTS[variant](cfg)
            times.append(seconds)
            results.append(result)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "results": results, "peak_mb": peak}))


def spawn(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def measure(task: str, variant: str, repeat: int, quick: bool) -> dict:
    out = spawn("-m", "bench.perf", "--worker", task, variant, "--repeat", str(repeat),
                *(["--quick"] if quick else []), cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise SystemExit(f"{task}/{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_process(task: str, repeat: int, quick: bool) -> dict:
    """(c) as a user runs it: `python -m orchestrator ...`, model and plots logged."""
    import mlflow

    walls, startups, fits, afters = [], [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = spawn("-m", "orchestrator", *overrides_for(task, quick), cwd=tmp)
            wall = time.perf_counter() - start
            if out.returncode != 0:
                raise SystemExit(f"{task} process failed:\n{out.stderr[-3000:]}")
            (run,) = mlflow.MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db").search_runs(["1"])
            m = run.data.metrics
            walls.append(wall)
            startups.append(m.get("time/startup_seconds", float("nan")))
            fits.append(m["time/fit_seconds"])
            afters.append(wall - m.get("time/startup_seconds", 0) - m["time/fit_seconds"])
    med = statistics.median
    return {"wall": med(walls), "startup": med(startups), "fit": med(fits), "after_training": med(afters)}


def timed(*args: str, repeat: int) -> float:
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = spawn(*args)
        walls.append(time.perf_counter() - start)
        assert out.returncode == 0, out.stderr[-2000:]
    return statistics.median(walls)


def agree(task: str, results: dict[str, dict]) -> tuple[bool, str]:
    _, metric, tolerance, kind = TASKS[task]
    values = {v: statistics.median(r[metric] for r in results[v]["results"]) for v in results}
    ref = values["floor"]
    if kind == "relative":
        worst = max(abs(v - ref) / max(abs(ref), 1e-12) for v in values.values())
    else:
        worst = max(abs(v - ref) for v in values.values())
    text = f"{metric}: " + " / ".join(f"{values[v]:.4g}" for v in ("floor", "template", "framework"))
    return worst <= tolerance, f"{text} (max {kind} diff {worst:.1e} <= {tolerance})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it still runs")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--json")
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, repeat=args.repeat, quick=args.quick)
        return 0

    med = statistics.median
    report: dict = {"tasks": {}, "process": {}}
    all_agree = True
    print(f"orchestrator benchmark: {os.cpu_count()} cores, median of {args.repeat}, times in seconds\n")
    header = f"{'task':<17} | {'(a) floor':>9} | {'(b) template':>12} | {'(c) fit':>8} | {'c/a':>5} | {'c/b':>5} | {'log %':>5} | {'(c) process':>11} | {'start-up':>8} | {'after':>6} | {'peak MB a/b/c':>15} | agreement"
    print(header)
    print("-" * len(header))
    for task in args.tasks.split(","):
        results = {v: measure(task, v, args.repeat, args.quick) for v in VARIANTS}
        a, b, c = (med(results[v]["times"]) for v in VARIANTS)
        logging = med(r["logging_seconds"] for r in results["framework"]["results"])
        process = whole_process(task, args.repeat, args.quick)
        ok, text = agree(task, results)
        all_agree &= ok
        peaks = "/".join(f"{results[v]['peak_mb']:.0f}" for v in VARIANTS)
        row = {"floor": a, "template": b, "framework_fit": c, "c_over_a": c / a, "c_over_b": c / b,
               "logging_share": logging / c, "process": process, "peak_mb": {v: results[v]["peak_mb"] for v in VARIANTS},
               "agree": ok, "agreement": text}
        report["tasks"][task] = row
        print(f"{task:<17} | {a:9.3f} | {b:12.3f} | {c:8.3f} | {c / a:5.2f} | {c / b:5.2f} | {100 * logging / c:5.1f} | "
              f"{process['wall']:11.2f} | {process['startup']:8.2f} | {process['after_training']:6.2f} | {peaks:>15} | "
              f"{'ok' if ok else 'DIFFER'}: {text}")
    floor_process = timed("-c", "import torch, pytorch_lightning, mlflow", repeat=args.repeat)
    plugins = timed("-m", "orchestrator", "plugins", repeat=args.repeat)
    help_ = timed("-m", "orchestrator", "--help", repeat=args.repeat)
    report["process"] = {"floor_imports": floor_process, "plugins": plugins, "help": help_}
    print(f"\nfloor process (import torch, pytorch_lightning, mlflow): {floor_process:.2f} s")
    print(f"orchestrator plugins: {plugins:.2f} s    python -m orchestrator --help: {help_:.2f} s")
    if "cnn-adam" in report["tasks"]:
        t = report["tasks"]["cnn-adam"]
        ratio = t["process"]["wall"] / (floor_process + t["floor"])
        report["process"]["cnn_process_over_floor"] = ratio
        print(f"whole CNN run / (floor process + (a) training): {ratio:.2f}")
    print("\ntargets: gd tasks c/b <= 0.15 and c/a <= 4; cnn c/a <= 1.4; log % <= 10; plugins, --help <= 1.0 s; "
          "CNN process ratio <= 1.6")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all_agree or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
