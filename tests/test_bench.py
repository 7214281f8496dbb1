"""The benchmark scripts keep working (tiny sizes; their numbers are read by people)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_correctness_benchmark_runs_and_prints_its_table(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.correctness", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "linear+gd" in result.stdout and "cnn+adam" in result.stdout
    import json

    rows = json.loads(out.read_text())
    assert len(rows) == 17
    # every README usage command runs at its defaults, against a reference on the same split
    defaults = [r for r in rows if r["check"].startswith("defaults:")]
    assert len(defaults) == 12 and all("sklearn" in r["reference"] for r in defaults)
    # even at tiny sizes the least-squares and logistic rows hit their targets
    assert rows[0]["ok"] and rows[2]["ok"]
