"""The GPU benchmark runs end to end on the CPU (tiny sizes, real training; no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_quick_on_cpu_prints_the_table_and_both_ways_agree(tmp_path):
    out = tmp_path / "gpu.json"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--quick", "--device", "cpu", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for column in ("hand samples/s", "framework samples/s", "fw/hand", "accuracy hand/fw", "fw>=0.9x hand"):
        assert column in result.stdout
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch"]
    rows = report["bench"]
    assert [(r["task"], r["precision"]) for r in rows] == [("digits", "32-true"), ("images28", "32-true")]
    for row in rows:
        hand, framework = row["hand"], row["framework"]
        assert "error" not in hand and "error" not in framework, row
        assert hand["sps"] > 0 and framework["sps"] > 0 and row["ratio"] > 0
        # same split, initial weights and batch order: the same model within noise
        assert abs(hand["accuracy"] - framework["accuracy"]) <= 0.02 and row["agree"], row
        assert 0 <= hand["accuracy"] <= 1
    assert "commands" not in report  # --quick measures only
