"""Sweep benchmark: the same 12-job sweep with Hydra's basic launcher and with the joblib
launcher (2 workers), in one run, each into a fresh store; an 8-job sweep run once, then
again with sweep.reuse=true (every job's key matches a FINISHED run: nothing is trained); an
Optuna search (cnn_optuna) with and without sweep.pruner=median; and 12 Optuna trials of unequal
length on 2 joblib workers, each started as soon as a worker is free, against the same 12 jobs
launched two at a time, each pair waiting for its slower job (the old hydra-optuna-sweeper's
batches).

    python -m bench.sweeps [--quick] [--epochs N] [--only launchers|reuse|pruning|parallel]
                           [--trials N] [--pruning-epochs N] [--json FILE]

Prints wall times, their ratios (joblib / basic; reuse / first; pruned / unpruned trial time;
pool / batches), and checks that both launcher sweeps leave one parent with 12 FINISHED children
and every child's metric history complete, that the rerun reused all 8 jobs, that both searches
ran every trial (only the pruned one pruning), and that both parallel runs trained the same 12
jobs. Times are printed, never asserted. --quick: a smoke run at tiny sizes (a minute or two).
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
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not numbers to read")
    parser.add_argument("--epochs", type=int, help="epochs per job of the launcher and reuse sweeps (1000; quick: 20)")
    parser.add_argument("--only", choices=("launchers", "reuse", "pruning", "parallel"))
    parser.add_argument("--trials", type=int, help="trials of each pruning search (30; quick: 6)")
    parser.add_argument("--pruning-epochs", type=int,
                        help=f"epochs per trial of the pruning searches ({PRUNING_EPOCHS}; quick: 5)")
    parser.add_argument("--pruner-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a MedianPruner argument (hydra.sweeper.pruner_kwargs), e.g. n_warmup_steps=5")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    epochs = args.epochs or (20 if args.quick else 1000)
    report, ok = {}, True
    if args.only in (None, "launchers"):
        ok = launchers(epochs, report) and ok
    if args.only in (None, "reuse"):
        reuse = run_reuse(epochs)
        print(f"8-job sweep ({' '.join(REUSE_SWEEP)}), {epochs} epochs per job, then again with sweep.reuse=true")
        print(f"{'sweep':<18} | {'wall s':>7} | jobs reused")
        print(f"{'first':<18} | {reuse['first_seconds']:7.1f} | {0:11d}")
        print(f"{'sweep.reuse=true':<18} | {reuse['reuse_seconds']:7.1f} | {reuse['reused']:4d} of {reuse['jobs']}")
        print(f"ratio reuse / first: {reuse['ratio']:.2f}")
        report["reuse"] = reuse
        ok = ok and reuse["jobs"] == reuse["reused"] == 8
    if args.only in (None, "pruning"):
        trials = args.trials or (6 if args.quick else 30)
        ok = pruning(trials, args.pruning_epochs or (5 if args.quick else PRUNING_EPOCHS), args.pruner_arg,
                     report, args.quick) and ok
    if args.only in (None, "parallel"):
        ok = parallel(*(PARALLEL_QUICK if args.quick else PARALLEL), report) and ok
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


# ---------------------------------------------------------------------------------------------
# Optuna searches: pruning, and trials started as soon as a worker is free


#: Epochs per trial of the pruning searches. The issue asked for 40: on the 2-core development
#: machine a digits CNN trains 40 epochs in about 2 s, against about 1.5 s a trial spends outside
#: fit (data, run, study), so training would not dominate; 100 epochs take about 5.5 s.
PRUNING_EPOCHS = 100
#: Torch threads in each job of the pruning searches. One: on a shared 2-core machine two threads
#: per process slowed an epoch tenfold whenever another process ran (44 ms an epoch alone, 500 ms
#: under load); one thread kept it at 55 ms either way. The same for both searches.
PRUNING_THREADS = 1
#: Keeps a trial's overhead down: no model, no plots logged.
QUIET = ["tracking.log_model=false", "tracking.plots=false"]
#: The parallel trials: how many, and the trainer.max_epochs they draw from (Optuna's random
#: sampler, seed 0), all else fixed: trials of very unequal length.
PARALLEL = (12, [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512])
PARALLEL_QUICK = (4, [2, 4, 8])
#: The parallel jobs: the CNN on digits with fixed hyperparameters; only the length varies.
PARALLEL_JOB = ["model=cnn", "optimizer=adam", "optimizer.lr=0.003", "model.hidden=64", "model.dropout=0.1",
                "sweep.metric=val/accuracy", "sweep.mode=max", *QUIET]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def orchestrator(args: list[str], folder: Path, threads: int | None = None) -> tuple[float, str]:
    """Run ``python -m orchestrator ARGS`` in ``folder`` (a store of its own: ``folder/mlruns``);
    its wall time and the MLflow URI of that store."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder}/mlruns/mlflow.db"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args, f"tracking.uri={uri}"],
                            cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"orchestrator {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds, uri


