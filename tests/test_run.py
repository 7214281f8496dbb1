"""``run(cfg)`` in process, on configs composed by Hydra exactly as the CLI composes them."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from orchestrator.runner import run


def test_model_picks_its_data_unless_the_user_names_one(compose):
    assert compose("model=cnn").data._name_ == "digits"
    assert compose("model=linear").data._name_ == "regression"
    assert compose("model=logistic").data._name_ == "classification"
    assert compose("model=logistic", "data=digits").data._name_ == "digits"


def test_trainer_keys_are_lightning_trainer_arguments(compose):
    import inspect

    import pytorch_lightning as pl

    cfg = compose("trainer=auto", "trainer.max_epochs=3")
    accepted = inspect.signature(pl.Trainer).parameters
    assert set(cfg.trainer) <= set(accepted)
    assert cfg.trainer.max_epochs == 3 and cfg.trainer.accelerator == "auto"


def test_same_seed_same_metrics_other_seed_other_metrics(compose):
    args = ("model=logistic", "optimizer=minibatch", "data.n_samples=200", "trainer.max_epochs=3")
    learned = lambda result: {k: v for k, v in result.metrics.items() if not k.startswith("time/")}
    first = learned(run(compose(*args, "seed=7")))
    second = learned(run(compose(*args, "seed=7")))
    third = learned(run(compose(*args, "seed=8")))
    assert {"train/loss", "val/loss", "val/accuracy", "test/accuracy", "test/f1"} <= set(first)
    assert first == second
    assert first != third


def test_logged_model_predicts_what_the_run_predicts(compose):
    result = run(compose("model=cnn", "optimizer=adam", "trainer.max_epochs=2"))
    splits = result.splits
    raw_test = splits.x_test * splits.std + splits.mean  # what a user holds: unscaled inputs
    with torch.no_grad():
        own = result.predictor(torch.from_numpy(raw_test)).numpy()
    mlflow.set_tracking_uri(result.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    predicted = loaded.predict(raw_test)
    np.testing.assert_allclose(predicted, own, rtol=1e-5, atol=1e-6)
    # and those predictions are the ones the logged test accuracy was computed from
    accuracy = (predicted.argmax(axis=1) == splits.y_test).mean()
    assert accuracy == pytest.approx(result.metrics["test/accuracy"], abs=1e-6)
    assert loaded.metadata.signature is not None


def test_regression_model_predicts_on_raw_features(compose):
    result = run(compose("model=linear", "data.standardize=true", "trainer.max_epochs=50"))
    mlflow.set_tracking_uri(result.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    x = np.array([[0.0], [1.0]], dtype=np.float32)
    prediction = loaded.predict(x)
    np.testing.assert_allclose(prediction, [2.0, 5.0], atol=0.15)  # y = 3x + 2


def test_linear_gd_reaches_the_least_squares_solution(compose):
    result = run(compose(
        "model=linear", "optimizer=gd", "data.n_samples=300", "data.n_features=3",
        "data.standardize=false", "trainer.max_epochs=400", "tracking.log_model=false",
    ))
    splits = result.splits
    design = np.c_[splits.x_train, np.ones(len(splits.x_train))]
    exact, *_ = np.linalg.lstsq(design.astype(np.float64), splits.y_train.astype(np.float64), rcond=None)
    layer = result.predictor.model.linear
    learned = np.r_[layer.weight.detach().numpy().ravel(), layer.bias.detach().numpy()]
    np.testing.assert_allclose(learned, exact, rtol=1e-3)


def test_gd_steps_once_per_epoch_and_minibatch_once_per_batch(compose, tmp_path):
    gd = run(compose("model=linear", "optimizer=gd", "data.n_samples=100", "trainer.max_epochs=3",
                     "tracking.log_model=false"))
    mini = run(compose("model=linear", "optimizer=minibatch", "optimizer.batch_size=16",
                       "data.n_samples=100", "trainer.max_epochs=3", "tracking.log_model=false"))
    client = mlflow.MlflowClient(gd.tracking_uri)
    gd_steps = [m.step for m in client.get_metric_history(gd.run_id, "train/loss")]
    assert np.diff(gd_steps).tolist() == [1, 1]  # one optimizer step per epoch
    n_train = len(mini.splits.y_train)  # 70 examples -> 5 batches of up to 16
    mini_steps = [m.step for m in client.get_metric_history(mini.run_id, "train/loss")]
    batches = -(-n_train // 16)
    assert np.diff(mini_steps).tolist() == [batches, batches]


def test_regularizer_penalty_is_logged_and_shrinks_weights(compose):
    common = ("model=linear", "optimizer=gd", "data.n_samples=200", "trainer.max_epochs=100",
              "tracking.log_model=false")
    plain = run(compose(*common))
    ridge = run(compose(*common, "regularizer=l2", "regularizer.strength=1.0"))
    weight = lambda r: r.predictor.model.linear.weight.abs().sum().item()
    assert weight(ridge) < 0.6 * weight(plain)
    w = ridge.predictor.model.linear.weight.detach()
    assert ridge.metrics["train/penalty"] == pytest.approx(1.0 * (w ** 2).sum().item(), rel=0.05)
    assert plain.metrics["train/penalty"] == 0


def test_csv_trains_a_classifier_with_text_labels(compose, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    path = tmp_path / "points.csv"
    path.write_text("a,b,label\n" + "".join(f"{p},{q},{l}\n" for (p, q), l in zip(x, labels)))
    result = run(compose("model=logistic", "data=csv", f"data.path={path}", "data.target=label",
                         "data.task=classification", "trainer.max_epochs=30"))
    assert result.metrics["test/accuracy"] >= 0.85
    tags = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.tags
    assert tags["orchestrator.data.source"] == str(path)


def test_mlflow_tracking_uri_from_the_environment_wins_over_the_default(compose, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    cfg = compose("model=linear", "trainer.max_epochs=1", "tracking.log_model=false")
    cfg.tracking.uri = None
    result = run(cfg)
    assert result.tracking_uri == f"sqlite:///{other}"
    assert mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).info.status == "FINISHED"


def test_a_run_does_not_leak_its_store_into_the_next_one(compose, workdir):
    import os

    first = run(compose("model=linear", "trainer.max_epochs=1", "tracking.log_model=false",
                        f"tracking.uri=sqlite:///{workdir / 'other' / 'store.db'}"))
    assert "MLFLOW_TRACKING_URI" not in os.environ
    cfg = compose("model=linear", "trainer.max_epochs=1", "tracking.log_model=false")
    cfg.tracking.uri = None
    second = run(cfg)
    assert second.tracking_uri == f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    assert first.tracking_uri != second.tracking_uri
