"""The performance benchmark keeps working (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_perf_benchmark_runs_every_way_and_writes_json(tmp_path):
    out = tmp_path / "perf.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.perf", "--quick", "--repeat", "1", "--tasks", "linear-gd,cnn-adam",
         "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for task in ("linear-gd", "cnn-adam"):
        row = report["tasks"][task]
        assert row["floor"] > 0 and row["template"] > 0 and row["framework_fit"] > 0
        assert row["process"]["startup"] > 0 and row["process"]["wall"] > row["process"]["startup"]
    # full-batch gradient descent is deterministic: the three ways agree exactly
    assert report["tasks"]["linear-gd"]["agree"]
    assert {"floor_imports", "plugins", "help"} <= set(report["process"])
    assert "c/a" in result.stdout
