"""MLflow glue: where the store is, and the life of one run (params, tags, artifacts, model,
FINISHED or FAILED). Lightning writes metric points into the run through its logger; everything
else about the run happens here."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import traceback
from pathlib import Path
from typing import Any, Optional

MLRUNS = "mlruns"


def resolve_uri(uri: Optional[str] = None, root: Optional[Path] = None) -> str:
    """The tracking URI: ``uri`` if given, else ``MLFLOW_TRACKING_URI``, else SQLite at
    ``<root>/mlruns/mlflow.db`` (root: the directory the command runs from), made absolute so
    every job of every launcher writes to the same store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            path = Path(uri[len("sqlite:///") :]).resolve()  # relative path: anchor it now
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        return uri
    store = (root or Path.cwd()).resolve() / MLRUNS
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def default_artifact_location(uri: str, experiment: str) -> Optional[str]:
    """For a local SQLite store, artifacts go under the ``mlruns/`` beside the database (MLflow
    would otherwise put them under the current directory); other stores decide for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment) or "experiment"
    return (Path(uri[len("sqlite:///") :]).parent / folder).as_uri()


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive file lock beside a SQLite store while it may be created: processes
    that open a brand-new store at once otherwise race on its migrations ("duplicate column")."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    path = Path(uri[len("sqlite:///") :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock"))):  # portable: Linux, macOS, Windows
        yield


_ready: set[str] = set()


def ensure_store(uri: str) -> None:
    """Create (migrate) the store under the lock, once per process, before anything else opens
    it: every ``MlflowClient`` (Lightning's logger's too) opens the store when it is made."""
    if uri in _ready or not uri.startswith("sqlite:///"):
        return
    import mlflow

    with store_lock(uri):
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    _ready.add(uri)


def get_or_create_experiment(client, uri: str, name: str) -> str:
    with store_lock(uri):
        return _get_or_create_experiment(client, uri, name)


def _get_or_create_experiment(client, uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        # experimentKind opens the UI on the runs table (MLflow 3 defaults to its GenAI views).
        return client.create_experiment(
            name, default_artifact_location(uri, name),
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    except MlflowException:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """``{"model.hidden": "64", ...}`` from a nested dict or list."""
    items: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            items.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(config, (list, tuple)) and any(isinstance(v, (dict, list)) for v in config):
        for index, value in enumerate(config):
            items.update(flatten(value, f"{prefix}{index}."))
    else:
        items[prefix[:-1]] = str(config)
    return items


def write_points(client, run_id: str, points: list[tuple[str, float, int, int]]) -> None:
    """Write metric points ``(key, value, timestamp_ms, step)`` with one ``log_batch`` call per
    1000 (MLflow's limit): a point costs a SQLite store about 0.1 ms, a call far more."""
    from mlflow.entities import Metric

    for start in range(0, len(points), 1000):
        chunk = points[start : start + 1000]
        client.log_batch(run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in chunk])


