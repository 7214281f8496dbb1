"""MLflow: the one built-in :class:`~orchestrator.tracking_api.Tracker`, and the only module of
orchestrator that imports MLflow.

:class:`MLflowTracker` is one store (SQLite under ``./mlruns`` unless told otherwise) and
:class:`MLflowRun` one run in it. The built-in plugin ``builtin.tracking``
(``plugins/tracking.py``) returns an :class:`MLflowTracker` from the ``tracker`` hook; the
framework knows it only through :mod:`orchestrator.tracking_api`. MLflow is imported when a
tracker is made, never when this module is.

A model of a table is logged as an MLflow pyfunc model, :class:`TableModel` (made when it is first
asked for, so that this module imports no MLflow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

MLRUNS = "mlruns"

# MLflow's limits (mlflow.utils.validation), named once: what one log_batch call may carry, and
# the longest param value and tag value a store accepts.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000


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
    it: every ``MlflowClient`` (Lightning's logger's too) opens the store when it is made.

    A new SQLite store starts as a copy of a template (:func:`store_template`): MLflow's own
    migrations, run once per machine and MLflow version instead of once per store (about 2 s).
    MLflow then opens the copy as any store it made: it checks the schema is at its head, and adds
    the Default experiment with this store's artifact location."""
    if uri in _ready or not uri.startswith("sqlite:///"):
        return
    import mlflow

    with store_lock(uri):
        path = Path(uri[len("sqlite:///") :])
        if not path.exists() or path.stat().st_size == 0:
            template = store_template()
            if template is not None:
                part = path.with_name(f".{path.name}.{os.getpid()}.part")
                shutil.copyfile(template, part)
                os.replace(part, path)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    _ready.add(uri)


