"""One run lifecycle, one owner of the final status, and record keeping behind a narrow interface.

- ``final_status`` maps the exception that ended a run to its status, by type.
- An in-memory tracker, registered through the ``tracker`` hook like any plugin, records every
  tag, param, metric point and artifact of a run, a failed run, an interrupted and resumed run,
  a sweep's refused job and a whole sweep: the interface is sufficient, and no MLflow is
  involved. Hooks receive the interface's run object.
- MLflow is the one built-in tracker, provided by the built-in plugin ``builtin.tracking``.
"""

from __future__ import annotations

import importlib.util
import json
import signal

import pytest

from conftest import cli
from orchestrator import OrchestratorError, RunRecord, TrackedRun, Tracker, hookimpl
from orchestrator.errors import Interrupted
from orchestrator.lifecycle import FAILED, FINISHED, KILLED, final_status, flatten
from test_third_party import make_distribution, with_site

# --------------------------------------------------------------------------------------------
# The final status, decided once, from the exception's type.
# --------------------------------------------------------------------------------------------


class CtrlC(KeyboardInterrupt):
    """A subclass of the real KeyboardInterrupt: matched, by type."""


#: An exception merely named like KeyboardInterrupt: not matched, since names are never compared.
LookAlike = type("KeyboardInterrupt", (Exception,), {})


@pytest.mark.parametrize("error,status", [
    (None, FINISHED),
    (KeyboardInterrupt(), KILLED),
    (CtrlC(), KILLED),
    (Interrupted(signal.SIGINT), KILLED),
    (Interrupted(signal.SIGTERM), KILLED),
    (ValueError("a bug"), FAILED),
    (OrchestratorError("bad input found late"), FAILED),
    (SystemExit(1), FAILED),
    (RuntimeError("DDP rank 1 failed"), FAILED),
    (LookAlike("only named like it"), FAILED),
])
def test_final_status_is_decided_from_the_exception_type(error, status):
    assert final_status(error) == status


# --------------------------------------------------------------------------------------------
# An in-memory tracker, as a third-party plugin would write it.
# --------------------------------------------------------------------------------------------

FAKE_TRACKER = '''
"""A tracker that keeps every record in memory (and in FAKE_TRACKER_FILE, as JSON, when set)."""
import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

from orchestrator import RunRecord, hookimpl
from orchestrator.lifecycle import describe, report

STORE = {"runs": {}, "mlflow_imported": False}
FILES = tempfile.mkdtemp(prefix="fake-tracker-")


def save():
    STORE["mlflow_imported"] = STORE["mlflow_imported"] or "mlflow" in sys.modules
    path = os.environ.get("FAKE_TRACKER_FILE")
    if path:
        with open(path, "w") as handle:
            json.dump(STORE, handle)


class FakeRun:
    def __init__(self, run_id):
        self.run_id = run_id

    @property
    def record(self):
        return STORE["runs"][self.run_id]

    def set_tags(self, tags):
        self.record["tags"].update({k: str(v) for k, v in tags.items()})
        save()

    def log_params(self, params):
        for key, value in params.items():
            assert key not in self.record["params"], f"param {key} logged twice"
            self.record["params"][key] = str(value)
        save()

    def log_metrics(self, metrics, step=0):
        now = int(time.time() * 1000)
        self.log_points([(k, float(v), now, step) for k, v in metrics.items()])

    def log_points(self, points):
        self.record["metrics"].extend([k, float(v), int(t), int(s)] for k, v, t, s in points)
        self.record["calls"] += 1
        save()

    def log_text(self, text, name):
        self.record["artifacts"][name] = text
        save()

    def log_artifact(self, path, folder=None):
        name = f"{folder}/{os.path.basename(path)}" if folder else os.path.basename(path)
        kept = os.path.join(FILES, self.run_id, name)
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        shutil.copyfile(path, kept)
        self.record["artifacts"][name] = {"file": kept}
        save()

    def log_figure(self, figure, name):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        self.record["artifacts"][name] = {"png_bytes": len(buffer.getvalue())}
        save()

    def log_dataset(self, name, digest, source, schema, context="training"):
        self.record.setdefault("datasets", []).append(
            {"name": name, "digest": digest, "source": source, "context": context,
             "schema": {role: [dtype, list(shape)] for role, (dtype, shape) in schema.items()}})
        save()

    def log_model(self, module, example, serialization_format="pickle"):
        import torch

        with torch.no_grad():
            predicted = module(torch.from_numpy(example))
        self.record["artifacts"]["model"] = {"class": type(module).__name__, "format": serialization_format,
                                             "predicts": list(predicted.shape)}
        save()
        return f"fake:/{self.run_id}/model"

    def metric_history(self, key):
        return [(s, v) for k, v, t, s in self.record["metrics"] if k == key]

    def end(self, status, error=None):
        if error is not None:
            self.record["tags"]["error"] = describe(error)
            self.record["artifacts"]["error.txt"] = report(error)
        self.record["status"] = status
        self.record["ends"] += 1
        save()


def as_record(run_id, run):
    latest = {}
    for key, value, _, _ in run["metrics"]:
        latest[key] = value
    return RunRecord(run_id, run["status"], dict(run["tags"]), latest)


class FakeTracker:
    def __init__(self, uri):
        self.uri = f"memory://{uri}"

    def _new(self, experiment, name, tags, parent):
        run_id = uuid.uuid4().hex
        STORE["runs"][run_id] = {"experiment": experiment, "name": name, "status": "RUNNING", "tags": dict(tags),
                                 "params": {}, "metrics": [], "artifacts": {}, "parent": parent, "calls": 0,
                                 "ends": 0, "order": len(STORE["runs"])}
        save()
        return FakeRun(run_id)

    def start_run(self, experiment, name, tags, parent_run_id=None):
        return self._new(experiment, name, tags, parent_run_id)

    def reopen_run(self, run_id):
        run = STORE["runs"][run_id]
        run["status"] = "RUNNING"
        run["tags"].pop("error", None)
        save()
        return FakeRun(run_id)

    def open_sweep(self, experiment, name, tags):
        return self._new(experiment, name, tags, None)

    def attach(self, run_id):
        return FakeRun(run_id)

    def find_run(self, run_id):
        run = STORE["runs"].get(run_id)
        return None if run is None else as_record(run_id, run)

    def children(self, parent_run_id):
        found = [(run["order"], run_id, run) for run_id, run in STORE["runs"].items() if run["parent"] == parent_run_id]
        return [as_record(run_id, run) for _, run_id, run in sorted(found)]

    def download_artifact(self, run_id, name, into):
        found = STORE["runs"].get(run_id, {}).get("artifacts", {}).get(name)
        if found is None:
            return None
        target = os.path.join(into, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(found, str):
            with open(target, "w") as handle:
                handle.write(found)
        else:
            shutil.copyfile(found["file"], target)
        return target


@hookimpl
def tracker(uri):
    return FakeTracker(uri)
'''


