"""What a run needs to be reproduced beyond its config: the data set it trained on, the git state
of the directory it was launched from, and the versions it ran with.

- :func:`describe_data`: the data set a data plugin loaded, as a :class:`DataRecord` (name,
  digest of its arrays, source, schema), computed once while the run is prepared; the arrays
  themselves are not kept. The run records it as a data set input (``TrackedRun.log_dataset``).
- :func:`git_tags`: ``orchestrator.git.commit``, ``orchestrator.git.branch`` and
  ``orchestrator.git.dirty`` of the git work tree the command runs in (one ``git status`` call);
  nothing outside a work tree or without git.
- :func:`environment`: Python, the platform, and the versions of orchestrator, torch, Lightning,
  MLflow, Hydra, OmegaConf, pluggy, numpy and the plugin distributions the run used: the run's
  ``environment.json`` artifact. :func:`differences` compares two of them (``orchestrator rerun``).

MLflow sets ``mlflow.source.git.*`` from the repository of the entry script (orchestrator's own
checkout when it is installed in editable mode; nothing when it is installed from a wheel); the
``orchestrator.git.*`` tags describe the directory the command was launched from: the user's
project.

Importing this module is cheap: the standard library only (numpy when data are described).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from .runner import Prepared
    from .tracking_api import TrackedRun

log = logging.getLogger(__name__)

#: The distributions whose versions every run records (those not installed are left out).
PACKAGES = ("orchestrator", "torch", "pytorch-lightning", "lightning", "mlflow", "hydra-core", "omegaconf",
            "pluggy", "numpy")
#: Seconds ``git status`` may take before the run goes on without git tags.
GIT_TIMEOUT = 5.0
#: Hex digits of the data set's SHA-256 kept as its digest (MLflow's own digests have 8).
DIGEST_LENGTH = 16


@dataclass(frozen=True)
class DataRecord:
    """A data set as a run records it: what ``TrackedRun.log_dataset`` takes."""

    #: The data option, with the file's name for an option read from a file: ``digits``,
    #: ``csv:houses.csv``.
    name: str
    #: SHA-256 (first 16 hex digits) of the features' and targets' dtypes, shapes and bytes.
    digest: str
    #: Where the examples came from: an absolute file path, a URI, or the data plugin's
    #: description (``synthetic: two Gaussians``).
    source: str
    #: Each array's dtype and full shape: ``{"features": ("float64", (1797, 1, 8, 8)),
    #: "targets": ("int64", (1797,))}``.
    schema: dict[str, tuple[str, tuple[int, ...]]]


def describe_data(data: Any, option: str, settings: Any = None) -> DataRecord:
    """The :class:`DataRecord` of ``data`` (an :class:`orchestrator.Dataset`) loaded by the data
    option ``option`` with ``settings``: hashing is the only pass over the arrays (about a
    millisecond per megabyte), and nothing is copied unless the arrays are not contiguous."""
    import numpy as np

    digest = hashlib.sha256()
    schema = {}
    for role, values in (("features", data.x), ("targets", data.y)):
        array = np.asarray(values)
        schema[role] = (array.dtype.name, tuple(int(n) for n in array.shape))  # a table with text: object
        if array.dtype.hasobject:  # Python objects (labels, a table's text): hash their text, not their addresses
            array = array.astype(str)
        array = np.ascontiguousarray(array)
        digest.update(f"{role}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    path = str(getattr(settings, "path", "") or "") if settings is not None else ""
    name = f"{option}:{Path(path).name}" if path else option
    source = str(getattr(data, "source", "") or "") or f"data={option}"
    if "://" not in source:
        try:
            found = Path(source).expanduser()
            if found.is_file():
                source = str(found.resolve())
        except (OSError, ValueError):
            pass
    return DataRecord(name, digest.hexdigest()[:DIGEST_LENGTH], source, schema)


def git_tags(cwd: Optional[str] = None, timeout: float = GIT_TIMEOUT) -> dict[str, str]:
    """``orchestrator.git.commit``, ``.branch`` (not when detached) and ``.dirty`` (``true`` when a
    tracked file differs from the commit; untracked files, such as the runs' own ``mlruns/`` and
    ``outputs/``, do not count) of the git work tree ``cwd`` (default: the current directory) is
    in. One ``git status`` call that takes no lock; ``{}`` without git, outside a work tree, or
    when git takes longer than ``timeout`` seconds."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        log.warning("git status took more than %s s; the run records no git commit", timeout)
        return {}
    except (OSError, subprocess.SubprocessError):  # no git
        return {}
    if done.returncode != 0:  # not a work tree
        return {}
    tags, dirty = {}, False
    for line in done.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line[len("# branch.oid "):].strip()
            if commit != "(initial)":  # a repository without a commit yet
                tags["orchestrator.git.commit"] = commit
        elif line.startswith("# branch.head "):
            branch = line[len("# branch.head "):].strip()
            if branch != "(detached)":
                tags["orchestrator.git.branch"] = branch
        elif line and not line.startswith("#"):
            dirty = True
    tags["orchestrator.git.dirty"] = "true" if dirty else "false"
    return tags


def environment(plugins: Mapping[str, str] = ()) -> dict[str, Any]:
    """What ``environment.json`` holds: Python, the platform, the versions of :data:`PACKAGES`
    that are installed, and ``plugins`` (``{group: "distribution==version"}``, from the run's
    ``orchestrator.<group>.distribution`` tags)."""
    from importlib import metadata

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "packages": packages,
        "plugins": dict(plugins),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        found["torch.cuda"] = getattr(torch.version, "cuda", None)
    return found


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``name A -> B`` for each package, plugin distribution and Python version that differs
    between two :func:`environment` records (one missing on either side counts)."""
    changed = []
    if recorded.get("python") != current.get("python"):
        changed.append(f"python {recorded.get('python')} -> {current.get('python')}")
    for section in ("packages", "plugins"):
        before, now = dict(recorded.get(section) or {}), dict(current.get(section) or {})
        for name in sorted(set(before) | set(now)):
            if before.get(name) != now.get(name):
                changed.append(f"{name} {before.get(name, 'absent')} -> {now.get(name, 'absent')}")
    return changed


def record(run: TrackedRun, prepared: Prepared, resumed: bool) -> None:
    """Step 2 of :func:`orchestrator.runner.run`, after :func:`~orchestrator.runner.record_start`:
    the data set as an input of the run (again on resume: the same data set is recorded once, a
    changed one shows as a second input) and, for a new run, ``environment.json``. A tracker
    written before ``log_dataset`` existed records no data set."""
    data = getattr(prepared, "dataset", None)
    log_dataset = getattr(run, "log_dataset", None)
    if data is not None and log_dataset is not None:
        log_dataset(data.name, data.digest, data.source, data.schema, context="training")
    if not resumed:
        plugins = {group: provided.provenance for group, provided in prepared.chosen.items()
                   if isinstance(getattr(provided, "provenance", None), str)}
        run.log_text(json.dumps(environment(plugins), indent=2) + "\n", "environment.json")
