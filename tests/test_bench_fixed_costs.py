"""The fixed-costs benchmark keeps working (tiny sizes; no timing is asserted): it prints each
target's ratio, and refuses to report a sweep whose runs are incomplete or a result that changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_fixed_costs_benchmark_prints_every_ratio_and_writes_json(tmp_path):
    out = tmp_path / "fixed.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.fixed_costs", "--quick", "--parts", "floor,cnn,store,sweep,big",
         "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["floor"]["median"] > 0
    assert report["cnn"]["accuracy"]["framework"] == report["cnn"]["accuracy"]["hand"]
    assert report["big"]["accuracy"]["framework"] == report["big"]["accuracy"]["hand"]
    for key in ("ratio", "per_extra_job", "per_extra_job_beyond_training"):
        assert key in report["sweep"]
    for line in ("1. whole process", "2. new-store extra", "3. per extra job", "4. start-up", "5. framework fit"):
        assert line in result.stdout
