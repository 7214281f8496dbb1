"""The Task object: each kind's loss, prediction, link, metrics and output size agree with their
formulas, on whatever device the outputs lie; a run's logged test metrics are the Task's metrics
of the logged model's predictions."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from orchestrator.errors import OrchestratorError
from orchestrator.task import BinaryClassification, MulticlassClassification, Regression, Task

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def test_importing_it_imports_no_torch():
    code = "import sys, orchestrator.task; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("task,num_classes,expected", [
    ("regression", None, Regression()),
    ("classification", None, BinaryClassification()),
    ("classification", 1, BinaryClassification()),
    ("classification", 2, BinaryClassification()),
    ("classification", 3, MulticlassClassification(3)),
    ("classification", np.int64(10), MulticlassClassification(10)),
])
def test_of_picks_the_kind_from_the_name_and_the_number_of_classes(task, num_classes, expected):
    found = Task.of(task, num_classes)
    assert found == expected and type(found) is type(expected)
    assert Task.of(found) is found


def test_of_refuses_an_unknown_task_naming_it_and_the_known_ones():
    with pytest.raises(OrchestratorError, match="'ranking'.*regression, classification"):
        Task.of("ranking")


def test_names_sizes_dtypes_and_ranking():
    facts = [(t.name, t.output_dim, t.num_classes, t.target_dtype(), t.ranking_metric())
             for t in (Regression(), BinaryClassification(), MulticlassClassification(5))]
    assert facts == [
        ("regression", 1, None, torch.float32, ("val/loss", "min")),
        ("classification", 1, 2, torch.long, ("val/accuracy", "max")),
        ("classification", 5, 5, torch.long, ("val/accuracy", "max")),
    ]


def macro_f1(prediction, target, k):
    scores = []
    for c in range(k):
        tp = ((prediction == c) & (target == c)).sum().item()
        fp = ((prediction == c) & (target != c)).sum().item()
        fn = ((prediction != c) & (target == c)).sum().item()
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / k


@pytest.mark.parametrize("device", DEVICES)
def test_regression_follows_its_formulas(device):
    generator = torch.Generator().manual_seed(0)
    out = torch.randn(50, 1, generator=generator).to(device)
    y = torch.randn(50, generator=generator).to(device)
    task = Regression()
    value = out[:, 0]
    assert torch.allclose(task.loss(out, y), ((value - y) ** 2).mean())
    assert torch.equal(task.prediction(out), value) and torch.equal(task.link(out), value)
    metrics = task.metrics(task.prediction(out), y)
    assert set(metrics) == {"mse", "mae", "r2"}
    r2 = 1 - ((y - value) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert torch.allclose(metrics["mse"], ((value - y) ** 2).mean())
    assert torch.allclose(metrics["mae"], (value - y).abs().mean())
    assert torch.allclose(metrics["r2"], r2, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_binary_classification_follows_its_formulas(device):
    generator = torch.Generator().manual_seed(1)
    out = torch.randn(60, 1, generator=generator).to(device)
    y = torch.randint(0, 2, (60,), generator=generator).to(device)
    task = BinaryClassification()
    logit = out[:, 0]
    # -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))] = softplus(z) - y z
    assert torch.allclose(task.loss(out, y), (torch.nn.functional.softplus(logit) - y * logit).mean())
    assert torch.equal(task.prediction(out), (logit > 0).long())
    assert torch.allclose(task.link(out), 1 / (1 + torch.exp(-logit)))
    prediction = task.prediction(out)
    metrics = task.metrics(prediction, y)
    assert set(metrics) == {"accuracy", "f1"}
    assert metrics["accuracy"].item() == pytest.approx((prediction == y).float().mean().item())
    assert metrics["f1"].item() == pytest.approx(macro_f1(prediction, y, 2))


@pytest.mark.parametrize("device", DEVICES)
def test_multiclass_classification_follows_its_formulas(device):
    generator = torch.Generator().manual_seed(2)
    out = torch.randn(70, 4, generator=generator).to(device)
    y = torch.randint(0, 4, (70,), generator=generator).to(device)
    task = MulticlassClassification(4)
    log_p = out - out.exp().sum(-1, keepdim=True).log()
    assert torch.allclose(task.loss(out, y), -log_p[torch.arange(70, device=device), y].mean())
    assert torch.equal(task.prediction(out), out.argmax(-1))
    link = task.link(out)
    assert torch.allclose(link, log_p.exp()) and torch.allclose(link.sum(-1), torch.ones_like(link[:, 0]))
    prediction = task.prediction(out)
    metrics = task.metrics(prediction, y)
    assert set(metrics) == {"accuracy", "f1"}
    assert metrics["accuracy"].item() == pytest.approx((prediction == y).float().mean().item())
    assert metrics["f1"].item() == pytest.approx(macro_f1(prediction, y, 4))


@pytest.mark.parametrize("task,width", [(Regression(), 1), (BinaryClassification(), 1),
                                        (MulticlassClassification(3), 3)])
def test_no_method_makes_a_tensor_off_the_outputs_device(task, width):
    """With PyTorch's default device set to ``meta``, a tensor made without ``device=`` would
    land there and fail beside the CPU tensors given (as a CPU tensor fails beside CUDA ones)."""
    out = torch.randn(20, width)
    y = torch.arange(20) % 2 if task.name == "classification" else torch.randn(20)
    with torch.device("meta"):
        results = [task.loss(out, y), task.prediction(out), task.link(out),
                   *task.metrics(task.prediction(out), y).values()]
    assert {r.device.type for r in results} == {"cpu"}


@pytest.mark.parametrize("task,num_classes,width", [("regression", None, 1), ("classification", 2, 1),
                                                    ("classification", 3, 3)])
def test_a_model_logged_before_the_task_object_still_loads_and_predicts(task, num_classes, width):
    """Such a model held the task's name and a ``binary`` flag; its class is pickled by
    reference, so it runs today's ``forward``."""
    from orchestrator.serving import Predictor

    network = torch.nn.Linear(2, width)
    today = Predictor(network, [0.5, 1.0], [2.0, 3.0], task, num_classes).eval()
    old = Predictor(network, [0.5, 1.0], [2.0, 3.0], task, num_classes).eval()
    old.__dict__.update(task=task, binary=task == "classification" and num_classes == 2)
    buffer = io.BytesIO()
    torch.save(old, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(6, 2)
    assert type(loaded.task) is type(today.task)
    assert torch.equal(loaded(x), today(x))


@pytest.mark.parametrize("overrides,kind", [
    (("model=linear", "data=regression"), Regression),
    (("model=logistic", "data=classification"), BinaryClassification),
    (("model=logistic", "data=digits", "optimizer=adam", "trainer.max_epochs=2"), MulticlassClassification),
])
def test_logged_test_metrics_are_the_tasks_metrics_of_the_logged_models_predictions(compose, overrides, kind):
    import mlflow

    from orchestrator.runner import run

    result = run(compose("trainer.max_epochs=5", "tracking.plots=false", *overrides))
    splits, task = result.splits, result.splits.task_object
    assert type(task) is kind and result.predictor.task == task
    mlflow.set_tracking_uri(result.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    linked = torch.from_numpy(np.asarray(loaded.predict(splits.x_test * splits.std + splits.mean)))
    # from the link back to the prediction: the value; class 1 where its probability > 1/2;
    # the most probable class
    prediction = {Regression: linked, BinaryClassification: (linked > 0.5).long(),
                  MulticlassClassification: linked.argmax(-1)}[kind]
    expected = task.metrics(prediction, torch.from_numpy(splits.y_test))
    logged = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert {f"test/{k}" for k in expected} <= set(logged)
    for key, value in expected.items():
        assert logged[f"test/{key}"] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key