def sweep_children(uri: str) -> tuple[object, list]:
    """The one sweep parent in the store at ``uri`` and its child runs."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
    assert len(parents) == 1, f"{len(parents)} sweep parents in {uri}"
    return parents[0], [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def trial_time(children: list) -> dict:
    """Time spent in the jobs: the sum of each run's ``time/fit_seconds`` (what fit() took, as the
    run records it), and the sum of each run's own length (its end time less its start time)."""
    return {
        "fit_seconds": sum(c.data.metrics.get("time/fit_seconds", 0.0) for c in children),
        "run_seconds": sum((c.info.end_time - c.info.start_time) / 1000 for c in children),
    }


def run_search(folder: Path, trials: int, epochs: int, pruner: str, pruner_args: list[str]) -> dict:
    """cnn_optuna, ``trials`` trials of ``epochs`` epochs, TPE seed 0, basic launcher, into the
    fresh store ``folder/mlruns`` (the study in ``folder/mlruns/optuna.db``)."""
    import mlflow
    import optuna

    args = ["hparams_search=cnn_optuna", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.sampler.seed=0",
            f"trainer.max_epochs={epochs}", f"sweep.pruner={pruner}", *QUIET]
    if pruner != "none":
        args += [f"+hydra.sweeper.pruner_kwargs.{a}" for a in pruner_args]
    seconds, uri = orchestrator(args, folder, threads=PRUNING_THREADS)
    _, children = sweep_children(uri)
    client = mlflow.MlflowClient(uri)
    study = optuna.load_study(study_name="cnn_optuna", storage=f"sqlite:///{folder}/mlruns/optuna.db")
    states = [t.state.name for t in study.trials]
    return {
        "seconds": seconds,
        **trial_time(children),
        "epochs_trained": sum(len(client.get_metric_history(c.info.run_id, "val/loss")) for c in children),
        "trials": len(study.trials),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "pruned_runs": sum(c.data.tags.get("pruned") == "true" for c in children),
        "finished_runs": sum(c.info.status == "FINISHED" for c in children),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "n_val": int(children[0].data.metrics["data.n_val"]),
    }


