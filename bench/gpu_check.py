"""GPU benchmark: the framework against a hand-written PyTorch loop on the GPU, then real commands.

    python -m bench.gpu_check [--parts bench,commands,matrix] [--quick] [--device cuda|cpu] [--json FILE]

Prepare a GPU machine with ``bench/gpu_setup.sh`` (it prints what to run there). Parts (default all,
about 5 minutes on one H100; ``--quick``: tiny sizes, fp32 only, bench only):

  bench     the CNN on scikit-learn's 8x8 digits (``model=cnn data=digits optimizer=adam``) and a
            CNN on 60,000 synthetic 1x28x28 images of 10 classes (``data=bench_images``, registered
            on the plugin manager of this process only). Per precision, each is trained with the
            same split, initial weights, batch order, epochs, batch size and learning rate (a) by a
            hand-written loop (data moved to the device once, indexed by whole batches, autocast for
            mixed precision, TF32 as the framework sets it) and (b) by ``orchestrator.runner.run``
            in process, what ``python -m orchestrator`` calls. Printed: samples/s (training samples
            x epochs / fit seconds), framework/hand, peak GPU memory, both test accuracies and
            whether they agree; targets on the big task: framework >= 0.9 x hand, mixed >= fp32.
  syncs     where the framework's fit and test of the digits CNN wait for the GPU: torch's sync debug
            mode counts every synchronizing call, by the line of orchestrator or Lightning code that
            made it (GPU only).
  commands  issue #10's command list as ``python -m orchestrator`` processes (return code, wall time,
            MLflow run statuses; a hang past the timeout fails), then a GPU-trained model loaded with
            ``mlflow.pyfunc`` in a process that sees no GPU (``CUDA_VISIBLE_DEVICES=""``).
  matrix    every built-in model x optimizer x regularizer in one ``-m`` sweep on the GPU, in each
            precision, and one on the CPU in fp32 at the same time (2 epochs): how many FINISHED, and
            how far each GPU run's test metric is from its CPU run's.

``--device cpu`` runs it all on the CPU (``trainer=cpu``, ``ddp_cpu``); with the default ``cuda`` a
machine without a GPU says so and exits 0. Exit status 1: the two ways disagree on accuracy, a
command fails, or a matrix pair differs. Speed targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
from orchestrator import Data, DataConfig, Dataset, check, hookimpl  # noqa: E402

PARTS = ("bench", "syncs", "commands", "matrix")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
AGREE = 0.02  # test accuracies this close are one result (same device); 0.03 across devices
BIG = ("images28", "images28w")
#: name -> (overrides, epochs, epochs with --quick)
TASKS = {
    "digits": (["model=cnn", "data=digits", "optimizer=adam"], 20, 1),
    "images28": (["model=cnn", "data=bench_images", "optimizer=adam", "optimizer.batch_size=256",
                  "model.channels1=32", "model.channels2=64", "model.hidden=128"], 5, 1),
    # wide enough that the GPU's work, not the Python of either loop, sets the pace of a step
    "images28w": (["model=cnn", "data=bench_images", "optimizer=adam", "optimizer.batch_size=1024",
                   "model.channels1=128", "model.channels2=512", "model.hidden=1024"], 5, 1),
}
TASKS_QUICK = ("digits", "images28")
#: (name, arguments of `python -m orchestrator`, timeout in seconds), written for a GPU
COMMANDS = [
    ("cnn", ["model=cnn", "optimizer=adam", "trainer=gpu"], 120),
    ("cnn bf16", ["model=cnn", "optimizer=adam", "trainer=gpu", "trainer.precision=bf16-mixed"], 120),
    ("cnn 16", ["model=cnn", "optimizer=adam", "trainer=gpu", "trainer.precision=16-mixed"], 120),
    ("linear auto", ["model=linear", "trainer=auto"], 120),
    ("logistic l1", ["model=logistic", "optimizer=minibatch", "regularizer=l1", "trainer=gpu"], 120),
    ("sweep", ["-m", "model=linear,logistic", "optimizer=gd,adam", "trainer=gpu"], 180),
    ("ddp", ["model=cnn", "optimizer=adam", "trainer=ddp", "trainer.max_epochs=3"], 120),
]


SELECTED_COMMANDS: list[str] = []  # --commands


@dataclass
class ImagesConfig(DataConfig):
    #: Number of images generated.
    n_samples: int = check(60000, ge=100)
    #: Standard deviation of the pixel noise added to each class's pattern.
    noise: float = check(0.8, ge=0)
    #: Pixels are left as generated.
    standardize: bool = False


@lru_cache(maxsize=2)
def _images(n: int, noise: float, seed: int):
    """Each class is three Gaussian blobs; each image one, shifted by up to 3 pixels, scaled, noisy."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:28, 0:28].astype(np.float32)
    centres, widths = rng.uniform(7, 21, size=(10, 3, 2)), rng.uniform(1.5, 3.5, size=(10, 3))
    blobs = np.exp(-((grid[None, None] - centres[..., None, None]) ** 2).sum(2) / (2 * widths[..., None, None] ** 2))
    patterns = blobs.sum(1) / blobs.sum(1).max(axis=(1, 2), keepdims=True)  # (10, 28, 28)
    shifted = np.stack([np.roll(patterns, (dy, dx), axis=(1, 2)) for dy in range(-3, 4) for dx in range(-3, 4)], 1)
    y = rng.integers(0, 10, size=n)
    x = shifted[y, rng.integers(0, shifted.shape[1], size=n)] * rng.uniform(0.5, 1.5, size=(n, 1, 1))
    return (x.astype(np.float32) + noise * rng.standard_normal((n, 28, 28), dtype=np.float32))[:, None], y


