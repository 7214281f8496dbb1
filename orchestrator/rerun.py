"""``orchestrator rerun <run id> [key=value ...]``: a new run with the config a recorded run used.

The command line (:func:`orchestrator.cli.main`) finds the run in the store the command would
write to (``./mlruns/mlflow.db``, ``MLFLOW_TRACKING_URI``, or a ``tracking.uri=...`` given after
the run id) and reads its recorded config (the ``config.yaml`` artifact every run logs as it
starts) with :func:`load`. Hydra then composes the command line :func:`hydra_args` gives (the
run's options, ``model=cnn optimizer=adam ...``, and the settings given after the run id), so
that Hydra checks those settings and sets up the output folder and logging as for any run; the
job runs :func:`config`: the recorded config, with the settings given after the run id on top
(as ``resume=`` does), validated like any config before a run is opened. The new run is tagged
``orchestrator.rerun_of=<run id>``; :func:`report` then compares its test metrics and data set
with the original's.

Importing this module is cheap: OmegaConf and the standard library.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from .components import GROUPS
from .errors import OrchestratorError

if TYPE_CHECKING:
    from .plugins import Catalog
    from .runner import RunResult
    from .tracking_api import RunRecord

USAGE = "orchestrator rerun <run id> [key=value ...]"
HELP = f"""Usage: {USAGE}

Start a new run with the config run <run id> recorded (its config.yaml artifact: every option and
setting, the seed included), with the settings given after the run id on top. The new run is
tagged orchestrator.rerun_of=<run id>; on the CPU it reaches the same metrics when nothing else
changed (the data, the package versions: a difference is printed).

The run is looked for in the store the command would write to: ./mlruns/mlflow.db under the
current directory, $MLFLOW_TRACKING_URI, or tracking.uri=... given after the run id; the new run
is recorded in the same store.

  orchestrator rerun 0f3c9a...                      # the same run again
  orchestrator rerun 0f3c9a... trainer.max_epochs=50 optimizer.lr=0.01
  orchestrator rerun 0f3c9a... tracking.uri=sqlite:///elsewhere/mlflow.db