def pruning(trials: int, epochs: int, pruner_args: list[str], report: dict, quick: bool) -> bool:
    """The same search with sweep.pruner=none and sweep.pruner=median, each into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = {p: run_search(Path(tmp) / p, trials, epochs, p, pruner_args) for p in ("none", "median")}
    none, median = rows["none"], rows["median"]
    ratio = median["fit_seconds"] / none["fit_seconds"]
    kwargs = ", ".join(pruner_args) or "Optuna's defaults: n_startup_trials=5, n_warmup_steps=0"
    print(f"\nOptuna search hparams_search=cnn_optuna, {trials} trials of {epochs} epochs, TPE seed 0, basic launcher, "
          f"OMP_NUM_THREADS={PRUNING_THREADS}, {os.cpu_count()} cores; median pruner: {kwargs}")
    print(f"{'sweep.pruner':<12} | {'wall s':>7} | {'trial s (fit)':>13} | {'trial s (run)':>13} | {'epochs':>6} | "
          f"complete | pruned | best val/accuracy")
    for name, row in rows.items():
        print(f"{name:<12} | {row['seconds']:7.1f} | {row['fit_seconds']:13.1f} | {row['run_seconds']:13.1f} | "
              f"{row['epochs_trained']:6d} | {row['complete']:8d} | {row['pruned']:6d} | {row['best_value']:.4f}")
    print(f"ratio trial time (fit) median / none: {ratio:.2f} (target <= 0.6); wall: "
          f"{median['seconds'] / none['seconds']:.2f}; best value median - none: "
          f"{median['best_value'] - none['best_value']:+.4f} (one validation sample: {1 / none['n_val']:.4f})")
    report["pruning"] = {"trials": trials, "epochs": epochs, "pruner_args": pruner_args, "threads": PRUNING_THREADS,
                         "none": none, "median": median, "ratio_fit": ratio,
                         "ratio_wall": median["seconds"] / none["seconds"]}
    return (all(r["trials"] == r["finished_runs"] == trials and r["failed"] == 0 for r in rows.values())
            and none["pruned"] == none["pruned_runs"] == 0 and median["pruned"] == median["pruned_runs"]
            and (quick or median["pruned"] > 0))


def jobs_by_epochs(children: list) -> list[tuple[int, int, float]]:
    """(job number, trainer.max_epochs, run seconds) of each child, in job order."""
    return sorted((int(c.data.tags["orchestrator.sweep.job"]), int(c.data.params["trainer.max_epochs"]),
                   (c.info.end_time - c.info.start_time) / 1000) for c in children)


def parallel(n: int, choices: list[int], report: dict) -> bool:
    """``n`` jobs differing only in trainer.max_epochs (drawn from ``choices``), on 2 joblib
    workers: as Optuna trials (hydra.sweeper.n_jobs=2: a trial starts as soon as a worker is
    free); then the same jobs in the same order by Hydra's basic sweeper, two at a time
    (hydra.sweeper.max_batch_size=2: each pair waits for its slower job, as the old
    hydra-optuna-sweeper's batches of n_jobs did; the sweeper has no switch for batches); then
    all of them as one joblib batch (joblib's own pool). The grid sampler would fix the lengths
    exactly, but under the sweeper its last trial fails the search (Optuna's GridSampler calls
    Study.stop(), which raises outside study.optimize()): the random sampler, seeded, draws them."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        pool_seconds, uri = orchestrator(
            ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
             "hydra.sweeper.direction=maximize", "hydra.sweeper.study_name=parallel", f"hydra.sweeper.n_trials={n}",
             "hydra.sweeper.n_jobs=2", *JOBLIB, *PARALLEL_JOB, f"trainer.max_epochs=choice({','.join(map(str, choices))})"],
            Path(tmp) / "pool")
        study = optuna.load_study(study_name="parallel", storage=f"sqlite:///{tmp}/pool/mlruns/optuna.db")
        order = [t.params["trainer.max_epochs"] for t in sorted(study.trials, key=lambda t: t.number)]
        rows = {"optuna pool": (pool_seconds, sweep_children(uri)[1])}
        for name, folder, extra in (("batches of 2", "batches", ["hydra.sweeper.max_batch_size=2"]),
                                    ("joblib, 1 batch", "joblib", [])):
            seconds, uri = orchestrator(["-m", *JOBLIB, *extra, *PARALLEL_JOB,
                                         f"trainer.max_epochs={','.join(map(str, order))}"], Path(tmp) / folder)
            rows[name] = (seconds, sweep_children(uri)[1])
    pool, batches = rows["optuna pool"][0], rows["batches of 2"][0]
    epochs = sorted(order)
    print(f"\n{n} jobs of model=cnn on digits, trainer.max_epochs drawn from {choices} (nothing else varies), "
          f"on 2 joblib workers (hydra/launcher=joblib hydra.launcher.n_jobs=2), {os.cpu_count()} cores")
    print(f"max_epochs in the order the trials were asked for (random sampler, seed 0): {order}")
    print(f"{'launched as':<16} | {'wall s':>7} | {'job s (fit)':>11} | {'job s (run)':>11} | FINISHED")
    out = {"order": order}
    for name, (seconds, children) in rows.items():
        t = trial_time(children)
        finished = sum(c.info.status == "FINISHED" for c in children)
        print(f"{name:<16} | {seconds:7.1f} | {t['fit_seconds']:11.1f} | {t['run_seconds']:11.1f} | {finished:4d} of {len(children)}")
        out[name] = {"seconds": seconds, **t, "finished": finished, "jobs": jobs_by_epochs(children)}
    # What the jobs alone allow (their run times in the pool): a pool of 2 needs at least half of
    # their sum, batches of 2 the sum over pairs of the slower one; the rest of each wall time is
    # the same fixed cost (process and worker start-up, the parent run).
    alone = [t for _, _, t in out["optuna pool"]["jobs"]]
    floor_pool, floor_batches = sum(alone) / 2, sum(max(alone[i:i + 2]) for i in range(0, n, 2))
    print(f"ratio optuna pool / batches of 2: {pool / batches:.2f} (wall); from the jobs' own run times: "
          f"pool >= {floor_pool:.1f} s, batches >= {floor_batches:.1f} s ({floor_pool / floor_batches:.2f})")
    out.update(ratio=pool / batches, floor_pool=floor_pool, floor_batches=floor_batches)
    report["parallel"] = out
    # every launch trained the same jobs, and the pool and the batches in the same order
    return (all(sorted(e for _, e, _ in out[name]["jobs"]) == epochs and out[name]["finished"] == n for name in rows)
            and all([e for _, e, _ in out[name]["jobs"]] == order for name in ("optuna pool", "batches of 2")))


if __name__ == "__main__":
    sys.exit(main())