def make_images(cfg: ImagesConfig, seed: int) -> Dataset:
    x, y = _images(cfg.n_samples, cfg.noise, seed)
    return Dataset(x, y, task="classification", num_classes=10, source="bench: synthetic 28x28 images")


class BenchPlugin:
    """Adds ``data=bench_images`` to this process's catalogue; nothing is installed."""

    @hookimpl
    def register_components(self):
        return [Data("bench_images", ImagesConfig, make_images, "Synthetic 1x28x28 images, 10 classes.")]


def catalog():
    """The installed plugins plus the benchmark's data option, registered with Hydra."""
    from orchestrator.plugins import Catalog, PluginInfo, load_plugins

    pm, infos, failures = load_plugins()
    pm.register(BenchPlugin(), name="bench.gpu_check")
    infos["bench.gpu_check"] = PluginInfo("bench.gpu_check", "orchestrator-bench", "0", "bench.gpu_check")
    return Catalog(pm, infos, failures)


def compose(overrides: list[str], found=None):
    from orchestrator.config import compose as compose_like_the_cli

    return compose_like_the_cli(overrides, found)


def fresh(device) -> None:
    """Free what earlier runs left, so that each peak is its own."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(), torch.cuda.empty_cache(), torch.cuda.reset_peak_memory_stats()


def tf32_in_fit(cfg, device) -> bool:
    """Whether the framework's fit uses TF32 matmuls and convolutions (orchestrator.lightning.use_tf32)."""
    import torch

    return device.type == "cuda" and bool(cfg.get("tf32", True)) and torch.cuda.get_device_capability() >= (8, 0)


def hand(cfg, found, device, precision: str) -> dict:
    """(a) the loop a user would write: same data, model, initial weights and batch order, and the
    same validation pass each epoch (the framework's val/loss and val/accuracy)."""
    import torch

    from orchestrator.runner import prepare

    p = prepare(cfg, found, cfg.tracking.uri)
    s, model, size, epochs = p.splits, p.model, p.training.data.batch_size, cfg.trainer.max_epochs
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    if device.type == "cuda":  # the same TF32 choice as the framework's fit
        torch.set_float32_matmul_precision("high" if tf32_in_fit(cfg, device) else "highest")
        torch.backends.cudnn.allow_tf32 = tf32_in_fit(cfg, device)
    fresh(device)
    start = time.perf_counter()
    x, y = torch.from_numpy(s.x_train).to(device), torch.from_numpy(s.y_train).to(device)
    xv, yv = torch.from_numpy(s.x_val).to(device), torch.from_numpy(s.y_val).to(device)
    optimizer = p.training.module.make_optimizer(model.to(device).parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    generator = torch.Generator().manual_seed(int(cfg.seed))  # the framework's batch order
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(device)
        for first in range(0, len(x), size):
            index = order[first : first + size]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()  # the validation pass the framework makes each epoch: loss and accuracy, read once
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = torch.cat([model(xv[i : i + 8192]) for i in range(0, len(xv), 8192)])
            [float(v) for v in (torch.nn.functional.cross_entropy(out, yv), (out.argmax(-1) == yv).float().mean())]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn
    model.eval()
    with torch.no_grad():
        xt, yt = torch.from_numpy(s.x_test).to(device), torch.from_numpy(s.y_test).to(device)
        predicted = torch.cat([model(xt[i : i + 8192]).argmax(-1) for i in range(0, len(xt), 8192)])
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"sps": len(x) * epochs / seconds, "accuracy": float((predicted == yt).float().mean()), "peak_mb": peak}


