"""The reproducibility record of a run, and ``orchestrator rerun <run id>``.

Each run records its data set as an MLflow data set input (name, digest, source, schema: the
UI's Datasets column), the git commit and dirty flag of the work tree it was launched from, and
the versions it ran with (``environment.json``). ``orchestrator rerun`` starts a new run from a
recorded run's config: on the CPU it reaches the same metrics, and it is tagged with the run it
recreates. Real ``python -m orchestrator`` processes, real SQLite stores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import mlflow
import numpy as np
import pytest

from conftest import CHROMIUM, all_runs, cli, launch_chromium, store_uri
from orchestrator.provenance import describe_data, differences, git_tags, record

QUICK = ["model=linear", "trainer.max_epochs=3", "data.n_samples=100", "tracking.plots=false",
         "tracking.log_model=false"]
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def only_run(uri, **where):
    runs = [r for r in all_runs(uri) if all(r.data.tags.get(k) == v for k, v in where.items())]
    assert len(runs) == 1, [r.data.tags for r in runs]
    return runs[0]


def test_a_run_records_its_data_set_environment_and_a_rerun_reaches_the_same_metrics(tmp_path):
    done = cli(*QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = store_uri(tmp_path)
    (original,) = all_runs(uri)
    client = mlflow.MlflowClient(uri)

    # The data set, as an input of the run in the "training" context.
    (found,) = original.inputs.dataset_inputs
    assert {(t.key, t.value) for t in found.tags} == {("mlflow.data.context", "training")}
    dataset = found.dataset
    from orchestrator_plugins.data import RegressionConfig, make_regression

    expected = describe_data(make_regression(RegressionConfig(n_samples=100), 0), "regression")
    assert dataset.name == "regression" and dataset.digest == expected.digest and len(dataset.digest) == 16
    assert dataset.source_type == "code"
    assert json.loads(dataset.source) == {"tags": {"description": "synthetic: y = 3x + 2 + noise"}}
    schema = json.loads(dataset.schema)["mlflow_tensorspec"]
    assert json.loads(schema["features"])[0]["tensor-spec"] == {"dtype": "float64", "shape": [-1, 1]}
    assert json.loads(schema["targets"])[0]["tensor-spec"] == {"dtype": "float64", "shape": [-1]}
    assert json.loads(dataset.profile)["num_rows"] == 100

    # The versions it ran with.
    env = json.load(open(client.download_artifacts(original.info.run_id, "environment.json", str(tmp_path))))
    for name in ("orchestrator", "torch", "pytorch-lightning", "mlflow", "hydra-core", "omegaconf", "pluggy", "numpy"):
        assert env["packages"][name], name
    assert env["packages"]["numpy"] == np.__version__
    assert env["plugins"]["model"] == original.data.tags["orchestrator.model.distribution"]
    assert env["python"] and env["platform"]
    # Outside a git work tree: no git tags (MLflow's own mlflow.source.git.* describe the entry
    # script's repository, orchestrator's checkout here, and are left as MLflow sets them).
    assert not [k for k in original.data.tags if k.startswith("orchestrator.git.")]

    rerun = cli("rerun", original.info.run_id, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"Same test metrics as run {original.info.run_id}" in rerun.stdout
    new = only_run(uri, **{"orchestrator.rerun_of": original.info.run_id})
    assert new.info.run_id != original.info.run_id and new.info.status == "FINISHED"
    assert new.data.params == original.data.params  # the same config, the seed included
    test = {k: v for k, v in original.data.metrics.items() if k.startswith("test/")}
    assert test and {k: new.data.metrics[k] for k in test} == test  # identical, not approximately
    assert [d.dataset.digest for d in new.inputs.dataset_inputs] == [dataset.digest]
    assert "Downloading artifacts" not in rerun.stderr

    # Settings given after the run id go on top of the recorded config.
    longer = cli("rerun", original.info.run_id, "trainer.max_epochs=4", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-3000:]
    (changed,) = [r for r in all_runs(uri) if r.data.params.get("trainer.max_epochs") == "4"]
    assert changed.data.tags["orchestrator.rerun_of"] == original.info.run_id
    assert {k: v for k, v in changed.data.params.items() if k != "trainer.max_epochs"} == \
        {k: v for k, v in original.data.params.items() if k != "trainer.max_epochs"}
    assert "against run" in longer.stdout


def test_a_csv_run_is_found_in_its_store_and_a_changed_file_is_noticed(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    lines = ["a,b,price"] + [f"{a:.6f},{b:.6f},{3 * a - b + 1:.6f}" for a, b in x]
    (tmp_path / "houses.csv").write_text("\n".join(lines) + "\n")
    store = "sqlite:///store/mlflow.db"  # relative: anchored to the directory the run starts in
    args = ["model=linear", "data=csv", "data.path=houses.csv", "data.target=price", "trainer.max_epochs=2",
            "tracking.plots=false", "tracking.log_model=false", f"tracking.uri={store}"]
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (original,) = all_runs(uri)
    (found,) = original.inputs.dataset_inputs
    assert found.dataset.name == "csv:houses.csv" and found.dataset.source_type == "local"
    assert json.loads(found.dataset.source)["uri"] == str(tmp_path / "houses.csv")
    schema = json.loads(json.loads(found.dataset.schema)["mlflow_tensorspec"]["features"])
    assert schema[0]["tensor-spec"]["shape"] == [-1, 2]

    # Not in the default store: refused, one paragraph naming where to look; nothing started.
    missing = cli("rerun", original.info.run_id, cwd=tmp_path)
    assert missing.returncode == 2 and "tracking.uri=" in missing.stderr and "Traceback" not in missing.stderr
    assert not all_runs(store_uri(tmp_path))

    (tmp_path / "houses.csv").write_text("\n".join(lines[:-1]) + "\n")  # one row fewer
    rerun = cli("rerun", original.info.run_id, f"tracking.uri={store}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "the data differ" in rerun.stderr
    new = only_run(uri, **{"orchestrator.rerun_of": original.info.run_id})
    assert new.inputs.dataset_inputs[0].dataset.digest != found.dataset.digest


def test_rerun_of_an_unknown_run_or_one_without_a_config_exits_2_and_starts_nothing(tmp_path):
    done = cli("rerun", "0123456789abcdef0123456789abcdef", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and lines[0].startswith("Error: rerun 0123456789abcdef0123456789abcdef: no run")
    assert not all_runs(store_uri(tmp_path))

    client = mlflow.MlflowClient(store_uri(tmp_path))
    bare = client.create_run(client.create_experiment("elsewhere")).info.run_id
    client.set_terminated(bare, "FINISHED")
    done = cli("rerun", bare, cwd=tmp_path)
    assert done.returncode == 2 and "no recorded config" in done.stderr and "Traceback" not in done.stderr
    assert [r.info.status for r in all_runs(store_uri(tmp_path))] == ["FINISHED"]

    for args, words in ((["rerun"], "needs the id"), (["rerun", bare, "-m"], "no sweep"),
                        (["rerun", bare, f"resume={bare}"], "resume=")):
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr[-2000:])
    helped = cli("rerun", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "orchestrator rerun <run id>" in helped.stdout


@needs_git
def test_git_commit_and_dirty_flag_of_the_launch_directory(tmp_path):
    assert git_tags(str(tmp_path)) == {}  # not a work tree
    git("init", "-q", "-b", "trunk", cwd=tmp_path)
    assert git_tags(str(tmp_path)) == {"orchestrator.git.branch": "trunk", "orchestrator.git.dirty": "false"}
    (tmp_path / "train.sh").write_text("python -m orchestrator\n")
    git("add", "train.sh", cwd=tmp_path)
    git("commit", "-q", "-m", "first", cwd=tmp_path)
    head = git("rev-parse", "HEAD", cwd=tmp_path)

    done = cli(*QUICK, cwd=tmp_path)  # mlruns/ and outputs/ appear untracked: still clean
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.data.tags["orchestrator.git.commit"] == head
    assert run.data.tags["orchestrator.git.dirty"] == "false"
    assert run.data.tags["orchestrator.git.branch"] == "trunk"

    (tmp_path / "train.sh").write_text("python -m orchestrator model=cnn\n")  # a tracked file changed
    assert git_tags(str(tmp_path)) == {"orchestrator.git.commit": head, "orchestrator.git.branch": "trunk",
                                       "orchestrator.git.dirty": "true"}
    git("checkout", "-q", "--detach", cwd=tmp_path)
    assert "orchestrator.git.branch" not in git_tags(str(tmp_path))
    # git missing from PATH: no tags, no error
    path = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(tmp_path / "nothing-here")
        assert git_tags(str(tmp_path)) == {}
    finally:
        os.environ["PATH"] = path


@needs_git
def test_a_dirty_work_tree_is_recorded_dirty(tmp_path):
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "notes.txt").write_text("v1\n")
    git("add", "notes.txt", cwd=tmp_path)
    git("commit", "-q", "-m", "first", cwd=tmp_path)
    (tmp_path / "notes.txt").write_text("v2\n")
    done = cli(*QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    assert run.data.tags["orchestrator.git.dirty"] == "true"
    assert run.data.tags["orchestrator.git.commit"] == git("rev-parse", "HEAD", cwd=tmp_path)


def test_the_digest_covers_every_value_and_object_labels_hash_by_text():
    from orchestrator import Dataset

    x = np.arange(40000, dtype=np.float64).reshape(20000, 2)
    y = np.zeros(20000)
    base = describe_data(Dataset(x, y, "regression"), "mine").digest
    changed = x.copy()
    changed[-1, -1] += 1  # past the first 10,000 values, which MLflow's own digest reads
    assert describe_data(Dataset(changed, y, "regression"), "mine").digest != base
    assert describe_data(Dataset(x.astype(np.float32), y, "regression"), "mine").digest != base
    labels = np.array(["a", "b"] * 10000, dtype=object)
    assert describe_data(Dataset(x, labels, "classification", 2), "m").digest == \
        describe_data(Dataset(x, np.array(list(labels), dtype=object), "classification", 2), "m").digest
    record = describe_data(Dataset(x, y, "regression", source="made here"), "mine")
    assert record.source == "made here" and record.schema == {"features": ("float64", (20000, 2)),
                                                             "targets": ("float64", (20000,))}


def test_a_tracker_without_log_dataset_still_records_the_rest():
    class OldRun:
        run_id = "old"

        def __init__(self):
            self.texts = {}

        def log_text(self, text, name):
            self.texts[name] = text

    class Provided:
        provenance = "someone==1.0"

    class Prepared:
        dataset = describe_data(type("D", (), {"x": np.ones((3, 2)), "y": np.ones(3)})(), "d")
        chosen = {"model": Provided()}

    run = OldRun()
    record(run, Prepared(), resumed=False)
    assert json.loads(run.texts["environment.json"])["plugins"] == {"model": "someone==1.0"}


def test_differences_name_each_changed_version():
    before = {"python": "3.11.7", "packages": {"torch": "2.1", "numpy": "2.0"}, "plugins": {"model": "a==1"}}
    after = {"python": "3.11.7", "packages": {"torch": "2.2", "numpy": "2.0"}, "plugins": {"model": "a==2"}}
    assert differences(before, after) == ["torch 2.1 -> 2.2", "model a==1 -> a==2"]
    assert differences(before, before) == []




@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_ui_shows_the_data_set_in_its_datasets_column(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from servers import mlflow_server

    done = cli(*QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(store_uri(tmp_path))
    digest = run.inputs.dataset_inputs[0].dataset.digest
    with mlflow_server("ui", ["--backend-store-uri", store_uri(tmp_path)], cwd=tmp_path,
                       log=tmp_path / "ui.log", wait=60) as (url, _):
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 2000, "height": 700})
                page.goto(f"{url}/#/experiments/{run.info.experiment_id}/runs")
                page.get_by_text(f"regression ({digest})", exact=False).first.wait_for(timeout=60_000)
                headers = page.locator("[role=columnheader]").all_inner_texts()
                cells = page.locator("[role=gridcell]").all_inner_texts()
            finally:
                browser.close()
    assert any(h.startswith("Dataset") for h in headers), headers
    assert any(cell.startswith(f"regression ({digest})") and "Training" in cell for cell in cells), cells
