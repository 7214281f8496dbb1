"""The task of ``data=csv`` is inferred from the target column and the chosen model unless
``data.task`` forces it; the rule that decided is logged and tagged (``orchestrator.task.rule``);
what cannot be decided, or contradicts the model, is refused with one paragraph naming the fix and
leaves no run RUNNING. Real ``python -m orchestrator`` processes where it matters; the rules
themselves (:func:`orchestrator.task.infer_task`) in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import all_runs, cli, make_distribution, store_uri, with_site

ROOT = Path(__file__).resolve().parent.parent
FAST = ["trainer.max_epochs=2", "tracking.plots=false", "tracking.log_model=false"]


def write_tables(folder: Path) -> None:
    """Four CSVs of 60 rows, each with features a, b and a target column ``label``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    targets = {
        "ints.csv": [str(int(p + q > 0)) for p, q in x],                          # 0/1 labels
        "text.csv": ["yes" if p + q > 0 else "no" for p, q in x],                 # text labels
        "floats.csv": [f"{3 * p + q + 0.1 * r:.6f}" for (p, q), r in zip(x, rng.normal(size=60))],
        "halves.csv": [f"{(i % 4) / 2 + 0.5}" for i in range(60)],                # 0.5, 1.0, 1.5, 2.0
    }
    for name, labels in targets.items():
        rows = "".join(f"{p:.6f},{q:.6f},{label}\n" for (p, q), label in zip(x, labels))
        (folder / name).write_text("a,b,label\n" + rows)


@pytest.fixture
def tables(tmp_path):
    write_tables(tmp_path)
    return tmp_path


@pytest.fixture
def mlp_site(tmp_path):
    """The reference plugin installed: model=mlp takes tabular inputs and learns both tasks,
    so the rules that read the target alone decide."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "examples" / "orchestrator-mlp" / "orchestrator_mlp", site / "orchestrator_mlp")
    make_distribution(site, "orchestrator-mlp", "0.1.0", {"mlp": "orchestrator_mlp.plugin"})
    return with_site(site)


def one_paragraph(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.stderr[-2000:]
    return last


def nothing_running(folder: Path) -> list:
    if not (folder / "mlruns" / "mlflow.db").exists():
        return []
    runs = all_runs(store_uri(folder))
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return runs


def jobs_by_choice(folder: Path) -> dict:
    """Each child run of a sweep, by its job's (model, CSV file without .csv)."""
    jobs = {}
    for run in nothing_running(folder):
        if "mlflow.parentRunId" in run.data.tags:
            overrides = dict(o.split("=", 1) for o in run.data.tags["orchestrator.overrides"].split())
            jobs[overrides["model"], overrides["data.path"].removesuffix(".csv")] = run
    return jobs


# ---------------------------------------------------------------------------------------------
# The command, and the built-in models


def test_integer_labels_train_a_logistic_model_as_classification(tables):
    result = cli("model=logistic", "data=csv", "data.path=ints.csv", "data.target=label", *FAST, cwd=tables)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "target column 'label' is learned as classification (model learns one task: model=logistic " \
           "learns only classification)" in result.stdout + result.stderr
    (run,) = nothing_running(tables)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert (tags["orchestrator.task"], tags["orchestrator.task.rule"]) == ("classification", "model learns one task")
    assert "test/accuracy" in run.data.metrics and run.data.params["data.task"] == "None"