def framework(cfg, found, device, output_dir: str) -> dict:
    """(b) orchestrator.runner.run(cfg), as `python -m orchestrator` calls it; its fit time."""
    import torch

    from orchestrator.runner import run

    fresh(device)
    result = run(cfg, catalog=found, output_dir=output_dir)
    m, n = result.metrics, len(result.splits.y_train)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"sps": n * cfg.trainer.max_epochs / m["time/fit_seconds"], "accuracy": m["test/accuracy"], "peak_mb": peak}


def attempt(function, *args) -> dict:
    """One way's result, or the error that stopped it: one failure does not end the benchmark."""
    try:
        return function(*args)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"[:600]}


def bench(device, quick: bool, tmp: Path) -> tuple[list[dict], bool]:
    """Both ways, per task and precision; each row is printed as soon as it is measured."""
    import logging

    import pytorch_lightning  # noqa: F401  (its import sets its logger's level: quieten it after)

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    found = catalog()
    common = [f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db", "tracking.log_model=false", "tracking.plots=false",
              f"trainer={'gpu' if device.type == 'cuda' else 'cpu'}", "trainer.enable_progress_bar=false"]
    # the CPU has no fp16 autocast (Lightning would train 16-mixed as bf16-mixed there)
    precisions = ("32-true",) if quick else PRECISIONS if device.type == "cuda" else ("32-true", "bf16-mixed")
    mark = lambda v: "-" if v is None else "ok" if v else "NOT OK"
    val = lambda way, key, form: "FAILED" if "error" in way else "-" if way[key] is None else format(way[key], form)
    header = (f"{'task':<9} | {'precision':<12} | {'ep':>3} | {'hand samples/s':>14} | {'framework samples/s':>19} | "
              f"{'fw/hand':>7} | {'peak MB hand/fw':>15} | {'accuracy hand/fw':>16} | {'agree':>6} | "
              f"{'fw>=0.9x hand':>13} | {'mixed>=fp32':>11}")
    print("(precision +tf32: the fp32 fit used TF32 matmuls, as the framework's tf32 setting asks)\n" + header
          + "\n" + "-" * len(header), flush=True)
    rows, fp32 = [], None
    for task, (overrides, epochs, quick_epochs) in TASKS.items():
        if quick and task not in TASKS_QUICK:
            continue
        overrides = overrides + (["data.n_samples=2000"] if quick and task in BIG else [])
        if not quick:  # one untimed epoch each, so that first-use costs (CUDA, cuDNN, kernels) are not timed
            warm = compose([*common, *overrides, "trainer.max_epochs=1"], found)
            attempt(hand, warm, found, device, "32-true"), attempt(framework, warm, found, device, tmp)
        for precision in precisions:
            cfg = compose([*common, *overrides, f"trainer.precision={precision}",
                           f"trainer.max_epochs={quick_epochs if quick else epochs}"], found)
            a, b = attempt(hand, cfg, found, device, precision), attempt(framework, cfg, found, device, tmp)
            ratio = b["sps"] / a["sps"] if "error" not in a and "error" not in b else None
            big, sps = task in BIG, b.get("sps")
            fp32 = sps if big and precision == "32-true" else fp32
            r = {"task": task, "precision": precision, "epochs": cfg.trainer.max_epochs, "hand": a, "framework": b,
                 "tf32": precision == "32-true" and tf32_in_fit(cfg, device), "ratio": ratio,
                 "agree": ratio is not None and abs(a["accuracy"] - b["accuracy"]) <= AGREE,
                 "target_ratio": (ratio or 0) >= 0.9 if big else None,
                 "target_mixed": bool(sps and fp32 and sps >= fp32) if big and precision != "32-true" else None}
            rows.append(r)
            print(f"{task:<9} | {precision + ('+tf32' if r['tf32'] else ''):<12} | {r['epochs']:>3} | "
                  f"{val(a, 'sps', ',.0f'):>14} | {val(b, 'sps', ',.0f'):>19} | "
                  f"{'-' if ratio is None else format(ratio, '.2f'):>7} | "
                  f"{val(a, 'peak_mb', '.0f') + '/' + val(b, 'peak_mb', '.0f'):>15} | "
                  f"{val(a, 'accuracy', '.4f') + '/' + val(b, 'accuracy', '.4f'):>16} | {mark(r['agree']):>6} | "
                  f"{mark(r['target_ratio']):>13} | {mark(r['target_mixed']):>11}", flush=True)
            for way, result in (("hand", a), ("framework", b)):
                if "error" in result:
                    print(f"  {way}: {result['error']}", flush=True)
    return rows, all(r["agree"] for r in rows)


