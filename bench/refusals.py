"""How fast a bad command line is refused, against the cost of importing the training stack.

    python -m bench.refusals [--repeat 5] [--quick] [--json FILE]

Each refusal is a real ``python -m orchestrator ARGS`` process in a fresh temporary folder. Its
wall time (median of ``--repeat``, with the spread min-max) is compared with the import floor,
``python -c "import torch, pytorch_lightning, mlflow"``: a refusal passes when it takes at most
half the floor (issue #11). Runs alternate between the floor and the refusals, so the machine's
drift touches all alike. One more run of each refusal under ``python -X importtime`` checks that
it exited with status 2 and one ``Error:`` paragraph, imported none of torch, pytorch_lightning
and mlflow, and left no ``mlruns/`` store behind (timed runs are plain, without ``-X importtime``).
Exit status 1 when any refusal fails a check.
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

FLOOR = ["-c", "import torch, pytorch_lightning, mlflow"]
HEAVY = ("torch", "pytorch_lightning", "mlflow")
#: Command lines refused from the config alone (one per kind of rule).
REFUSALS = [
    ["optimizer.lr=-1"],                 # a range rule: check(gt=0)
    ["trainer.acclerator=gpu"],          # a misspelt trainer key of the preset
    ["+trainer.acclerator=gpu"],         # ... added: not a Lightning Trainer argument
    ["trainer.accelerator=quantum"],     # an accelerator Lightning does not know
    ["trainer.precision=12"],            # a precision Lightning does not accept
    ["model=cnn", "data=regression"],    # pairing: images expected, tabular declared
    ["model=nosuch"],                    # an unknown option
    ["optimizer.lr=abc"],                # a type
    ["+tracking.nosuch=1"],              # an unknown key of a typed section
]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return env


def timed(args: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=environment(), capture_output=True, text=True)
    return time.perf_counter() - start, out


def imported(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines: ``import time: self | cumulative | name``."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def verify(args: list[str]) -> dict:
    """One run under ``-X importtime``: exit status, message, heavy imports, store left behind."""
    with tempfile.TemporaryDirectory() as tmp:
        _, out = timed(["-X", "importtime", "-m", "orchestrator", *args], tmp)
        store = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*")
                       if p.name in ("mlruns", "mlflow.db"))
    message = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    return {
        "returncode": out.returncode,
        "message": message[-1] if message else "",
        "one_paragraph": len(message) == 1 and message[0].startswith("Error: "),
        "heavy_imports": sorted(imported(out.stderr) & set(HEAVY)),
        "store": store,
    }


def spread(times: list[float]) -> str:
    return f"{min(times):.2f}-{max(times):.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (median, spread)")
    parser.add_argument("--quick", action="store_true", help="one run of each, to check it still works")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else max(1, args.repeat)

    floor: list[float] = []
    times: dict[str, list[float]] = {" ".join(r): [] for r in REFUSALS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):  # interleaved: drift of the machine touches every command alike
            seconds, out = timed(FLOOR, tmp)
            if out.returncode != 0:
                raise SystemExit(f"the import floor failed:\n{out.stderr[-2000:]}")
            floor.append(seconds)
            for refusal in REFUSALS:
                with tempfile.TemporaryDirectory() as cwd:
                    seconds, _ = timed(["-m", "orchestrator", *refusal], cwd)
                times[" ".join(refusal)].append(seconds)
    checks = {" ".join(r): verify(r) for r in REFUSALS}

    med = statistics.median
    base = med(floor)
    print(f"Refusals against the import floor: {os.cpu_count()} cores, median of {repeat} "
          f"(spread min-max), seconds; ok: ratio <= 0.5, exit 2, one Error paragraph, no torch, "
          f"pytorch_lightning or mlflow imported, no store created\n")
    label = "import torch, pytorch_lightning, mlflow"
    width = max(len(label), *map(len, times)) + 1
    header = f"{'command':<{width}} | {'median':>6} | {'spread':>11} | {'/ floor':>7} | ok  | detail"
    print(header)
    print("-" * len(header))
    print(f"{label:<{width}} | {base:6.2f} | {spread(floor):>11} | "
          f"{1.0:7.2f} |     | the floor")
    report = {"floor": {"median": base, "times": floor}, "refusals": {}}
    all_ok = True
    for command, values in times.items():
        check = checks[command]
        ratio = med(values) / base
        problems = []
        if ratio > 0.5:
            problems.append("slower than half the floor")
        if check["returncode"] != 2:
            problems.append(f"exit {check['returncode']}")
        if not check["one_paragraph"]:
            problems.append("not one Error paragraph")
        if check["heavy_imports"]:
            problems.append("imported " + ",".join(check["heavy_imports"]))
        if check["store"]:
            problems.append("created " + ",".join(check["store"]))
        ok = not problems
        all_ok &= ok
        detail = "; ".join(problems) if problems else check["message"][:90]
        print(f"{command:<{width}} | {med(values):6.2f} | {spread(values):>11} | {ratio:7.2f} | "
              f"{'yes' if ok else 'NO ':3} | {detail}")
        report["refusals"][command] = {"median": med(values), "times": values, "ratio": ratio, "ok": ok,
                                       **check}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\n{'all refusals ok' if all_ok else 'SOME REFUSALS FAILED'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
