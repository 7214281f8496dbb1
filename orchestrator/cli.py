"""The command line: ``python -m orchestrator`` and the ``orchestrator`` console script.

``main()`` loads the plugins first (so their options exist), registers their config schemas
with Hydra, then hands the command line to one Hydra app whose primary config is ``conf/``.
``orchestrator plugins`` lists what is installed instead, without importing torch;
``orchestrator rerun <run id>`` starts a new run from a recorded run's config
(:mod:`orchestrator.rerun`); ``orchestrator sweep close [<parent run id>]`` ends the runs a
killed process left RUNNING (:mod:`orchestrator.orphans`); ``orchestrator sweep resume <parent run id>``
runs the jobs of a sweep that did not finish, under the same parent (:mod:`orchestrator.sweep_resume`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from .components import GROUPS
from .config import conf_dir
from .errors import OrchestratorError
from .plugins import Catalog, get_catalog

CONF_DIR = conf_dir()  # Hydra's primary config folder; orchestrator.config.compose() uses it too


def fail(error: OrchestratorError) -> None:
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig) -> float | list[float] | None:
    """One job: train, and return the ranking metric (what a sweeper such as Optuna optimises;
    with several metrics, ``sweep.metric=[a,b]``, a list of their values).

    In a sweep, a job that fails is recorded as a FAILED child run and returns None, so the
    other jobs go on (a sweeper that ranks trials, such as Optuna, records it as a failed
    trial); the sweep's summary names it, and the command exits non-zero at the end.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import rerun
    from .runner import run
    from .sweep import ranking, read_parent

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    parent = read_parent(hydra_cfg.sweep.dir) if multirun else None
    tags = {}
    if multirun:
        tags = {"orchestrator.sweep.job": str(hydra_cfg.job.num),
                "orchestrator.overrides": " ".join(hydra_cfg.overrides.task)}
        share_cores(hydra_cfg)
    overrides = hydra_cfg.overrides.task
    try:
        if rerun.active is not None:  # orchestrator rerun <run id>: the recorded config, settings on top
            cfg, overrides = rerun.config(rerun.active, cfg), rerun.active.extras
            tags[rerun.RERUN_OF] = rerun.active.run_id
            sys.argv = list(rerun.active.argv)  # DDP's other ranks run the command as typed
        result = run_with_retries(cfg, overrides, hydra_cfg, parent, tags,
                                  int(cfg.sweep.get("retries") or 0) if multirun else 0)
    except Exception as error:
        if not multirun:
            if isinstance(error, OrchestratorError):
                fail(error)
            crashed(error, hydra_cfg.runtime.output_dir)
        print(f"Job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return None
    if result.run_id:  # DDP ranks other than zero have no run of their own
        print(f"Run {result.run_id} FINISHED in {result.tracking_uri}")
        if rerun.active is not None:
            rerun.report(rerun.active, result)
    if isinstance(cfg.sweep.metric, (list, tuple, ListConfig)):  # several objectives: a value each
        values = [result.metrics.get(str(m), float("nan")) for m in cfg.sweep.metric]
        return values if all(math.isfinite(v) for v in values) else None
    metric, _ = ranking(cfg.sweep.metric, cfg.sweep.mode, result.splits.task)
    value = result.metrics.get(metric, float("nan"))
    return value if math.isfinite(value) else None


def run_with_retries(cfg: DictConfig, overrides, hydra_cfg, parent: Optional[dict], tags: dict, retries: int):
    """One job, tried again up to ``retries`` times when it fails unexpectedly (sweep.retries):
    bad input and divergence (OrchestratorError) would only fail the same way again."""
    from .runner import run

    for attempt in range(1, retries + 2):
        attempt_tags = {**tags, "orchestrator.attempt": str(attempt)} if retries else tags
        try:
            return run(cfg, overrides=overrides, output_dir=hydra_cfg.runtime.output_dir,
                       parent_run_id=parent["run_id"] if parent else None, extra_tags=attempt_tags,
                       resume_sweep=bool(parent and parent.get("resume")))  # orchestrator sweep resume
        except Exception as error:
            if attempt > retries or isinstance(error, OrchestratorError):
                raise
            mark_retried(error)
            print(f"Job {hydra_cfg.job.num} attempt {attempt} of {retries + 1} failed: "
                  f"{type(error).__name__}: {error}; trying again.", file=sys.stderr)


def mark_retried(error: BaseException) -> None:
    """Tag the FAILED run of a superseded attempt ``orchestrator.retried=true``, if it has one."""
    from .sweep import _tracker

    where = getattr(error, "orchestrator_run", None)
    if where is None:
        return
    try:
        _tracker(where[0]).attach(where[1]).set_tags({"orchestrator.retried": "true"})
    except Exception as failure:  # the retry goes on; the summary may count the attempt as failed
        print(f"Warning: could not tag run {where[1]} as retried: {failure}", file=sys.stderr)


def crashed(error: Exception, output_dir: str) -> None:
    """An unexpected error (a bug, here or in a plugin): one paragraph saying what happened and
    where the full traceback is, exit status 1. The MLflow run, if one was open, is FAILED
    with the error as its ``error`` tag and the traceback as its ``error.txt`` artifact."""
    from .lifecycle import report

    path = Path(output_dir) / "traceback.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report(error))  # the same text the run's error.txt holds
        where = f"The full traceback is in {path}"
    except OSError:
        where = "The traceback could not be written"
    run = getattr(error, "orchestrator_run", None)
    if run is not None:
        where += f" and in run {run[1]} (artifact error.txt, store {run[0]}), which is FAILED"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "orchestrator.lightning" in sys.modules:  # imported once training began
        from .lightning import RankFailed

        if isinstance(error, RankFailed):  # a process died or failed: not a bug to report
            print(f"Error: {first} {where}.", file=sys.stderr)
            sys.exit(1)
    print(f"Error: training failed with an unexpected {type(error).__name__}: {first} This is not a "
          f"problem with your settings but a bug, in the framework or in a plugin. {where}.",
          file=sys.stderr)
    sys.exit(1)


def share_cores(hydra_cfg) -> None:
    """Jobs of a parallel launcher share the cores instead of each taking all of them."""
    import os

    n_jobs = hydra_cfg.launcher.get("n_jobs") if "launcher" in hydra_cfg else None
    if n_jobs is None:
        return
    import torch

    cores = os.cpu_count() or 1
    parallel = cores if int(n_jobs) < 1 else min(int(n_jobs), cores)
    torch.set_num_threads(max(1, cores // parallel))


def check_chosen_options(catalog: Catalog, args: list[str]) -> None:
    """Refuse ``group=option`` (or a sweep ``group=a,b``) naming an option nobody provides,
    before a sweep opens its parent run: with the choices, the closest name, and the plugin that
    failed to load if one would have provided it."""
    for arg in args:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in GROUPS or "(" in value:  # choice(...), glob(...): Hydra's to expand
            continue
        for name in value.split(","):
            if name and name not in catalog.options[key] and not catalog.has_yaml_option(key, name):
                note = catalog.failure_note(key, name)
                if note:
                    raise OrchestratorError(
                        f"{key}={name} is not available: no loaded plugin provides it.{note}"
                    )
                catalog.get(key, name)  # raises with the choices and the closest name


def refuse_ddp_sweeps(args: list[str]) -> None:
    """Lightning's DDP starts the other ranks by running the command line again: inside a
    multirun, every rank would launch the whole sweep. Refuse the pair instead of hanging."""
    multirun = is_multirun(args)
    ddp = [a for a in args if a.split("=", 1)[0] in ("trainer", "trainer.strategy", "+trainer.strategy")
           and "ddp" in a.split("=", 1)[-1]]
    if multirun and ddp:
        raise OrchestratorError(
            f"{ddp[0]} cannot run inside a multirun sweep: DDP starts its other processes by running "
            "the command line again, so each would start the sweep anew. Run DDP jobs one at a time "
            "(python -m orchestrator trainer=ddp_cpu ...), or sweep across processes with a launcher "
            "(hydra/launcher=submitit_local or submitit_slurm) without DDP."
        )


#: Keys that make Hydra import or call code: none may be set from the command line.
RESERVED_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")


def parsed_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """``(argument, Hydra Override)`` for each ``key=value`` argument that Hydra's own grammar
    parses (flags and unparsable arguments are left for Hydra to report)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    found = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg and not arg.startswith("~"):
            continue
        try:
            found.append((arg, parser.parse_override(arg)))
        except Exception:
            continue
    return found


def _holds_reserved_key(value: Any) -> bool:
    """Whether a parsed override value (dict, list, sweep of them) holds a reserved key at any
    depth. A plain string is data, whatever letters it holds."""
    from hydra.core.override_parser.types import ChoiceSweep

    if isinstance(value, dict):
        return any(str(k) in RESERVED_KEYS or _holds_reserved_key(v) for k, v in value.items())
    if isinstance(value, ChoiceSweep):
        return any(_holds_reserved_key(v) for v in value.list)
    if isinstance(value, (list, tuple)):
        return any(_holds_reserved_key(v) for v in value)
    return False


def refuse_targets(parsed: list[tuple[str, Any]]) -> None:
    """No override may name code to import: components are chosen by registered name only.
    Refused: a key with a segment such as ``_target_``, or a dict or list value holding one.
    ``parsed``: :func:`parsed_overrides` of the command line."""
    for arg, override in parsed:
        segments = override.key_or_group.split(".") + (override.package or "").split(".")
        try:
            value = override.value()
        except Exception:
            value = None
        if any(segment in RESERVED_KEYS for segment in segments) or _holds_reserved_key(value):
            raise OrchestratorError(
                f"{arg!r} is refused: _target_ cannot be set from the command line, nor _args_, "
                "_partial_, _recursive_ or _convert_, as a key or inside a value, because Hydra "
                "would import and call what they name. Components are chosen by their registered names (model=cnn, optimizer=adam), "
                "never by a dotted path; install a plugin to add one."
            )


def is_multirun(args: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in args) or "hydra.mode=MULTIRUN" in args \
        or any(a.startswith("hparams_search=") for a in args)


def _sweep_values(override) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [str(override.value())]


#: Groups of presets that choose options of their own (``override /regularizer: l2``).
PRESET_GROUPS = ("experiment", "hparams_search")


def refuse_settings_some_options_lack(catalog: Catalog, args: list[str], parsed: list[tuple[str, Any]]) -> None:
    """In a sweep, a setting of a group (``model.degree=...``) that some of the swept options
    do not have would fail those jobs one by one after the sweep started: refuse the sweep
    before any job starts and before any run is opened, naming the jobs concerned (numbered
    as Hydra's basic sweeper numbers them)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if not is_multirun(args):
        return
    if any(override.key_or_group in PRESET_GROUPS for _, override in parsed):
        return  # a preset may choose the options itself; each job's settings are still checked
    chosen: dict[str, list[str]] = {}
    for _, override in parsed:
        if override.key_or_group in GROUPS and override.package is None:
            try:
                chosen[override.key_or_group] = _sweep_values(override)
            except Exception:  # glob(): options known only to Hydra's config loader
                return
    for group, default in (("model", "linear"), ("optimizer", "gd"), ("regularizer", "none"), ("scheduler", "none")):
        chosen.setdefault(group, [default])
    if "data" not in chosen:  # each model trains on its preferred data
        models = [catalog.options["model"].get(m) for m in chosen["model"]]
        chosen["data"] = sorted({m.component.default_data for m in models if m and m.component.default_data})
    for arg, override in parsed:
        group, _, rest = override.key_or_group.partition(".")
        if group not in GROUPS or not rest or override.package is not None:
            continue
        setting = rest.split(".")[0]
        lacking = []
        for name in chosen.get(group, []):
            provided = catalog.options[group].get(name)
            if provided is not None and setting not in provided.component.schema.__dataclass_fields__:
                lacking.append(name)
        if not lacking:
            continue
        task = [o for _, o in parsed if not o.key_or_group.startswith("hydra")]
        try:
            (every_job,) = BasicSweeper.split_arguments(task, max_batch_size=None)
        except Exception:  # interval(...) and the like: a search's sweeper expands those
            return
        swept = {o.key_or_group for o in task if o.is_sweep_override()}
        jobs = [(n, " ".join(job)) for n, job in enumerate(every_job)
                if group not in swept or any(f"{group}={name}" in job for name in lacking)]
        shown = "; ".join(f"job {n}: {text}" for n, text in jobs[:5]) + (" ..." if len(jobs) > 5 else "")
        lacks = ", ".join(f"{group}={name}" for name in lacking)
        raise OrchestratorError(
            f"{arg} cannot be swept as given: {lacks} {'has' if len(lacking) == 1 else 'have'} no "
            f"setting {setting!r}, so {len(jobs)} of the sweep's jobs would fail ({shown}). Nothing "
            f"was started. Run one sweep per {group} option, each with the settings it has, or put "
            f"each option's settings in an experiment preset (experiment=...) and sweep those."
        )


def raised_by_hydra(error: BaseException) -> bool:
    """Whether Hydra's own code raised ``error`` (it refuses ``model=0`` with a ValueError)."""
    import traceback

    return any("/hydra/" in frame.filename.replace("\\", "/")
               for frame in traceback.extract_tb(error.__traceback__)[-3:])


def diagnose(catalog: Catalog, args: list[str], error: Exception) -> OrchestratorError:
    """Hydra's own composition failure, translated into a message that names the key, the value
    and the closest valid names (Hydra would say less). Composes nothing unless it must list
    the settings of the node a bad key was aimed at."""
    from hydra.errors import MissingConfigException

    from .config import compose
    from .errors import closest

    overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    if isinstance(error, MissingConfigException):
        for arg in overrides:
            key, _, value = arg.lstrip("+~").partition("=")
            for name in value.split(","):
                if key in catalog.options and name and name not in catalog.options[key] \
                        and not catalog.has_yaml_option(key, name):
                    try:
                        catalog.get(key, name)
                    except OrchestratorError as unknown:  # with the choices and the closest name
                        return unknown
    cause = error.__cause__ or error
    full_key = getattr(cause, "full_key", None) or ""
    bad = next((a for a in overrides if a.lstrip("+~").split("=", 1)[0] == full_key), None)
    reason = str(getattr(cause, "msg", None) or cause).strip().splitlines()
    reason = reason[0] if reason else type(error).__name__
    if not full_key or bad is None:
        return OrchestratorError(f"The command line {' '.join(args)!r} cannot be composed: {reason}.")
    value = bad.split("=", 1)[1] if "=" in bad else ""
    if not any(words in reason for words in ("not in struct", "Could not override", "not in '")):
        return OrchestratorError(f"{full_key}={value!r} is not valid: {reason}.")
    parent, _, leaf = full_key.rpartition(".")
    node = None
    for rest in ([a for a in overrides if a is not bad], []):  # without the bad one, or at all
        try:
            base = compose(rest, catalog)
            node = OmegaConf.select(base, parent) if parent else base
            break
        except Exception:
            continue
        finally:
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()
    known = [k for k in (node.keys() if isinstance(node, DictConfig) else []) if k != "_name_"]
    option = f"={node._name_}" if isinstance(node, DictConfig) and "_name_" in node else ""
    where = f"Settings of {parent}{option}" if parent else "Top-level settings"
    return OrchestratorError(
        f"{full_key} is not a setting{closest(leaf, known)}. {where}: {', '.join(map(str, known)) or 'none'}."
        + (" Lightning Trainer arguments not listed here are added with +trainer.<name>=<value>."
           if parent == "trainer" else "")
    )


def console() -> None:
    """``python -m orchestrator`` and the ``orchestrator`` script: :func:`main`, then exit quickly.

    A process that imported torch, Lightning and MLflow spent 1.5 s (2-core machine) after its
    last line, in the interpreter's final garbage collections over those modules' objects.
    Everything a command writes is written before :func:`main` returns (the store commits every
    call, the files are closed), so the objects alive then are frozen out of those collections
    (``gc.freeze``); atexit handlers and module teardown still run."""
    try:
        main()
    finally:
        import gc

        gc.freeze()


def main() -> None:
    args = sys.argv[1:]
    # The launching process's pid in output folder names (conf/config.yaml) keeps processes
    # started in the same instant apart; the jobs it starts (a launcher's workers, DDP ranks)
    # inherit it, so they find the same folder.
    os.environ["ORCHESTRATOR_LAUNCH_ID"] = str(os.getpid())
    if args[:1] == ["new-plugin"]:
        from .scaffold import main as new_plugin

        sys.exit(new_plugin(args[1:]))
    if args[:1] == ["rerun"] and any(a in ("-h", "--help") for a in args[1:]):
        from .rerun import HELP

        print(HELP, end="")
        return
    if args[:1] == ["sweep"] and any(a in ("-h", "--help") for a in args[1:]):
        from .orphans import HELP as SWEEP_HELP

        print(SWEEP_HELP, end="")
        return
    if "--version" in args or "-V" in args:  # ours, then Hydra's (printed by Hydra as it exits)
        from . import __version__

        print(f"orchestrator {__version__}")
        if "-V" in args:
            return
    start = time.perf_counter()
    try:
        catalog = get_catalog()
        seconds = time.perf_counter() - start
        if args[:1] == ["plugins"]:
            from .listing import plugins_command

            sys.exit(plugins_command(args[1:], catalog, seconds))
        if args[:1] == ["sweep"] and args[1:2] != ["resume"]:  # sweep close [<parent run id>]: dead runs end KILLED
            from .orphans import sweep_command

            sys.exit(sweep_command(args[1:], catalog))
        for failure in catalog.failures:
            print(f"Warning: {failure}", file=sys.stderr)
        if args[:1] == ["rerun"]:  # Hydra composes the recorded run's options and the settings given
            from . import rerun

            rerun.active = rerun.load(catalog, args[1:], sys.argv)
            args = rerun.hydra_args(rerun.active)
            sys.argv = [sys.argv[0], *args]
            rerun.announce(rerun.active, catalog)
        if args[:2] == ["sweep", "resume"]:  # the sweep's recorded command line, under the same parent
            from . import sweep_resume

            sweep_resume.active = sweep_resume.load(catalog, args[2:])
            args = sweep_resume.command_line(sweep_resume.active)
            sys.argv = [sys.argv[0], *args]
            sweep_resume.announce(sweep_resume.active, args)
        parsed = parsed_overrides(args)
        refuse_targets(parsed)
        refuse_ddp_sweeps(args)
        check_chosen_options(catalog, args)
        refuse_settings_some_options_lack(catalog, args, parsed)
        catalog.register_with_hydra()
    except OrchestratorError as error:
        fail(error)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from . import sweep
    from .errors import Interrupted
    from .lifecycle import final_status

    # Hydra composes the config (the only composition); with HYDRA_FULL_ERROR it raises what it
    # refuses instead of printing it, and diagnose() turns that into the framework's message.
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_app()
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        if isinstance(error, ValueError) and not raised_by_hydra(error):
            raise
        refusal = diagnose(catalog, args, error)
        sweep.abandon_sweep(final_status(refusal), f"sweep ended early: {refusal}")
        fail(refusal)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C outside training (Hydra between jobs)
            import signal

            error = Interrupted(signal.SIGINT)
        sweep.abandon_sweep(final_status(error), f"sweep ended early: {type(error).__name__}: {error}")
        if isinstance(error, Interrupted):
            print(f"Interrupted ({error}): runs in progress are KILLED, with a checkpoint to resume "
                  "from (resume=<run id>).", file=sys.stderr)
            sys.exit(128 + error.signum)  # 130 for SIGINT, 143 for SIGTERM, as shells report
        raise
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    if sweep.last_sweep.get("failed"):
        print(f"Error: {sweep.last_sweep['failed']} of {sweep.last_sweep['children']} jobs failed; "
              "see the summary above.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