def syncs(device, quick: bool, tmp: Path) -> tuple[dict, bool]:
    """Host-device syncs in the framework's fit and test: torch's sync debug mode warns at each, and
    each warning is counted at the innermost orchestrator or Lightning line above it."""
    import logging
    import math
    import traceback
    import warnings

    import torch

    from orchestrator.runner import prepare

    if device.type != "cuda":
        return {}, True
    import pytorch_lightning  # noqa: F401  (its import sets its logger's level: quieten it after)

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    found, epochs = catalog(), 4
    cfg = compose([f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db", "tracking.log_model=false", "tracking.plots=false",
                   "trainer=gpu", "trainer.enable_progress_bar=false", *TASKS["digits"][0],
                   f"trainer.max_epochs={epochs}"], found)
    p = prepare(cfg, found, cfg.tracking.uri)
    steps = math.ceil(len(p.splits.y_train) / p.training.data.batch_size) * epochs
    where: Counter = Counter()

    def count(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        stack = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename]
        ours = [f for f in stack if any(p in f.filename for p in ("/orchestrator/", "/pytorch_lightning/", "/torchmetrics/"))]
        at = lambda f: f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}"
        place = f"{at(stack[-1])}  {stack[-1].line}" if stack else "?"
        if ours and ours[-1] is not stack[-1]:
            place += f"  (from {at(ours[-1])})"
        where[place] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = count
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = attempt(framework, cfg, found, device, str(tmp))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    total = sum(where.values())
    print(f"\nsyncs: the digits CNN (fp32, {epochs} epochs, {steps} training steps, then test): "
          f"{total} synchronizing calls, {total / steps:.2f} a step; by place:", flush=True)
    for place, n in where.most_common(12):
        print(f"  {n:>5}  {place}")
    if "error" in result:
        print(f"  the run failed: {result['error']}")
    return {"epochs": epochs, "steps": steps, "total": total, "where": dict(where), "run": result}, "error" not in result


def spawn(args: list[str], cwd: Path, timeout: float, **env: str) -> tuple[int | None, float, str]:
    """A process in its own group, killed with its children (DDP ranks) past ``timeout``: code None."""
    start = time.perf_counter()
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", **env)
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=environ, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, code = proc.communicate(timeout=timeout)[0], proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, code = proc.communicate()[0] + f"\n[killed after {timeout} s]", None
    with contextlib.suppress(ProcessLookupError):  # a rank it left behind would hold the GPU
        os.killpg(proc.pid, signal.SIGKILL)
    return code, time.perf_counter() - start, out


