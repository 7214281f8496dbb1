"""Fixed costs: what a run costs beyond its imports and its training, as ratios to the import floor.

    python -m bench.fixed_costs [--repeat 5] [--parts floor,cnn,store,sweep,records,big] [--quick] [--json FILE]

Every figure is measured in this invocation, side by side with its baseline, and printed as a ratio:

- floor: ``python -c "import torch, pytorch_lightning, mlflow"``, median and spread of ``--repeat``.
- cnn: the canonical ``python -m orchestrator model=cnn optimizer=adam`` (into an existing store)
  against floor + the hand-written loop's training of the same model, data, epochs and batches;
  its start-up beyond the floor (first training step - process start - floor).
- store: the same small run into a new store against one into an existing store.
- sweep: each extra job of a basic-launcher sweep of tiny jobs, beyond its own training.
- records: what the records a run makes by default cost (the dataset digest, the git and package
  record, the periodic checkpoint).
- big: a CNN on 60,000 synthetic 28x28 images, 2 epochs on the CPU: framework fit against the
  hand loop, and peak memory (each in its own process).

Nothing here changes a result: the hand loop and the framework must reach the same test accuracy.
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
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("floor", "cnn", "store", "sweep", "records", "big")
CNN = ["model=cnn", "optimizer=adam"]
SMALL = ["model=linear", "tracking.plots=false"]
TINY_JOB = ["model=linear", "data.n_samples=200", "trainer.max_epochs=1"]
TARGETS = {"cnn": 1.3, "store": 0.05, "sweep": 0.03, "startup": 0.1, "big_fit": 1.1, "big_peak": 1.2}


def spawn(args: list[str], cwd=None, **env: str) -> tuple[float, subprocess.CompletedProcess]:
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ.update(env)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd or ROOT, env=environ, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return wall, out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def runs_of(folder: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("orchestrator")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def floor(repeat: int) -> dict:
    return spread([spawn(["-c", "import torch, pytorch_lightning, mlflow"])[0] for _ in range(repeat)])


def worker_hand(overrides: list[str]) -> None:
    """The hand-written loop (bench.perf's floor) for these overrides: its training seconds."""
    from bench.perf import floor as hand_loop
    from orchestrator.config import compose

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([f"tracking.uri=sqlite:///{tmp}/mlflow.db", *overrides])
        seconds, result = hand_loop(cfg)
    print(json.dumps({"seconds": seconds, "result": result}))


def hand_seconds(overrides: list[str], repeat: int) -> tuple[float, dict]:
    found = []
    for _ in range(repeat):
        _, out = spawn(["-m", "bench.fixed_costs", "--worker", "hand", *overrides])
        found.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return statistics.median(f["seconds"] for f in found), found[0]["result"]


def cnn(repeat: int, floor_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spawn(["-m", "orchestrator", *SMALL], cwd=tmp)  # the store exists, as for a user's second run
        walls, startups, fits = [], [], []
        for _ in range(repeat):
            wall, _ = spawn(["-m", "orchestrator", *CNN], cwd=tmp)
            run = runs_of(Path(tmp))[0]
            walls.append(wall)
            startups.append(run.data.metrics["time/startup_seconds"])
            fits.append(run.data.metrics["time/fit_seconds"])
            accuracy = run.data.metrics["test/accuracy"]
    hand, result = hand_seconds(CNN, repeat)
    same_result("canonical CNN: test accuracy", accuracy, result.get("test/accuracy"))
    wall = statistics.median(walls)
    startup = statistics.median(startups)
    return {"wall": spread(walls), "hand_training": hand, "fit": statistics.median(fits), "startup": startup,
            "ratio": wall / (floor_s + hand), "startup_beyond_floor": (startup - floor_s) / floor_s,
            "accuracy": {"framework": accuracy, "hand": result.get("test/accuracy")}}


def store(repeat: int, floor_s: float) -> dict:
    new, existing = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spawn(["-m", "orchestrator", *SMALL], cwd=tmp)  # the store template exists after this
        for i in range(repeat):
            fresh = Path(tmp) / f"new{i}"
            fresh.mkdir()
            new.append(spawn(["-m", "orchestrator", *SMALL], cwd=fresh)[0])
            existing.append(spawn(["-m", "orchestrator", *SMALL], cwd=tmp)[0])
        first = Path(tmp) / "first"
        first.mkdir()  # a machine's first store of this MLflow version: the template is made
        first_ever = spawn(["-m", "orchestrator", *SMALL], cwd=first, ORCHESTRATOR_CACHE_DIR=str(first / "cache"))[0]
    extra = statistics.median(new) - statistics.median(existing)
    return {"new": spread(new), "existing": spread(existing), "extra": extra, "ratio": extra / floor_s,
            "first_ever_extra": first_ever - statistics.median(existing)}


def sweep(repeat: int, floor_s: float, jobs: int) -> dict:
    def one(n: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            spawn(["-m", "orchestrator", *TINY_JOB], cwd=tmp)  # an existing store
            wall, _ = spawn(["-m", "orchestrator", "-m", *TINY_JOB, "seed=" + ",".join(map(str, range(n)))], cwd=tmp)
            children = [r for r in runs_of(Path(tmp)) if "mlflow.parentRunId" in r.data.tags]
            complete(Path(tmp), children, n)
            return wall, sum(r.data.metrics.get("time/fit_seconds", 0.0) for r in children)

    small, large = [], []
    for _ in range(repeat):
        small.append(one(2))
        large.append(one(2 + jobs))
    wall = statistics.median(w for w, _ in large) - statistics.median(w for w, _ in small)
    fit = statistics.median(f for _, f in large) - statistics.median(f for _, f in small)
    per_job = (wall - fit) / jobs
    return {"walls_2": spread([w for w, _ in small]), f"walls_{2 + jobs}": spread([w for w, _ in large]),
            "per_extra_job": wall / jobs, "per_extra_job_beyond_training": per_job, "ratio": per_job / floor_s}


def complete(folder: Path, children: list, n: int) -> None:
    """Each of the sweep's ``n`` children FINISHED with its figures and a model that loads, when
    the command has returned: what the per-job savings must not cost."""
    import mlflow

    uri = f"sqlite:///{folder}/mlruns/mlflow.db"
    client = mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    if len(children) != n or any(r.info.status != "FINISHED" for r in children):
        raise SystemExit(f"sweep of {n} jobs: children {[r.info.status for r in children]}")
    for run in children:
        if len(client.list_artifacts(run.info.run_id, "plots")) != 2:
            raise SystemExit(f"sweep: run {run.info.run_id} has not both its figures")
    mlflow.pyfunc.load_model(f"runs:/{children[-1].info.run_id}/model")


def same_result(what: str, framework, hand) -> None:
    """The framework and the hand loop must reach the same result: a benchmark that changed a
    result would be measuring something else."""
    if framework is None or hand is None or abs(framework - hand) > 1e-6:
        raise SystemExit(f"{what}: framework {framework} and hand loop {hand} differ")


def worker_records() -> None:
    """What the default records cost in process: dataset digest, git and package record."""
    import numpy as np

    from orchestrator.config import compose
    from orchestrator.plugins import get_catalog
    from orchestrator.provenance import describe_data, environment, git_tags
    from orchestrator.settings import validate

    catalog = get_catalog()
    out = {}
    for name, overrides in (("digits", CNN), ("60,000 images", None)):
        if overrides is None:
            from bench.gpu_check import _images
            from orchestrator import Dataset

            x, y = _images(60000, 0.8, 0)
            data = Dataset(x, y, task="classification", num_classes=10, source="bench")
            option, settings = "bench_images", None
        else:
            checked = validate(compose(overrides), catalog)
            option, settings = checked.names["data"], checked.groups["data"]
            data = checked.chosen["data"].component.build(settings, 0)
        start = time.perf_counter()
        describe_data(data, option, settings)
        out[f"dataset digest ({name}, {np.asarray(data.x).nbytes / 2**20:.1f} MB)"] = time.perf_counter() - start
    start = time.perf_counter()
    git_tags(str(ROOT))
    out["git record"] = time.perf_counter() - start
    start = time.perf_counter()
    environment({})
    out["package versions"] = time.perf_counter() - start
    print(json.dumps(out))


def records(repeat: int, floor_s: float) -> dict:
    _, out = spawn(["-m", "bench.fixed_costs", "--worker", "records"])
    found = json.loads(out.stdout.strip().splitlines()[-1])
    on, off = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spawn(["-m", "orchestrator", *SMALL], cwd=tmp)
        for _ in range(repeat):  # flush_seconds=0.001: a checkpoint before every send, the worst case
            for flag, into in (("true", on), ("false", off)):
                spawn(["-m", "orchestrator", *CNN, f"tracking.checkpoints={flag}", "tracking.flush_seconds=0.001"], cwd=tmp)
                into.append(runs_of(Path(tmp))[0].data.metrics["time/fit_seconds"])
    found["checkpoint before every send (fit seconds, on - off)"] = statistics.median(on) - statistics.median(off)
    return {"seconds": found, "ratios": {k: v / floor_s for k, v in found.items()}}


def worker_big(way: str, epochs: int, n: int) -> None:
    import resource

    import torch

    from bench import gpu_check

    found = gpu_check.catalog()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = gpu_check.compose([f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db", "tracking.log_model=false",
                                 "tracking.plots=false", "trainer=cpu", "trainer.enable_progress_bar=false",
                                 *gpu_check.TASKS["images28"][0], f"data.n_samples={n}",
                                 f"trainer.max_epochs={epochs}"], found)
        device = torch.device("cpu")
        result = (gpu_check.hand(cfg, found, device, "32-true") if way == "hand"
                  else gpu_check.framework(cfg, found, device, tmp))
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["seconds"] = n * 0.8 * epochs / result["sps"]  # approximate: the training split's share
    print(json.dumps(result))


def big(quick: bool, repeat: int) -> dict:
    """Hand loop and framework alternately, ``repeat`` times each (each way in its own process);
    the medians of their samples per second and peaks."""
    epochs, n = (1, 4000) if quick else (2, 60000)
    found: dict[str, list] = {"hand": [], "framework": []}
    for _ in range(repeat):
        for way in found:
            _, out = spawn(["-m", "bench.fixed_costs", "--worker", "big", way, str(epochs), str(n)])
            found[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ways = {way: {"sps": statistics.median(r["sps"] for r in runs),
                  "sps_all": [r["sps"] for r in runs],
                  "peak_mb": statistics.median(r["peak_mb"] for r in runs),
                  "accuracy": runs[0]["accuracy"]} for way, runs in found.items()}
    h, f = ways["hand"], ways["framework"]
    same_result("big task: test accuracy", f["accuracy"], h["accuracy"])
    return {"ways": ways, "fit_ratio": h["sps"] / f["sps"], "peak_ratio": f["peak_mb"] / h["peak_mb"],
            "accuracy": {"hand": h["accuracy"], "framework": f["accuracy"]}}


def verdict(value: float, target: float) -> str:
    return f"{value:.3f} (target <= {target}: {'ok' if value <= target else 'NOT MET'})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="one repeat, small sizes: to check it runs")
    parser.add_argument("--json")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.worker:
        kind, *more = args.worker + rest
        {"hand": lambda: worker_hand(more), "records": worker_records,
         "big": lambda: worker_big(more[0], int(more[1]), int(more[2]))}[kind]()
        return 0
    repeat = 1 if args.quick else args.repeat
    parts = args.parts.split(",")
    report: dict = {"cores": os.cpu_count(), "repeat": repeat}
    print(f"fixed costs: {os.cpu_count()} cores, medians of {repeat}; ratios to the import floor\n", flush=True)
    f = floor(repeat)
    report["floor"] = f
    floor_s = f["median"]
    print(f"import floor: {floor_s:.2f} s (min {f['min']:.2f}, max {f['max']:.2f}, n {f['n']})", flush=True)
    if "cnn" in parts:
        c = report["cnn"] = cnn(repeat, floor_s)
        print(f"canonical CNN process: {c['wall']['median']:.2f} s (min {c['wall']['min']:.2f}, max {c['wall']['max']:.2f}); "
              f"hand-loop training {c['hand_training']:.2f} s; fit {c['fit']:.2f} s; start-up {c['startup']:.2f} s; "
              f"test accuracy framework {c['accuracy']['framework']:.4f} / hand {c['accuracy']['hand']:.4f}", flush=True)
        print(f"  1. whole process / (floor + hand training): {verdict(c['ratio'], TARGETS['cnn'])}")
        print(f"  4. start-up beyond the floor / floor: {verdict(c['startup_beyond_floor'], TARGETS['startup'])}", flush=True)
    if "store" in parts:
        s = report["store"] = store(repeat, floor_s)
        print(f"run into a new store {s['new']['median']:.2f} s, into an existing one {s['existing']['median']:.2f} s; "
              f"a machine's first store (template made) +{s['first_ever_extra']:.2f} s", flush=True)
        print(f"  2. new-store extra / floor: {verdict(s['ratio'], TARGETS['store'])}", flush=True)
    if "sweep" in parts:
        w = report["sweep"] = sweep(repeat, floor_s, 2 if args.quick else 8)
        print(f"sweep of tiny jobs: {w['per_extra_job']:.2f} s per extra job, "
              f"{w['per_extra_job_beyond_training']:.2f} s beyond its training", flush=True)
        print(f"  3. per extra job beyond training / floor: {verdict(w['ratio'], TARGETS['sweep'])}", flush=True)
    if "records" in parts:
        r = report["records"] = records(repeat, floor_s)
        for name, seconds in r["seconds"].items():
            print(f"  record: {name}: {seconds:.3f} s ({seconds / floor_s:.3f} x floor)", flush=True)
    if "big" in parts:
        b = report["big"] = big(args.quick, min(repeat, 3))
        h, fw = b["ways"]["hand"], b["ways"]["framework"]
        print(f"big task (median of {len(h['sps_all'])} each, alternating): hand {h['sps']:,.0f} samples/s "
              f"({', '.join(f'{v:,.0f}' for v in h['sps_all'])}), framework {fw['sps']:,.0f} "
              f"({', '.join(f'{v:,.0f}' for v in fw['sps_all'])}); peak MB {h['peak_mb']:.0f}/{fw['peak_mb']:.0f}; "
              f"accuracy {h['accuracy']:.4f}/{fw['accuracy']:.4f}", flush=True)
        print(f"  5. framework fit / hand: {verdict(b['fit_ratio'], TARGETS['big_fit'])}; "
              f"peak memory: {verdict(b['peak_ratio'], TARGETS['big_peak'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