def test_each_built_in_model_and_target_learns_the_task_they_agree_on(tables):
    """model=logistic learns classification only, model=linear regression only: the model
    decides numbers; text is labels whatever the model; a contradiction is a FAILED job naming
    the fix."""
    result = cli("-m", "model=logistic,linear", "data=csv", "data.path=ints.csv,text.csv,floats.csv",
                 "data.target=label", *FAST, cwd=tables)
    assert result.returncode == 1, result.stderr[-3000:]  # the two contradictions fail their jobs
    jobs = jobs_by_choice(tables)
    expected = {
        ("logistic", "ints"): ("classification", "model learns one task"),
        ("logistic", "text"): ("classification", "text target"),
        ("linear", "ints"): ("regression", "model learns one task"),
        ("linear", "floats"): ("regression", "model learns one task"),
    }
    for (model, table), (task, rule) in expected.items():
        run = jobs[model, table]
        assert run.info.status == "FINISHED", (model, table)
        assert (run.data.tags["orchestrator.task"], run.data.tags["orchestrator.task.rule"]) == (task, rule)
    refused = {
        ("logistic", "floats"): ["target column 'label' holds 60 distinct numbers", "float64",
                                 "learns only classification", "model=linear", "data.task=classification"],
        ("linear", "text"): ["target column 'label' holds text", "line 2 of the file",
                             "learns only regression", "model=logistic"],
    }
    for (model, table), words in refused.items():
        run = jobs[model, table]
        assert run.info.status == "FAILED", (model, table)
        for word in words:
            assert word in run.data.tags["error"], (word, run.data.tags["error"])


def test_data_task_forces_the_task(tables):
    result = cli("model=linear", "data=csv", "data.path=ints.csv", "data.target=label",
                 "data.task=regression", *FAST, cwd=tables)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = nothing_running(tables)
    assert run.data.tags["orchestrator.task"] == "regression"
    assert run.data.tags["orchestrator.task.rule"] == "forced by data.task"


def test_a_forced_task_the_model_cannot_learn_is_refused_before_the_file_is_read(tables):
    message = one_paragraph(cli("model=logistic", "data=csv", "data.path=ints.csv", "data.target=label",
                                "data.task=regression", cwd=tables))
    for word in ["model=logistic cannot train on data=csv with data.task=regression", "learns only classification",
                 "Set data.task=classification", "leave data.task out", "model=linear"]:
        assert word in message, (word, message)
    assert not (tables / "mlruns").exists()


def test_a_text_target_for_a_regression_model_is_refused_and_no_run_is_left_running(tables):
    message = one_paragraph(cli("model=linear", "data=csv", "data.path=text.csv", "data.target=label",
                                *FAST, cwd=tables))
    for word in ["data.path='text.csv': target column 'label' holds text ('no' at line 2 of the file)",
                 "classification", "model=linear learns only regression", "model=logistic"]:
        assert word in message, (word, message)
    assert nothing_running(tables) == []  # refused before a run is opened


# ---------------------------------------------------------------------------------------------
# A model that learns both tasks: the target alone decides


def test_a_model_of_both_tasks_reads_the_target(tables, mlp_site):
    result = cli("-m", "model=mlp", "data=csv", "data.path=ints.csv,floats.csv", "data.target=label",
                 *FAST, cwd=tables, env=mlp_site)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = jobs_by_choice(tables)
    for table, task, rule in [("ints", "classification", "integer labels"), ("floats", "regression", "numeric target")]:
        run = jobs["mlp", table]
        assert run.info.status == "FINISHED"
        assert (run.data.tags["orchestrator.task"], run.data.tags["orchestrator.task.rule"]) == (task, rule)


def test_an_ambiguous_target_is_refused_with_both_fixes(tables, mlp_site):
    message = one_paragraph(cli("model=mlp", "data=csv", "data.path=halves.csv", "data.target=label",
                                *FAST, cwd=tables, env=mlp_site))
    for word in ["target column 'label' may be class labels or a quantity",
                 "4 distinct numbers over 60 rows (float64, not all whole: 0.5, 1, 1.5, 2)",
                 "model=mlp learns both tasks", "data.task=classification", "data.task=regression"]:
        assert word in message, (word, message)
    assert nothing_running(tables) == []
    forced = cli("model=mlp", "data=csv", "data.path=halves.csv", "data.target=label",
                 "data.task=classification", *FAST, cwd=tables, env=mlp_site)
    assert forced.returncode == 0, forced.stderr[-3000:]
    (run,) = nothing_running(tables)
    assert run.data.tags["orchestrator.task.rule"] == "forced by data.task"
    assert run.data.params["data.task"] == "classification"


# ---------------------------------------------------------------------------------------------
# The rules, in-process


def learner(*tasks: str):
    from orchestrator.task import Learner

    return Learner("m", tasks, {"classification": ("logistic",), "regression": ("linear",)})