def runs_in(directory: Path) -> list:
    """Every run of the store that ``python -m orchestrator`` made in ``directory``."""
    import mlflow
    from mlflow.entities import ViewType

    if not (directory / "mlruns" / "mlflow.db").is_file():
        return []
    client = mlflow.MlflowClient(f"sqlite:///{directory}/mlruns/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000)


def commands(device, quick: bool, tmp: Path) -> tuple[list[dict], bool]:
    """Issue #10's commands as processes, each printed as it ends, then the CPU-only model load."""
    swap = {} if device.type == "cuda" else {"trainer=gpu": "trainer=cpu", "trainer=ddp": "trainer=ddp_cpu"}
    first = tmp / "command-0"  # the CNN on the digits, trained on the device
    script = ("import mlflow, numpy as np, sys; mlflow.set_tracking_uri(sys.argv[1]); "
              "m = mlflow.pyfunc.load_model(f'runs:/{sys.argv[2]}/model'); "
              "p = np.asarray(m.predict(np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))); "
              "assert p.shape == (3, 10) and np.isfinite(p).all(), p; print('predicted', p.shape)")
    print(f"\n{'command':<12} | {'rc':>4} | {'wall s':>6} | {'MLflow runs':<20} | arguments", flush=True)
    rows = []
    for i, (name, args, timeout) in enumerate([*COMMANDS, ("load on CPU", None, 120)]):
        if SELECTED_COMMANDS and name not in SELECTED_COMMANDS and not (args is None and "cnn" in SELECTED_COMMANDS):
            continue
        if device.type != "cuda" and "trainer.precision=16-mixed" in (args or []):
            continue  # no fp16 autocast on the CPU
        if args is None:  # load a model trained on the device where no GPU is visible
            done = [r.info.run_id for r in runs_in(first) if r.info.status == "FINISHED"][:1]
            command = ["-c", script, f"sqlite:///{first}/mlruns/mlflow.db", *done]
            code, wall, out = spawn(command, first, timeout, CUDA_VISIBLE_DEVICES="") if done else (1, 0.0, "no run")
            text, statuses = "mlflow.pyfunc.load_model(...).predict(...) with CUDA_VISIBLE_DEVICES=''", {}
        else:
            args, cwd = [swap.get(a, a) for a in args], tmp / f"command-{i}"
            cwd.mkdir()
            code, wall, out = spawn(["-m", "orchestrator", *args], cwd, timeout)
            text, statuses = " ".join(args), dict(Counter(r.info.status for r in runs_in(cwd)))
        ok = code == 0 and set(statuses) <= {"FINISHED"} and (bool(statuses) or args is None)
        advice = "set_float32_matmul_precision" in out  # Lightning's advice when TF32 is left off
        rows.append({"name": name, "command": text, "returncode": code, "wall": wall, "statuses": statuses, "ok": ok,
                     "tf32_advice": advice})
        runs = ", ".join(f"{k} x{v}" for k, v in statuses.items()) or "-"
        print(f"{name:<12} | {'hang' if code is None else code:>4} | {wall:6.1f} | {runs:<20} | {text}"
              + ("   (Lightning advised set_float32_matmul_precision)" if advice else "")
              + ("" if ok else f"   <- FAILED\n{out[-2000:]}"), flush=True)
    return rows, all(r["ok"] for r in rows)


def matrix(device, quick: bool, tmp: Path) -> tuple[dict, bool]:
    """Every built-in model x optimizer x regularizer, 2 epochs: one sweep on the device (on a GPU
    in each precision), one on the CPU in fp32 at the same time; each device run against its CPU run."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.plugins import get_catalog

    groups = ("model", "optimizer", "regularizer")
    names = {g: sorted(n for n, p in get_catalog().options[g].items() if p.plugin.distribution == "orchestrator")
             for g in groups}
    combo = lambda r: "/".join(r.data.tags.get(f"orchestrator.{g}", "?") for g in groups)
    precisions = PRECISIONS if device.type == "cuda" and not quick else ("32-true",)
    plans = {"cpu": ["trainer=cpu", "trainer.precision=32-true"]}
    if device.type == "cuda":
        plans = {"gpu": ["trainer=gpu", f"trainer.precision={','.join(precisions)}"], **plans}

    def sweep(trainer: str) -> dict:
        cwd = tmp / f"matrix-{trainer}"
        cwd.mkdir()
        code, wall, out = spawn(["-m", "orchestrator", "-m", *(f"{g}={','.join(names[g])}" for g in groups),
                                 *plans[trainer], "trainer.max_epochs=2", "tracking.plots=false"], cwd, 300)
        runs = {(combo(r), r.data.params.get("trainer.precision")): r for r in runs_in(cwd)
                if "mlflow.parentRunId" in r.data.tags}
        return {"returncode": code, "wall": wall, "runs": runs, "tail": "" if code == 0 else out[-2000:]}

    with ThreadPoolExecutor(len(plans)) as pool:
        sweeps = dict(zip(plans, pool.map(sweep, plans)))
    on_cpu = sweeps["cpu"]["runs"]
    expected = len(names["model"]) * len(names["optimizer"]) * len(names["regularizer"])
    differ, report = [], {"expected": expected, "precisions": {}, "wall": {t: s["wall"] for t, s in sweeps.items()}}
    print(f"\nmatrix: {expected} model x optimizer x regularizer combinations, 2 epochs each; "
          + ", ".join(f"{t} sweep {s['wall']:.0f} s" for t, s in sweeps.items()))
    print(f"{'trainer':<7} | {'precision':<10} | {'FINISHED':>8} | {'max |acc - cpu acc|':>19} | "
          f"{'max |loss/cpu loss - 1|':>23} | {'differ':>6}")
    for trainer, s in sweeps.items():
        for precision in precisions if trainer != "cpu" else ("32-true",):
            runs = {k: r for (k, p), r in s["runs"].items() if p == precision}
            finished = sum(r.info.status == "FINISHED" for r in runs.values())
            acc, loss, bad = [], [], []
            for k, r in runs.items():
                a, b = r.data.metrics, on_cpu.get((k, "32-true"))
                b = b.data.metrics if b else {}
                if "test/accuracy" in a and "test/accuracy" in b:
                    acc.append(abs(a["test/accuracy"] - b["test/accuracy"]))
                    if acc[-1] > 0.03:
                        bad.append(f"{k} {precision}: test/accuracy {a['test/accuracy']:.4g}, "
                                   f"on the CPU {b['test/accuracy']:.4g}")
                elif "test/loss" in a and "test/loss" in b:
                    loss.append(abs(a["test/loss"] / b["test/loss"] - 1) if b["test/loss"] else abs(a["test/loss"]))
                    if abs(a["test/loss"] - b["test/loss"]) > 0.05 * abs(b["test/loss"]) + 1e-3:
                        bad.append(f"{k} {precision}: test/loss {a['test/loss']:.4g}, on the CPU {b['test/loss']:.4g}")
                else:
                    bad.append(f"{k} {precision}: test metrics missing")
            bad += [f"{k} {precision}: no run" for k in {k for k, _ in on_cpu} - set(runs)]
            differ += bad if trainer != "cpu" else []
            report["precisions"][f"{trainer} {precision}"] = {"finished": finished, "max_acc": max(acc, default=None),
                                                              "max_loss_rel": max(loss, default=None), "differ": bad}
            form = lambda v, f: "-" if v is None else format(v, f)
            print(f"{trainer:<7} | {precision:<10} | {f'{finished}/{expected}':>8} | {form(max(acc, default=None), '.4f'):>19} | "
                  f"{form(max(loss, default=None), '.4f'):>23} | {len(bad) if trainer != 'cpu' else '-':>6}", flush=True)
    for line in differ + [f"--- {t} sweep ---\n{s['tail']}" for t, s in sweeps.items() if s["tail"]]:
        print("  " + line)
    report["differ"] = differ
    done = all(v["finished"] == expected for v in report["precisions"].values())
    return report, done and not differ


def environment(device) -> dict:
    import warnings

    import pytorch_lightning
    import torch

    def read(value):
        with warnings.catch_warnings():  # newer torch deprecates the allow_tf32 flags, and may refuse them
            warnings.simplefilter("ignore")
            try:
                return value()
            except Exception as error:
                return f"unreadable ({type(error).__name__})"

    env = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "lightning": pytorch_lightning.__version__,
           "matmul.allow_tf32": read(lambda: torch.backends.cuda.matmul.allow_tf32),
           "cudnn.allow_tf32": read(lambda: torch.backends.cudnn.allow_tf32),
           "float32_matmul_precision": read(torch.get_float32_matmul_precision)}
    print("  ".join(f"{k}: {v}" for k, v in env.items()) + "\n")
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", help="comma-separated, of: bench, syncs, commands, matrix (default: all; "
                        "bench with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, fp32 only: check that it runs")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument("--commands", help="comma-separated names of the commands part to run (default: all)")
    args = parser.parse_args(argv)
    SELECTED_COMMANDS[:] = args.commands.split(",") if args.commands else []
    order = (args.parts or ("bench" if args.quick else ",".join(PARTS))).split(",")
    parts = set(order)
    if parts - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}; choose from {', '.join(PARTS)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA GPU here: nothing to measure (run it on a machine with one, or pass --device cpu).")
        return 0
    device = torch.device(args.device)
    report, ok = {"environment": environment(device)}, True
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        functions = {"bench": bench, "syncs": syncs, "commands": commands, "matrix": matrix}
        for name in sorted(parts, key=order.index):  # in the order given
            report[name], passed = functions[name](device, args.quick, Path(tmp))
            ok &= passed
            if args.json:  # after each part: what was measured survives a later part's hang
                Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
