"""Commands that train nothing stay light: listing plugins, --help and --cfg import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["plugins"], ["--help"], ["--cfg", "job"]])
def test_command_does_not_import_torch_lightning_or_mlflow(tmp_path, argv):
    code = ("import sys; sys.argv = ['orchestrator', *%r]\n"
            "from orchestrator.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'mlflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n") % (argv,)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