class Run:
    """One MLflow run, used as a context manager: it ends FINISHED when the block ends, FAILED
    (with the error as a tag and ``error.txt``) on an exception, KILLED on Ctrl-C."""

    def __init__(
        self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
        parent_run_id: Optional[str] = None, run_id: Optional[str] = None,
    ):
        import mlflow

        self.uri = uri
        ensure_store(uri)
        self.client = mlflow.MlflowClient(uri)
        experiment_id = None if run_id else get_or_create_experiment(self.client, uri, experiment)
        # set_tracking_uri also exports MLFLOW_TRACKING_URI; put the user's value back, so a
        # later run in this process (a sweep's next job) still resolves its own store.
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        if parent_run_id:
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        if run_id:  # reopen an existing run (resume): it is RUNNING again until it ends
            self._run = mlflow.start_run(run_id=run_id)
        else:
            self._run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        self.run_id = self._run.info.run_id

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, error, tb) -> bool:
        import mlflow

        if error is None:
            status = "FINISHED"
        else:
            from .errors import Interrupted

            interrupted = isinstance(error, (KeyboardInterrupt, Interrupted))
            status = "KILLED" if interrupted else "FAILED"
            reason = f"{type(error).__name__}: {error}"
            try:
                self.client.set_tag(self.run_id, "error", reason[:5000])
                self.client.log_text(
                    self.run_id, "".join(traceback.format_exception(kind, error, tb)), "error.txt"
                )
            except Exception:  # the store itself may be what failed; still end the run
                pass
        mlflow.end_run(status)
        return False

    def abandon(self, reason: str) -> None:
        """End the run FAILED with ``reason`` now, from any thread (a DDP rank failed while
        this process is blocked and about to be ended)."""
        self.client.set_tag(self.run_id, "error", reason[:5000])
        self.client.log_text(self.run_id, reason + "\n", "error.txt")
        self.client.set_terminated(self.run_id, "FAILED")

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def resumed(self) -> int:
        """Count one more resumption of this run (tag ``orchestrator.resumed``), drop the error
        the interruption left, and return the count."""
        tags = self.client.get_run(self.run_id).data.tags
        count = int(tags.get("orchestrator.resumed", "0")) + 1
        self.client.set_tag(self.run_id, "orchestrator.resumed", str(count))
        if "error" in tags:
            self.client.delete_tag(self.run_id, "error")
        return count

    def log_artifact(self, path: str, folder: Optional[str] = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.log_metrics_to(self.client, self.run_id, metrics, step)

    @staticmethod
    def log_metrics_to(client, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import time

        now = int(time.time() * 1000)
        write_points(client, run_id, [(k, float(v), now, step) for k, v in metrics.items()])

    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]

    def log_model(self, module, example, serialization_format: str = "pickle") -> str:
        """Log ``module`` in MLflow's PyTorch format with a signature and an input example, so
        ``mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(x)`` reproduces it."""
        import mlflow
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        if serialization_format == "pickle":  # chosen on purpose (pt2 export takes seconds)
            logging.getLogger("mlflow.pytorch").addFilter(
                lambda record: "Pickle or CloudPickle" not in str(record.msg)
            )
        with torch.no_grad():
            output = module(torch.from_numpy(example)).numpy()
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            serialization_format=serialization_format,
            # Explicit requirements: inferring them imports and inspects for seconds.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
        )
        return info.model_uri


# --------------------------------------------------------------------------------------------
# Sweeps: one parent run per multirun, a child run per job.
# --------------------------------------------------------------------------------------------


def open_parent_run(uri: str, experiment: str, name: str, params: dict[str, str], tags: dict[str, str]) -> str:
    """Create a sweep's parent run (RUNNING) before any job starts, creating the store and the
    experiment on the way, so that parallel jobs race on neither."""
    import mlflow
    from mlflow.entities import Param

    ensure_store(uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = get_or_create_experiment(client, uri, experiment)
    run = client.create_run(experiment_id, run_name=name, tags={"orchestrator.sweep": "parent", **tags})
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def child_runs(uri: str, parent_run_id: str) -> list:
    """The runs nested under ``parent_run_id``, oldest first."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )


def close_parent_run(
    uri: str,
    parent_run_id: str,
    status: str,
    *,
    tags: dict[str, str],
    params: dict[str, str],
    metrics: dict[str, float],
    texts: dict[str, str],
    figures: dict[str, Any],
) -> None:
    """Record a sweep's summary on its parent run and end it with ``status``."""
    import mlflow
    from mlflow.entities import Param, RunTag

    client = mlflow.MlflowClient(uri)
    client.log_batch(
        parent_run_id,
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()],
    )
    Run.log_metrics_to(client, parent_run_id, metrics)
    for name, text in texts.items():
        client.log_text(parent_run_id, text, name)
    for name, figure in figures.items():
        client.log_figure(parent_run_id, figure, name)
    client.set_terminated(parent_run_id, status)


def end_run_if_running(uri: str, run_id: str, status: str, reason: str = "") -> None:
    """Mark ``run_id`` ``status`` unless it already ended (used when a sweep is cut short)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_run(run_id).info.status == "RUNNING":
        if reason:
            client.set_tag(run_id, "error", reason[:5000])
        client.set_terminated(run_id, status)


def resume_material(uri: str, run_id: str, into: str):
    """The config and the last checkpoint of run ``run_id``, or a clear error."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    from .errors import OrchestratorError

    client = mlflow.MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise OrchestratorError(f"resume={run_id}: no such run in {uri}.") from None
    if run.info.status == "FINISHED":
        raise OrchestratorError(
            f"resume={run_id}: that run is FINISHED; there is nothing to resume. Start a new run, "
            "or resume one that was interrupted (KILLED) or FAILED."
        )
    try:
        checkpoint = client.download_artifacts(run_id, "checkpoints/last.ckpt", into)
        config = client.download_artifacts(run_id, "config.yaml", into)
    except (MlflowException, OSError):
        raise OrchestratorError(
            f"resume={run_id}: the run has no checkpoint (checkpoints/last.ckpt) to resume from; "
            "checkpoints are written when a run is interrupted with Ctrl-C or SIGTERM."
        ) from None
    return OmegaConf.load(config), checkpoint