BOTH = ("regression", "classification")
RULES = [
    # (target values, tasks the model learns, task, rule)
    (["a", "b", "a", "b"], BOTH, "classification", "text target"),
    (["a", "b", "a", "b"], ("classification",), "classification", "text target"),
    ([True, False, True, False], BOTH, "classification", "text target"),
    ([0, 1, 0, 1], ("regression",), "regression", "model learns one task"),
    ([0.1, 2.5, 3.7, 9.9], ("regression",), "regression", "model learns one task"),
    ([1, 2, 3, 1, 2, 3], ("classification",), "classification", "model learns one task"),
    ([0.5, 1.5, 0.5, 1.5], ("classification",), "classification", "model learns one task"),
    ([0, 1, 0, 1], BOTH, "classification", "integer labels"),
    ([0, 1, 0, 1], None, "classification", "integer labels"),
    ([3.0, 7.0, 3.0, 7.0], BOTH, "classification", "integer labels"),
    (list(range(10)) * 2, BOTH, "classification", "integer labels"),  # 10 labels seen twice
    (list(range(21)) * 2, BOTH, "regression", "numeric target"),      # more than MAX_LABELS
    (list(range(10)), BOTH, "regression", "numeric target"),          # every value once: not labels
    (list(np.linspace(0, 1, 30)), BOTH, "regression", "numeric target"),
    (list(np.linspace(0, 1, 30)), None, "regression", "numeric target"),
]


@pytest.mark.parametrize("values,tasks,task,rule", RULES, ids=[f"{v[:3]}-{t}" for v, t, _, _ in RULES])
def test_the_rules_apply_in_order(values, tasks, task, rule):
    from orchestrator.task import infer_task

    assert infer_task(np.array(values), "column 'y'", learner(*tasks) if tasks else None) == (task, rule)


@pytest.mark.parametrize("values,tasks,words", [
    (["a", "b", "7"], ("regression",), ["column 'y' holds text ('a' at row 1)", "learns only regression",
                                        "(model=logistic)"]),
    ([1, 2, "x"], ("regression",), ["('x' at row 3)"]),
    (list(np.linspace(0, 1, 30)), ("classification",), ["30 distinct numbers over 30 rows", "not all whole",
                                                        "(model=linear)", "data.task=classification"]),
    ([0.5, 1.5, 0.5, 1.5], BOTH, ["may be class labels or a quantity", "2 distinct numbers over 4 rows",
                                  "model=m learns both tasks", "Say which: data.task=classification", "or data.task=regression"]),
    ([0.5, 1.5, 0.5, 1.5], None, ["no model was named to decide"]),
])
def test_what_cannot_be_decided_is_refused_naming_the_fix(values, tasks, words):
    from orchestrator import OrchestratorError
    from orchestrator.task import infer_task

    with pytest.raises(OrchestratorError) as error:
        infer_task(np.array(values, dtype=object if any(isinstance(v, str) for v in values) else None),
                   "column 'y'", learner(*tasks) if tasks else None)
    for word in words:
        assert word in str(error.value), (word, str(error.value))
    assert "\n" not in str(error.value)


def test_numeric_labels_are_classes_in_numeric_order(tmp_path):
    """Outside a run (no model chosen) the target alone decides; labels 2, 10 and 1 are classes
    1, 2 and 0, not ordered as text ("1", "10", "2")."""
    from orchestrator.task import Learner, learning
    from orchestrator_plugins.data import CSVConfig, load_csv

    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{[2, 10, 1][i % 3]}\n" for i in range(30)))
    data = load_csv(CSVConfig(path=str(path), target="y"), seed=0)
    assert (data.task, data.num_classes, data.task_rule) == ("classification", 3, "integer labels")
    assert list(data.y[:3]) == [1, 2, 0]
    with learning(Learner("linear", ("regression",))):
        data = load_csv(CSVConfig(path=str(path), target="y"), seed=0)
    assert (data.task, data.task_rule) == ("regression", "model learns one task")
    assert list(data.y[:3]) == [2.0, 10.0, 1.0]