def cache_dir() -> Path:
    """Where orchestrator keeps what it can rebuild: ``$ORCHESTRATOR_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/orchestrator``, else ``~/.cache/orchestrator``."""
    if os.environ.get("ORCHESTRATOR_CACHE_DIR"):
        return Path(os.environ["ORCHESTRATOR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orchestrator"


def store_template() -> Optional[Path]:
    """An empty SQLite store with every table of this MLflow version, made by MLflow's own
    ``_initialize_tables`` (the migrations a new store runs) the first time it is needed, and no
    experiment: the copy's Default experiment is created where the copy lives. None where the
    cache cannot be written or MLflow's function is gone: the store is then migrated in place."""
    import mlflow

    try:
        from mlflow.store.db.utils import _initialize_tables
        from sqlalchemy import create_engine
        from filelock import FileLock

        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        template = folder / f"mlflow-{mlflow.__version__}-store.db"
        if template.exists():
            return template
        with FileLock(str(template) + ".lock"):
            if not template.exists():
                part = template.with_name(f".{template.name}.{os.getpid()}.part")
                part.unlink(missing_ok=True)
                engine = create_engine(f"sqlite:///{part}")
                try:
                    _initialize_tables(engine)
                finally:
                    engine.dispose()
                os.replace(part, template)
        return template
    except Exception as error:  # noqa: BLE001 - a cache is an optimisation, never a failure
        logging.getLogger(__name__).debug("No store template (%s): the new store is migrated in place", error)
        return None


#: Experiment ids this process found or created, by (store, name): a sweep's jobs share one.
_experiments: dict[tuple[str, str], str] = {}


def get_or_create_experiment(client, uri: str, name: str) -> str:
    if (uri, name) not in _experiments:
        with store_lock(uri):
            _experiments[uri, name] = _get_or_create_experiment(client, uri, name)
    return _experiments[uri, name]


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


def write_points(client, run_id: str, points: Sequence[tuple[str, float, int, int]]) -> None:
    """Write metric points ``(key, value, timestamp_ms, step)`` with one ``log_batch`` call per
    1000 (MLflow's limit): a point costs a SQLite store about 0.1 ms, a call far more."""
    from mlflow.entities import Metric

    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        chunk = points[start : start + MAX_METRICS_PER_BATCH]
        client.log_batch(run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in chunk])


def _use_uri(uri: str) -> None:
    """Point MLflow's process-wide (fluent) API at ``uri``, which logging a model goes through.
    ``set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``; the user's value is put back, so a
    later run in this process (a sweep's next job) still resolves its own store."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def __getattr__(name: str):
    # TableModel subclasses MLflow's PythonModel: it is made on first use (logging a model, or
    # unpickling a logged one), not when this module is imported.
    if name == "TableModel":
        return _table_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _table_model_class() -> type:
    made = globals().get("TableModel")
    if made is not None:
        return made
    import mlflow
    import pandas as pd

    class TableModel(mlflow.pyfunc.PythonModel):
        """The pyfunc model of a table: ``predict(context, model_input)`` takes a pandas
        DataFrame with the table's columns (the signature names them and their types) and
        returns what :meth:`orchestrator.serving.TablePredictor.predict` does."""

        def __init__(self, predictor):
            self.predictor = predictor  # an orchestrator.serving.TablePredictor

        def predict(self, context, model_input, params=None):
            return self.predictor.predict(model_input)

        # A real type (this module's annotations are strings): MLflow reads it when the class is made.
        predict.__annotations__["model_input"] = pd.DataFrame

    # Pickled by reference (orchestrator.tracking.TableModel), as orchestrator.serving.Predictor is.
    TableModel.__module__, TableModel.__qualname__ = __name__, "TableModel"
    globals()["TableModel"] = TableModel
    return TableModel


def _quiet(logger: str, words: str) -> None:
    """Drop ``logger``'s records that contain ``words`` (once per process)."""
    found = logging.getLogger(logger)
    if not any(getattr(f, "orchestrator_words", None) == words for f in found.filters):
        drop = logging.Filter()
        drop.filter = lambda record: words not in str(record.msg)  # type: ignore[method-assign]
        drop.orchestrator_words = words  # type: ignore[attr-defined]
        found.addFilter(drop)


class MLflowTracker:
    """An MLflow store as a :class:`~orchestrator.tracking_api.Tracker`.

    ``uri``: ``tracking.uri``; None means ``MLFLOW_TRACKING_URI``, else SQLite at
    ``./mlruns/mlflow.db`` (:func:`resolve_uri`). A new SQLite store is created (migrated) here,
    under a file lock, before anything else opens it.
    """

    def __init__(self, uri: Optional[str] = None):
        import mlflow

        self.uri = resolve_uri(uri)
        ensure_store(self.uri)
        self.client = mlflow.MlflowClient(self.uri)

    def start_run(self, experiment: str, name: str, tags: Mapping[str, str],
                  parent_run_id: Optional[str] = None) -> "MLflowRun":
        """A run with the tags MLflow's fluent ``start_run`` adds (user, source), created with
        the client: it is no process's "active run", so another process may end it (a sweep's
        recorder, :mod:`orchestrator.recorder`), and MLflow's exit handler never ends it
        FINISHED behind the framework's back. Ended by :meth:`MLflowRun.end`."""
        from mlflow.tracking.context import registry

        experiment_id = get_or_create_experiment(self.client, self.uri, experiment)
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        tags["mlflow.runName"] = name
        run = self.client.create_run(experiment_id, tags=registry.resolve_tags(tags), run_name=name)
        return MLflowRun(self, run.info.run_id)

    def reopen_run(self, run_id: str) -> "MLflowRun":
        self.client.update_run(run_id, status="RUNNING")  # RUNNING again until it ends
        if "error" in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, "error")
        return MLflowRun(self, run_id)

    def open_sweep(self, experiment: str, name: str, tags: Mapping[str, str]) -> "MLflowRun":
        """The parent run of a sweep (no user or source tags of its own)."""
        experiment_id = get_or_create_experiment(self.client, self.uri, experiment)
        run = self.client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
        return MLflowRun(self, run.info.run_id)

    def reopen_sweep(self, run_id: str) -> "MLflowRun":
        """A sweep's parent RUNNING again (``orchestrator sweep resume``); the ``error`` its end
        recorded is dropped."""
        self.client.update_run(run_id, status="RUNNING")
        if "error" in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, "error")
        return MLflowRun(self, run_id)

    def attach(self, run_id: str) -> "MLflowRun":
        return MLflowRun(self, run_id)

    def find_run(self, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            return _record(self.client.get_run(run_id))
        except MlflowException:
            return None

    def children(self, parent_run_id: str) -> list:
        parent = self.client.get_run(parent_run_id)
        found = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=50000,
            order_by=["attributes.start_time ASC"],
        )
        return [_record(run) for run in found]

    def download_artifact(self, run_id: str, name: str, into: str) -> Optional[str]:
        from mlflow.exceptions import MlflowException

        quiet = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
        if quiet:  # a config, a checkpoint: no progress bar on the terminal
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        try:
            return self.client.download_artifacts(run_id, name, into)
        except (MlflowException, OSError):
            return None
        finally:
            if quiet:
                os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)

    def runs_tagged(self, experiment: str, tags: Mapping[str, str], status: Optional[str] = None) -> list:
        """The runs of ``experiment`` carrying each of ``tags`` (values without quotes), and
        ``status`` if given, newest first; none if there is no such experiment (sweep.reuse)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        if any("'" in str(v) or "`" in str(k) for k, v in tags.items()):
            raise ValueError(f"runs_tagged: a tag with a quote cannot be searched for: {dict(tags)}")
        clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
        clauses += [f"attributes.status = '{status}'"] if status else []
        runs = self.client.search_runs([found.experiment_id], filter_string=" and ".join(clauses),
                                       max_results=1000, order_by=["attributes.start_time DESC"])
        return [_record(run) for run in runs]

    def running_runs(self, experiment: Optional[str] = None, limit: int = 1000) -> list:
        """The RUNNING runs of ``experiment`` (None: of every experiment), at most ``limit``,
        oldest first, in one search: what :mod:`orchestrator.orphans` judges dead or alive."""
        if experiment is None:
            ids = [e.experiment_id for e in self.client.search_experiments(max_results=50000)]
        else:
            found = self.client.get_experiment_by_name(experiment)
            ids = [found.experiment_id] if found is not None else []
        if not ids:
            return []
        runs = self.client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=limit,
                                       order_by=["attributes.start_time ASC"])
        return [_record(run) for run in runs]


def _record(run):
    from .tracking_api import RunRecord

    datasets = []
    for found in (run.inputs.dataset_inputs if run.inputs else []):
        context = next((t.value for t in found.tags if t.key == "mlflow.data.context"), "")
        datasets.append({"name": found.dataset.name, "digest": found.dataset.digest,
                         "source": found.dataset.source, "context": context})
    return RunRecord(run.info.run_id, run.info.status, dict(run.data.tags), dict(run.data.metrics), datasets)


def dataset_source(source: str) -> tuple[str, str]:
    """MLflow's ``(source_type, source JSON)`` of a data set's source: ``local`` for a file,
    what MLflow resolves a URI to (``http``, ``s3``, ...), else ``code`` with the description
    (``synthetic: two Gaussians``) as the source's ``description`` tag."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    resolved = None
    if "://" in source or Path(source).is_absolute() and Path(source).is_file():
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        try:
            resolved = resolve_dataset_source(source)
        except Exception:  # a scheme MLflow has no source for
            resolved = None
    resolved = resolved or CodeDatasetSource({"description": source})
    return resolved._get_source_type(), resolved.to_json()