@pytest.fixture
def fake(tmp_path):
    """The fake tracker's module, freshly imported (an empty store), from a throwaway file."""
    path = tmp_path / "fake_tracker.py"
    path.write_text(FAKE_TRACKER)
    spec = importlib.util.spec_from_file_location(f"fake_tracker_{tmp_path.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Probe:
    """A plugin that records what the run hooks receive, and can stop or break training."""

    def __init__(self, stop_at_epoch=None, break_at_epoch=None):
        self.seen = []
        self.stop_at_epoch, self.break_at_epoch = stop_at_epoch, break_at_epoch

    @hookimpl
    def add_callbacks(self, cfg):
        import pytorch_lightning as pl

        probe = self

        class Stopper(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == probe.stop_at_epoch:
                    raise Interrupted(signal.SIGINT)  # what Ctrl-C raises at the next batch
                if trainer.current_epoch == probe.break_at_epoch:
                    raise ZeroDivisionError("a plugin's bug")

        return [Stopper()]

    @hookimpl
    def on_run_start(self, run, cfg):
        self.seen.append(("start", run, None))
        run.set_tags({"probe.started": "yes"})

    @hookimpl
    def on_run_end(self, run, cfg, status, metrics, error):
        self.seen.append(("end", run, status))
        run.set_tags({"probe.ended": status})


@pytest.fixture
def with_fake(fake):
    """A catalog of the installed plugins plus the fake tracker and a probe, registered after them
    (so the fake's answer to the firstresult hook wins), never seen by another test."""
    from orchestrator.plugins import Catalog, load_plugins

    def make(probe):
        pm, infos, failures = load_plugins()
        pm.register(fake, name="fake.tracking")
        pm.register(probe, name="probe")
        return Catalog(pm, infos, failures)

    return make


def test_a_run_records_everything_through_the_interface_and_hooks_get_the_interface(compose, fake, with_fake, tmp_path):
    from orchestrator.runner import run

    probe = Probe()
    cfg = compose("model=logistic", "optimizer=adam", "trainer.max_epochs=3")
    result = run(cfg, overrides=["model=logistic", "optimizer=adam"], catalog=with_fake(probe), output_dir=str(tmp_path))
    (run_id,) = fake.STORE["runs"]
    stored = fake.STORE["runs"][run_id]
    assert result.run_id == run_id and result.tracking_uri.startswith("memory://")
    assert stored["status"] == FINISHED and stored["ends"] == 1 and stored["parent"] is None
    assert stored["experiment"] == "orchestrator" and stored["name"] == "logistic-adam-none-classification"
    # tags: the choices and their providers, and the plugin's own tags set through the run object
    tags = stored["tags"]
    for group in ("model", "optimizer", "regularizer", "data"):
        assert tags[f"orchestrator.{group}.plugin"].startswith("builtin.")
        assert tags[f"orchestrator.{group}.distribution"].startswith("orchestrator==")
    assert tags["orchestrator.model"] == "logistic" and tags["orchestrator.task"] == "classification"
    assert tags["probe.started"] == "yes" and tags["probe.ended"] == FINISHED and "error" not in tags
    # params: the resolved config, flattened
    from omegaconf import OmegaConf

    assert stored["params"] == flatten(OmegaConf.to_container(cfg, resolve=True))
    # metrics: every epoch's points, the final ones, the timings, in batches (not a call per point)
    steps = {key: [s for k, _, _, s in stored["metrics"] if k == key] for key in ("train/loss", "val/loss", "epoch")}
    assert len(steps["train/loss"]) == 3 and len(steps["val/loss"]) == 3
    latest = {k: v for k, v, _, _ in stored["metrics"]}
    assert {"data.n_train", "test/accuracy", "test/f1", "time/fit_seconds", "time/logging_seconds"} <= set(latest)
    assert latest["test/accuracy"] == pytest.approx(result.metrics["test/accuracy"])
    assert stored["calls"] < len(stored["metrics"]) / 3
    # artifacts: the config, the overrides, the plots and the model
    artifacts = stored["artifacts"]
    assert set(artifacts) == {"config.yaml", "overrides.txt", "environment.json", "plots/learning_curves.png",
                              "plots/confusion_matrix.png", "model"}
    assert artifacts["overrides.txt"] == "model=logistic\noptimizer=adam\n"
    assert "_name_: logistic" in artifacts["config.yaml"]
    assert json.loads(artifacts["environment.json"])["plugins"]["model"].startswith("orchestrator==")
    # the data set, as an input of the run
    (dataset,) = stored["datasets"]
    assert dataset["name"] == "classification" and dataset["context"] == "training" and len(dataset["digest"]) == 16
    assert dataset["schema"]["features"][1][0] == dataset["schema"]["targets"][1][0] == 1000
    assert artifacts["model"]["class"] == "Predictor" and result.model_uri == f"fake:/{run_id}/model"
    # the hooks received the interface object: the tracker's own run, no MLflow class
    (start, end) = probe.seen
    assert start[0] == "start" and end == ("end", start[1], FINISHED)
    assert isinstance(start[1], TrackedRun) and isinstance(start[1], fake.FakeRun) and start[1].run_id == run_id
    assert not (tmp_path / "mlruns").exists()  # the configured MLflow store was never touched


def test_a_failing_run_ends_failed_once_with_its_error(compose, fake, with_fake):
    from orchestrator.runner import run

    probe = Probe(break_at_epoch=1)
    with pytest.raises(ZeroDivisionError) as raised:
        run(compose("model=linear", "trainer.max_epochs=3", "tracking.log_model=false"), catalog=with_fake(probe))
    (run_id,) = fake.STORE["runs"]
    stored = fake.STORE["runs"][run_id]
    assert stored["status"] == FAILED and stored["ends"] == 1
    assert stored["tags"]["error"] == "ZeroDivisionError: a plugin's bug"
    assert "Traceback" in stored["artifacts"]["error.txt"] and "a plugin's bug" in stored["artifacts"]["error.txt"]
    assert stored["tags"]["probe.ended"] == FAILED and [s for _, _, s in probe.seen] == [None, FAILED]
    uri, named = raised.value.orchestrator_run  # what the command line prints with the error
    assert named == run_id and uri.startswith("memory://")
    assert [s for k, _, _, s in stored["metrics"] if k == "train/loss"] == [1]  # epoch 0's points were kept


def test_an_interrupted_run_is_killed_with_a_checkpoint_and_resumes_into_the_same_run(compose, fake, with_fake, tmp_path):
    from orchestrator.runner import run

    catalog = with_fake(Probe(stop_at_epoch=2))
    with pytest.raises(Interrupted):
        run(compose("model=linear", "trainer.max_epochs=10", "tracking.log_model=false", "tracking.plots=false"),
            catalog=catalog, output_dir=str(tmp_path / "first"))
    (run_id,) = fake.STORE["runs"]
    stored = fake.STORE["runs"][run_id]
    assert stored["status"] == KILLED and stored["tags"]["probe.ended"] == KILLED
    assert "checkpoints/last.ckpt" in stored["artifacts"] and stored["tags"]["error"].startswith("Interrupted")
    before = [s for k, _, _, s in stored["metrics"] if k == "train/loss"]
    assert before == [1, 2]

    resumed = run(compose(f"resume={run_id}", "trainer.max_epochs=4"), overrides=[f"resume={run_id}", "trainer.max_epochs=4"],
                  catalog=with_fake(Probe()), output_dir=str(tmp_path / "second"))
    assert resumed.run_id == run_id and list(fake.STORE["runs"]) == [run_id]  # the same run, no other
    assert stored["status"] == FINISHED and stored["tags"]["orchestrator.resumed"] == "1"
    assert "error" not in stored["tags"]
    assert [s for k, _, _, s in stored["metrics"] if k == "train/loss"] == [1, 2, 3, 4]  # carried on
    assert stored["artifacts"]["resume-1-overrides.txt"] == f"resume={run_id}\ntrainer.max_epochs=4\n"
    assert "model" not in stored["artifacts"]  # the recorded config's tracking.log_model=false holds


def test_a_refused_sweep_job_is_recorded_failed_under_its_parent(compose, fake, with_fake):
    from orchestrator.runner import run

    catalog = with_fake(Probe())
    parent = fake.FakeTracker(None).open_sweep("orchestrator", "sweep", {"orchestrator.sweep": "parent"})
    with pytest.raises(OrchestratorError):
        run(compose("model=linear", "optimizer.lr=-1"), catalog=catalog, parent_run_id=parent.run_id,
            extra_tags={"orchestrator.sweep.job": "3"})
    (child,) = fake.FakeTracker(None).children(parent.run_id)
    assert isinstance(child, RunRecord) and child.status == FAILED
    assert child.tags["orchestrator.sweep.job"] == "3" and child.tags["error"].startswith("OrchestratorError: ")
    assert "optimizer.lr" in child.tags["error"]


def test_a_sweep_through_the_cli_is_recorded_by_an_installed_tracker_plugin_without_mlflow(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "fake-tracker", "1.0", {"fake_tracker": "fake_tracker"}, {"fake_tracker.py": FAKE_TRACKER})
    record = tmp_path / "store.json"
    result = cli("-m", "model=linear,logistic", "trainer.max_epochs=2", cwd=tmp_path,
                 env=with_site(site, FAKE_TRACKER_FILE=str(record)))
    assert result.returncode == 0, result.stderr[-3000:]
    store = json.loads(record.read_text())
    assert store["mlflow_imported"] is False, "MLflow was imported"
    assert not (tmp_path / "mlruns").exists()
    runs = store["runs"]
    (parent_id,) = [i for i, r in runs.items() if r["tags"].get("orchestrator.sweep") == "parent"]
    parent = runs[parent_id]
    children = [r for r in runs.values() if r["parent"] == parent_id]
    assert len(runs) == 3 and len(children) == 2
    assert parent["status"] == FINISHED and all(c["status"] == FINISHED for c in children)
    assert {c["tags"]["orchestrator.model"] for c in children} == {"linear", "logistic"}
    assert {"summary.txt", "summary.csv", "plots/sweep_regression.png", "plots/sweep_classification.png"} \
        <= set(parent["artifacts"])
    assert parent["params"]["sweep.model"] == "linear,logistic"
    assert parent["tags"]["orchestrator.sweep.children"] == "2" and parent["tags"]["orchestrator.sweep.failed"] == "0"
    assert parent["tags"]["best_run_id.regression"] in runs
    for child in children:
        assert {"config.yaml", "overrides.txt", "model", "plots/learning_curves.png"} <= set(child["artifacts"])
    assert "Sweep summary" in result.stdout


# --------------------------------------------------------------------------------------------
# MLflow: the one built-in tracker, a plugin like any other.
# --------------------------------------------------------------------------------------------


def test_mlflow_is_the_builtin_tracker_plugin(tmp_path):
    from orchestrator.plugins import load_plugins
    from orchestrator.tracking import MLflowRun, MLflowTracker

    pm, infos, _ = load_plugins()
    assert infos["builtin.tracking"].distribution == "orchestrator"
    assert infos["builtin.tracking"].hooks == ["tracker"]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    tracker = pm.hook.tracker(uri=uri)
    assert isinstance(tracker, MLflowTracker) and isinstance(tracker, Tracker) and tracker.uri == uri
    run = tracker.start_run("lifecycle", "probe", {"a": "1"})
    try:
        assert isinstance(run, MLflowRun) and isinstance(run, TrackedRun)
        run.log_points([("m", float(i), 0, i) for i in range(2500)])  # three log_batch calls
        assert run.metric_history("m")[-1] == (2499, 2499.0)
    finally:
        run.end(FAILED, "stopped on purpose")
    found = tracker.find_run(run.run_id)
    assert found.status == FAILED and found.tags["error"] == "stopped on purpose" and found.tags["a"] == "1"
    assert tracker.find_run("0" * 32) is None
