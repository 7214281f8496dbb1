"""Job identity and reuse: what a run trains, as one short key, and a FINISHED run with the same
key taken in place of training again (``sweep.reuse=true``).

- :func:`job_key`: SHA-256 (first 16 hex digits) of what decides a run's training: its resolved
  config without the keys that only say how it is recorded, swept or continued (``tracking.*``,
  ``sweep.*``, ``resume``, ``hydra.*``) or what the terminal shows (``trainer.enable_progress_bar``,
  ``trainer.enable_model_summary``); the digest of the data it loaded
  (:func:`orchestrator.provenance.describe_data`, computed once while the run is prepared: no
  second pass over the data); and the versions of the plugin distributions that provide its
  options and callbacks (``orchestrator==0.1.0``). Every run is tagged ``orchestrator.job_key``.
- :func:`find_reusable`: with ``sweep.reuse=true``, the newest FINISHED run of the same
  experiment with that key (never a FAILED, KILLED or RUNNING one, nor one tagged
  ``orchestrator.pruned``), asked of the tracker once the data are described and before torch,
  Lightning or the model is touched.
- :func:`record_reused`: instead of training, a new run (a sweep's child under its parent, like
  any job) records the job: its config, params, overrides, data set and environment, the tag
  ``orchestrator.reused_from=<run id>`` naming the run that trained, and that run's final metrics,
  copied; it ends FINISHED, and the job returns the copied ranking metric to the sweeper.
  ``on_run_start`` and ``on_run_end`` are not called: nothing is trained.

Importing this module is cheap: the standard library and OmegaConf only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from .lifecycle import FINISHED, final_status

if TYPE_CHECKING:
    from .runner import Prepared, RunResult
    from .tracking_api import RunRecord, Tracker

log = logging.getLogger(__name__)

#: The tag holding a run's key.
JOB_KEY = "orchestrator.job_key"
#: The tag of a run that was not trained: the id of the FINISHED run whose results it reuses.
REUSED_FROM = "orchestrator.reused_from"
#: A run a sweeper stopped early (a pruned trial): never reused, whatever its status.
PRUNED = "orchestrator.pruned"
#: Hex digits of the SHA-256 kept as the key.
KEY_LENGTH = 16
#: Changes when what the key covers changes, so that older keys stop matching.
KEY_VERSION = 1
#: Top-level keys that say how a run is recorded, swept or continued, never what it trains.
NOT_TRAINING = ("tracking", "sweep", "resume", "hydra")
#: Trainer arguments that change what the terminal shows, never what is trained.
TRAINER_DISPLAY = ("enable_progress_bar", "enable_model_summary")
#: Metrics every run records about its splits itself (:func:`orchestrator.runner.record_start`).
OWN_METRICS = ("data.n_train", "data.n_val", "data.n_test")


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as far as it decides training (see the module's description)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_TRAINING:
        config.pop(key, None)
    trainer = config.get("trainer")
    if isinstance(trainer, dict):
        for key in TRAINER_DISPLAY:
            trainer.pop(key, None)
    return config


def distributions(chosen: Mapping[str, Any], callbacks: Mapping[str, Any] = ()) -> dict[str, str]:
    """``{group: "distribution==version"}`` of the plugins providing the chosen options, and
    ``{"callbacks.<name>": ...}`` of the chosen callbacks (``callbacks``: name -> (provided,
    settings), as :class:`orchestrator.settings.Settings` holds them)."""
    found = {group: str(getattr(provided, "provenance", "")) for group, provided in chosen.items()}
    for name, entry in dict(callbacks or {}).items():
        provided = entry[0] if isinstance(entry, tuple) else entry
        found[f"callbacks.{name}"] = str(getattr(provided, "provenance", ""))
    return found


def job_key(cfg: DictConfig, data_digest: str, chosen: Mapping[str, Any],
            callbacks: Mapping[str, Any] = ()) -> str:
    """The key of a run of ``cfg`` on the data with digest ``data_digest``, its options provided
    by ``chosen`` (group -> provided option) and its callbacks by ``callbacks``."""
    material = {
        "version": KEY_VERSION,
        "config": training_config(cfg),
        "data": data_digest,
        "distributions": distributions(chosen, callbacks),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def find_reusable(tracker: Tracker, experiment: str, key: str) -> Optional[RunRecord]:
    """The run to reuse for a job with key ``key``: the newest FINISHED, unpruned run of
    ``experiment`` with that key that was trained, else one that itself reused a trained run
    (its ``orchestrator.reused_from`` names the original); None if there is none, or if the
    tracker cannot search runs by tag (``runs_tagged``) or fails to (the job then trains)."""
    search = getattr(tracker, "runs_tagged", None)
    if search is None:
        log.warning("sweep.reuse=true: the tracker %s cannot search runs by tag; the job trains.",
                    type(tracker).__name__)
        return None
    try:
        found = search(experiment, {JOB_KEY: key}, status=FINISHED)
    except Exception as error:  # the store is down, say: training is still possible
        log.warning("sweep.reuse=true: looking for a run with job key %s failed (%s: %s); the job trains.",
                    key, type(error).__name__, error)
        return None
    usable = [r for r in found if r.status == FINISHED and r.tags.get(JOB_KEY) == key
              and str(r.tags.get(PRUNED, "")).lower() not in ("true", "1", "yes")]
    trained = [r for r in usable if not r.tags.get(REUSED_FROM)]
    return (trained or usable or [None])[0]


def origin(record: RunRecord) -> str:
    """The id of the run that trained what ``record`` holds."""
    return record.tags.get(REUSED_FROM) or record.run_id


def record_reused(tracker: Tracker, prepared: Prepared, overrides: Sequence[str],
                  parent_run_id: Optional[str], extra_tags: Optional[Mapping[str, str]]) -> RunResult:
    """Record a job whose key matched ``prepared.reused`` without training it: a new FINISHED run
    (nested under ``parent_run_id`` in a sweep) with the job's config, params, overrides, data
    set and environment, tagged ``orchestrator.reused_from``, holding the original's final
    metrics. Returns them as the job's metrics."""
    from .provenance import git_tags
    from .provenance import record as record_provenance
    from .runner import RunResult, default_run_name, record_start

    cfg, original = prepared.cfg, prepared.reused
    source = origin(original)
    tags = {**prepared.tags(), **git_tags(), **dict(extra_tags or {}), REUSED_FROM: source}
    if original.tags.get("orchestrator.model.selected"):
        tags["orchestrator.model.selected"] = original.tags["orchestrator.model.selected"]
    tracked = tracker.start_run(cfg.tracking.experiment, default_run_name(cfg), tags, parent_run_id)
    metrics = {k: float(v) for k, v in original.metrics.items() if k not in OWN_METRICS}
    try:
        record_start(tracked, tracker, cfg, prepared.splits, overrides, resumed=False)
        record_provenance(tracked, prepared, resumed=False)
        tracked.log_metrics(metrics)
    except BaseException as error:
        tracked.end(final_status(error), error)
        raise
    tracked.end(FINISHED)
    log.info("Run %s reuses FINISHED run %s (job key %s, sweep.reuse=true): not trained again.",
             tracked.run_id, source, prepared.job_key)
    return RunResult(tracked.run_id, tracker.uri, metrics, "", None, prepared.splits)