def dataset_schema(schema: Mapping[str, tuple[str, tuple[int, ...]]]) -> tuple[Optional[str], str]:
    """The schema JSON MLflow writes for a numpy data set (``mlflow.data.from_numpy``: tensor
    specs of the features and targets, the first dimension -1) and its profile JSON (shapes,
    sizes, rows), from dtypes and shapes alone."""
    import json
    import math

    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    profile: dict = {}
    specs = {}
    for role, (dtype, shape) in schema.items():
        size = math.prod(shape)
        profile.update({f"{role}_shape": list(shape), f"{role}_size": size,
                        f"{role}_nbytes": size * np.dtype(dtype).itemsize})
        if shape:
            profile.setdefault("num_rows", shape[0])
        try:
            specs[role] = Schema([TensorSpec(np.dtype(dtype), (-1, *shape[1:]))])
        except Exception:  # a dtype MLflow has no tensor type for: the profile still says it
            specs[role] = None
    text = None
    if specs.get("features") is not None:
        text = json.dumps(TensorDatasetSchema(features=specs["features"], targets=specs.get("targets")).to_dict())
    return text, json.dumps(profile)


class MLflowRun:
    """One MLflow run as a :class:`~orchestrator.tracking_api.TrackedRun`."""

    def __init__(self, tracker: MLflowTracker, run_id: str):
        self.tracker = tracker
        self.client = tracker.client
        self.uri = tracker.uri
        self.run_id = run_id

    def _logged_model(self) -> str:
        """A new MLflow logged model of this run, in the run's own experiment (MLflow would put
        it in the process's active experiment, the Default one, for a run nobody made active),
        with the run's params as MLflow gives them; its id."""
        import mlflow

        run = self.client.get_run(self.run_id)
        _use_uri(self.uri)
        return mlflow.initialize_logged_model(name="model", source_run_id=self.run_id,
                                              experiment_id=run.info.experiment_id,
                                              params=dict(run.data.params)).model_id

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:MAX_TAG_LENGTH]) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        now = int(time.time() * 1000)
        write_points(self.client, self.run_id, [(k, float(v), now, step) for k, v in metrics.items()])

    def log_points(self, points: Sequence[tuple[str, float, int, int]]) -> None:
        write_points(self.client, self.run_id, points)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: str, folder: Optional[str] = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]

    def log_dataset(self, name: str, digest: str, source: str,
                    schema: Mapping[str, tuple[str, tuple[int, ...]]], context: str = "training") -> None:
        """One MLflow data set input (the UI's Datasets column), as ``mlflow.data.from_numpy``
        would describe the arrays, with orchestrator's digest (of all the data, where MLflow's
        own hashes the first 10,000 values); only the description is stored, never the data."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source_type, source_json = dataset_source(source)
        schema_json, profile_json = dataset_schema(schema)
        dataset = Dataset(name=name, digest=digest, source_type=source_type, source=source_json,
                          schema=schema_json, profile=profile_json)
        tag = InputTag("mlflow.data.context", context)
        # The store records a data set once per experiment, checking then inserting: jobs of a
        # parallel sweep logging the same data at once can collide on its unique key. The one
        # that loses finds the row on a second try; the record never fails the run.
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, [tag])])
                return
            except Exception as error:
                text = str(error)
                if attempt < 2 and any(m in text for m in ("UniqueViolation", "UNIQUE constraint", "duplicate key")):
                    time.sleep(0.2 * (attempt + 1))
                    continue
                logging.getLogger(__name__).warning(
                    "The data set %s (digest %s) was not recorded with run %s: %s",
                    name, digest, self.run_id, text.splitlines()[0] if text else type(error).__name__)
                return

    def log_model(self, module, example, serialization_format: str = "pickle") -> str:
        """Log ``module`` in MLflow's PyTorch format with a signature and an input example, so
        ``mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(x)`` reproduces it. With a
        table as ``example`` (a pandas DataFrame of raw rows), :meth:`log_table_model`."""
        if hasattr(example, "columns") and hasattr(example, "dtypes"):
            return self.log_table_model(module, example, serialization_format)
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
        _use_uri(self.uri)
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            serialization_format=serialization_format,
            # Explicit requirements: inferring them imports and inspects for seconds.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
            run_id=self.run_id,
            model_id=self._logged_model(),
        )
        return info.model_uri

    def log_table_model(self, module, example, serialization_format: str = "pickle") -> str:
        """Log ``module`` (an :class:`orchestrator.serving.TablePredictor`) as an MLflow pyfunc
        model (:class:`TableModel`, pickled with CloudPickle whatever ``serialization_format``
        says) whose signature names the table's columns and their types (``string`` for text,
        ``long``, ``double``, ``boolean``), each required, and its output; ``example`` (raw rows)
        is its input example. ``mlflow.pyfunc.load_model(uri).predict(frame)`` takes a DataFrame."""
        import mlflow
        import numpy as np
        import pandas as pd
        import torch
        from mlflow.models import Model, infer_signature
        from mlflow.models.signature import ModelSignature
        from mlflow.types import ColSpec, Schema

        if serialization_format != "pickle":
            logging.getLogger(__name__).info(
                "tracking.model_format=%s applies to models of arrays; a model of a table is an MLflow "
                "pyfunc model, pickled", serialization_format)
        _quiet("mlflow.pyfunc", "CloudPickle")  # chosen on purpose: the model's code is orchestrator's
        output = module.predict(example)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column")  # whole numbers: `long`, as trained
            warnings.filterwarnings("ignore", message=".*Operation with range")  # pandas 3, inside MLflow
            inferred = infer_signature(example, output)
            # Every column required, whether or not the example rows miss a value (a text column
            # takes None or NaN as a value: all zeros).
            inputs = Schema([ColSpec(spec.type, spec.name, required=True) for spec in inferred.inputs.inputs])
            _use_uri(self.uri)
            info = Model.log(
                artifact_path=None,
                name="model",
                flavor=mlflow.pyfunc,
                python_model=_table_model_class()(module),
                signature=ModelSignature(inputs=inputs, outputs=inferred.outputs),
                input_example=example,
                # Explicit requirements: inferring them imports and inspects for seconds.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                                  f"pandas=={pd.__version__}"],
                run_id=self.run_id,
                model_id=self._logged_model(),
            )
        return info.model_uri

    def end(self, status: str, error: Union[BaseException, str, None] = None) -> None:
        from .lifecycle import describe, report

        if error is not None:
            try:
                self.client.set_tag(self.run_id, "error", describe(error)[:MAX_TAG_LENGTH])
                self.client.log_text(self.run_id, report(error), "error.txt")
            except Exception:  # the store itself may be what failed; still end the run
                pass
        self.client.set_terminated(self.run_id, status)