"""

#: The tag a rerun carries: the id of the run it recreates.
RERUN_OF = "orchestrator.rerun_of"


@dataclass
class Rerun:
    """A rerun, as :func:`load` found it."""

    #: The run recreated, and what the store holds about it (tags, final metrics, data sets).
    run_id: str
    original: RunRecord
    #: Its recorded config (``config.yaml``), as recorded.
    recorded: DictConfig
    #: The settings given after the run id.
    extras: list[str]
    #: The store that holds the run (``Tracker.uri``): the new run is recorded there too.
    uri: str
    #: The command line as typed: DDP's other ranks run it again.
    argv: list[str] = field(default_factory=list)
    #: Its recorded ``environment.json`` (None for a run recorded before there was one).
    environment: Optional[dict] = None


#: The rerun this process runs: set by the command line before Hydra composes, read by the job.
active: Optional[Rerun] = None


def parse(args: Sequence[str]) -> tuple[str, list[str]]:
    """``(run id, settings)`` from the words after ``rerun``, or a refusal naming the usage."""
    if not args or args[0].startswith("-") or "=" in args[0]:
        raise OrchestratorError(f"rerun needs the id of the run to recreate. Usage: {USAGE}")
    run_id, extras = args[0], list(args[1:])
    for arg in extras:
        key = arg.lstrip("+~").split("=", 1)[0]
        if arg in ("-m", "--multirun") or arg == "hydra.mode=MULTIRUN" or key in ("hparams_search", "experiment"):
            raise OrchestratorError(
                f"rerun {run_id} {arg}: rerun starts one run from a recorded config, so it takes "
                "no sweep (-m, hparams_search=) and no experiment= preset. Give the settings to "
                "change as key=value (trainer.max_epochs=50), or start a sweep with python -m orchestrator -m."
            )
        if key == "resume":
            raise OrchestratorError(
                f"rerun {run_id} {arg}: rerun starts a new run; to continue an interrupted run in "
                "place, use python -m orchestrator resume=<run id>."
            )
    return run_id, extras


def load(catalog: Catalog, args: Sequence[str], argv: Sequence[str] = ()) -> Rerun:
    """Find the run and read its recorded config, or refuse with one paragraph: no such run in
    the store, or no recorded config. Opens no run."""
    from .tracking_api import open_tracker

    run_id, extras = parse(args)
    uri = None
    for arg in extras:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "tracking.uri":
            uri = value.strip("'\"") or None
    tracker = open_tracker(catalog.pm.hook, uri)
    original = tracker.find_run(run_id)
    if original is None:
        raise OrchestratorError(
            f"rerun {run_id}: no run with that id in {tracker.uri}. A run is looked for in the "
            "store the command would write to: ./mlruns/mlflow.db under the current directory, "
            "$MLFLOW_TRACKING_URI, or tracking.uri=... given after the run id (orchestrator rerun "
            f"{run_id} tracking.uri=sqlite:///path/to/mlruns/mlflow.db). Nothing was started."
        )
    with tempfile.TemporaryDirectory(prefix="orchestrator-rerun-") as into:
        config = tracker.download_artifact(run_id, "config.yaml", into)
        if config is None:
            what = ("it is a sweep's parent run, which records the sweep, not a config: rerun one "
                    "of its children" if original.tags.get("orchestrator.sweep") == "parent" else
                    "runs record it as they start, so this one was refused before it started or "
                    "was not made by orchestrator")
            raise OrchestratorError(
                f"rerun {run_id}: the run has no recorded config (artifact config.yaml) in "
                f"{tracker.uri}, so it cannot be recreated: {what}. Nothing was started."
            )
        recorded = OmegaConf.load(config)
        found = tracker.download_artifact(run_id, "environment.json", into)
        environment = None
        if found is not None:
            try:
                with open(found) as handle:
                    environment = json.load(handle)
            except (OSError, ValueError):
                environment = None
    if not isinstance(recorded, DictConfig):
        raise OrchestratorError(f"rerun {run_id}: its config.yaml is not a config (a mapping of settings).")
    return Rerun(run_id, original, recorded, extras, tracker.uri, list(argv), environment)


def _chosen_groups(extras: Sequence[str]) -> set[str]:
    return {arg.lstrip("+~").split("=", 1)[0] for arg in extras}


def hydra_args(rerun: Rerun) -> list[str]:
    """What Hydra composes for the job: the recorded run's options (``model=cnn``, its callbacks)
    where the settings given do not choose another, then those settings."""
    from .components import CALLBACKS

    given = _chosen_groups(rerun.extras)
    args = []
    for group in GROUPS:
        node = rerun.recorded.get(group)
        name = node.get("_name_") if isinstance(node, DictConfig) else None
        if name and group not in given:
            args.append(f"{group}={name}")
    callbacks = rerun.recorded.get(CALLBACKS)
    if isinstance(callbacks, DictConfig) and len(callbacks) and CALLBACKS not in given:
        args.append(f"{CALLBACKS}=[{','.join(str(name) for name in callbacks)}]")
    return args + list(rerun.extras)


def config(rerun: Rerun, composed: DictConfig) -> DictConfig:
    """The rerun's config: the recorded one, each setting given after the run id on top with
    the value Hydra composed for it (a group chosen anew, ``model=logistic``, brings that
    option's settings; ``~key`` removes one); ``resume`` cleared; the store where the run was
    found. Validated by the runner like any config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    result = OmegaConf.create(OmegaConf.to_container(rerun.recorded, resolve=False))
    parser = OverridesParser.create()
    given_uri = False
    for arg in rerun.extras:
        try:
            override = parser.parse_override(arg)
        except Exception:  # Hydra composed the command line, so this does not happen
            continue
        key = override.key_or_group
        if key == "hydra" or key.startswith("hydra.") or key.startswith("hydra/") or override.package:
            continue
        given_uri = given_uri or key == "tracking.uri"
        parent, _, leaf = key.rpartition(".")
        if override.is_delete():
            node = OmegaConf.select(result, parent) if parent else result
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
            continue
        value = OmegaConf.select(composed, key, default=None, throw_on_missing=False)
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(result, key, value, merge=False, force_add=True)
    result.resume = None
    if not given_uri and OmegaConf.select(result, "tracking.uri") is not None:
        result.tracking.uri = rerun.uri  # the store that holds the run, however it was named then
    return result


def environment_notes(rerun: Rerun, catalog: Catalog) -> list[str]:
    """The versions that differ from those the run recorded (Python, packages, the plugin
    distributions providing its options): a reason metrics may differ."""
    from .provenance import differences, environment

    if rerun.environment is None:
        return []
    plugins = {}
    for group in GROUPS:
        node = rerun.recorded.get(group)
        name = node.get("_name_") if isinstance(node, DictConfig) else None
        provided = catalog.options.get(group, {}).get(name) if name else None
        if provided is not None:
            plugins[group] = provided.provenance
    recorded = dict(rerun.environment)
    recorded["plugins"] = {g: v for g, v in (recorded.get("plugins") or {}).items() if g in plugins}
    return differences(recorded, environment(plugins))


def is_worker_rank() -> bool:
    """A DDP rank other than zero runs the command line again: it says nothing."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("NODE_RANK", "0") or 0) > 0


def announce(rerun: Rerun, catalog: Catalog) -> None:
    """Before the rerun: what it recreates, and the versions that changed since."""
    if is_worker_rank():
        return
    print(f"Rerunning run {rerun.run_id} from its recorded config"
          + (f", with {' '.join(rerun.extras)}" if rerun.extras else "") + ".")
    changed = environment_notes(rerun, catalog)
    if changed:
        print(f"Note: versions differ from those run {rerun.run_id} recorded, so metrics may differ: "
              f"{'; '.join(changed)}.", file=sys.stderr)


def report(rerun: Rerun, result: RunResult) -> None:
    """After the rerun: whether its test metrics equal the original's, and whether the data set
    it trained on is the same (its digest)."""
    from .plugins import get_catalog
    from .tracking_api import open_tracker

    tracker = open_tracker(get_catalog().pm.hook, result.tracking_uri)
    new = tracker.find_run(result.run_id)
    if new is None:
        return
    before = {k: v for k, v in rerun.original.metrics.items() if k.startswith("test/")}
    after = {k: v for k, v in new.metrics.items() if k.startswith("test/")}
    if not before:
        print(f"Run {rerun.run_id} has no test metrics to compare (it did not finish).")
    elif before == after:
        print(f"Same test metrics as run {rerun.run_id}: "
              + ", ".join(f"{k}={v:.6g}" for k, v in sorted(after.items())) + ".")
    else:
        changed = [f"{k} {before.get(k, 'absent')} -> {after.get(k, 'absent')}"
                   for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        settings = [arg for arg in rerun.extras
                    if not arg.lstrip("+~").startswith(("hydra.", "hydra/", "tracking.uri="))]
        if settings:  # expected: the settings changed
            print(f"Test metrics, with {' '.join(settings)}, against run {rerun.run_id}'s: {'; '.join(changed)}.")
        else:
            print(f"Test metrics differ from run {rerun.run_id}'s: {'; '.join(changed)}. The config is the "
                  "same: see the notes on versions and data; GPU training is not bit-for-bit "
                  "deterministic.", file=sys.stderr)
    was = {d.get("digest") for d in rerun.original.datasets}
    now = {d.get("digest") for d in new.datasets}
    if was and now and was != now:
        print(f"Note: the data differ from those run {rerun.run_id} trained on (data set digest "
              f"{', '.join(sorted(was))} -> {', '.join(sorted(now))}): a data file may have changed.",
              file=sys.stderr)
