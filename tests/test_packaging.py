"""What a regular install gets: the wheel carries every file the app reads at run time.

``.ci/wheel-check`` installs that wheel into a fresh virtualenv and trains from outside the
checkout; this test catches a missing file in seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_config_the_plugins_and_the_entry_points(tmp_path):
    source = tmp_path / "src"
    # A copy, so the build leaves nothing (build/, *.egg-info) in the checkout.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "mlruns", "outputs",
                                                                  "multirun", "build", "*.egg-info"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                             "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("orchestrator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    config_files = [p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")]
    assert config_files and "config.yaml" in config_files
    missing = [f for f in config_files if f"orchestrator/conf/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for module in ("orchestrator_plugins/models.py", "orchestrator_plugins/data.py",
                   "orchestrator/testing.py", "orchestrator/scaffold.py", "orchestrator/lightning/trainer.py"):
        assert module in names
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(info).decode()
    assert "orchestrator = orchestrator.cli:console" in entry_points
    assert "builtin.models = orchestrator_plugins.models" in entry_points
    assert not any(n.startswith(("tests/", "plugins/", "conf/")) for n in names)  # no stray top-level packages


def test_the_app_reads_its_config_from_the_package_not_the_working_directory(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from orchestrator.cli import CONF_DIR; print(CONF_DIR)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    conf = Path(result.stdout.strip())
    assert (conf / "config.yaml").is_file() and (conf / "__init__.py").is_file()
