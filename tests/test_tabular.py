"""Real tabular data: a CSV with a text feature column. Text columns are one-hot encoded where the
data are split, with the categories of the training split only (a category seen only in the
validation or test rows, or new at prediction time, and a missing value are all zeros); the
logged model is an MLflow pyfunc model that takes the raw table (a DataFrame with the CSV's
columns and types) and predicts what the run's own network predicts. Real ``python -m
orchestrator`` processes for the runs; the encoding in-process."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import all_runs, cli, store_uri
from orchestrator.testing import DataContract

FAST = ["trainer.max_epochs=3", "tracking.plots=false"]
FEATURES = "data.features=[city,rooms,area]"
CITIES = ("lyon", "nice", "paris")


def write_houses(folder: Path, n: int = 90) -> Path:
    """City (text, 3 values, two cells empty), rooms (whole numbers), area (decimals); a numeric
    target ``price`` and a 3-class text target ``size``."""
    rng = np.random.default_rng(0)
    city = rng.choice(CITIES, size=n)
    rooms = rng.integers(1, 6, size=n)
    area = rng.normal(60, 15, size=n).round(2)
    price = 20 * rooms + area + np.select([city == "nice", city == "paris"], [30, 80], 0) + rng.normal(0, 5, n)
    size = np.where(area < 52, "small", np.where(area < 68, "medium", "large"))
    lines = ["city,rooms,area,price,size"]
    for i in range(n):
        lines.append(f"{'' if i in (3, 40) else city[i]},{rooms[i]},{area[i]},{price[i]:.3f},{size[i]}")
    path = folder / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def houses(tmp_path):
    write_houses(tmp_path)
    return tmp_path


def the_run(folder: Path):
    (run,) = all_runs(store_uri(folder))
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    return run


def splits_of(folder: Path, target: str, seed: int):
    """The run's splits, made again in-process: same file, settings and seed."""
    from orchestrator.datasets import split
    from orchestrator_plugins.data import CSVConfig, load_csv

    cfg = CSVConfig(path=str(folder / "houses.csv"), target=target, features=["city", "rooms", "area"])
    return split(load_csv(cfg, seed), cfg, seed, "csv")


def load(folder: Path, run):
    mlflow.set_tracking_uri(store_uri(folder))
    return mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")


def check_signature(model) -> None:
    inputs = model.metadata.signature.inputs
    assert [(c.name, c.type.name) for c in inputs.inputs] == [("city", "string"), ("rooms", "long"),
                                                             ("area", "double")]


NEW_ROWS = pd.DataFrame({"city": ["paris", "marseille", None], "rooms": [3, 3, 3], "area": [60.0, 60.0, 60.0]})


def test_a_linear_model_learns_a_table_with_a_text_column_and_takes_the_raw_table(houses):
    result = cli("model=linear", "data=csv", "data.path=houses.csv", "data.target=price", FEATURES, *FAST,
                 cwd=houses)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "text column 'city' one-hot encoded with the training split's categories" in result.stdout + result.stderr
    run = the_run(houses)
    model = load(houses, run)
    check_signature(model)
    assert list(model.input_example.columns) == ["city", "rooms", "area"]

    splits = splits_of(houses, "price", int(run.data.params["seed"]))
    assert len(splits.y_test) == run.data.metrics["data.n_test"]
    # the categories the logged model knows are the training split's, as made in-process
    assert model.unwrap_python_model().predictor.encoder == splits.encoder
    predicted = model.predict(splits.raw_test)  # the test rows, raw, as in the file
    assert predicted.shape == (len(splits.y_test),)
    for key, value in splits.task_object.metrics(torch.from_numpy(predicted), torch.from_numpy(splits.y_test)).items():
        assert run.data.metrics[f"test/{key}"] == pytest.approx(float(value), rel=1e-6, abs=1e-6), key

    # new rows: a known city, a city never seen, a missing one; columns in another order
    new = model.predict(NEW_ROWS[["area", "city", "rooms"]])
    assert new.shape == (3,) and np.isfinite(new).all()
    assert new[1] == pytest.approx(new[2], abs=1e-5)  # unseen and missing: both all zeros
    assert new[0] != pytest.approx(new[1], abs=1e-3)


def test_a_logistic_model_learns_text_labels_from_a_table_with_a_text_column(houses):
    result = cli("model=logistic", "data=csv", "data.path=houses.csv", "data.target=size", FEATURES, *FAST,
                 cwd=houses)
    assert result.returncode == 0, result.stderr[-3000:]
    run = the_run(houses)
    assert run.data.tags["orchestrator.task"] == "classification"
    model = load(houses, run)
    check_signature(model)

    splits = splits_of(houses, "size", int(run.data.params["seed"]))
    probabilities = model.predict(splits.raw_test)
    assert probabilities.shape == (len(splits.y_test), 3)  # classes large, medium, small (sorted)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (probabilities.argmax(axis=1) == splits.y_test).mean()
    assert run.data.metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)
    new = model.predict(NEW_ROWS)
    assert new.shape == (3, 3) and np.isfinite(new).all()


# ---------------------------------------------------------------------------------------------
# The encoding, in-process


def table_dataset(n: int = 60, task: str = "regression"):
    from orchestrator import Dataset

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"city": pd.Series(rng.choice(CITIES, size=n), dtype=object), "rooms": rng.integers(1, 6, n),
                      "area": rng.normal(60, 15, n)})
    y = rng.normal(size=n) if task == "regression" else rng.integers(0, 2, n)
    return Dataset(x, y, task, num_classes=None if task == "regression" else 2)


def settings(**changes):
    from orchestrator_plugins.data import CSVConfig

    return CSVConfig(**changes)


def test_categories_come_from_the_training_split_only():
    """A city seen only in a test row is unseen: no feature of its own, all zeros in that row;
    the same for a missing city."""
    from orchestrator.datasets import split

    data = table_dataset()
    first = split(data, settings(), 0, "t")
    test_rows = first.raw_test.index
    data.x.loc[test_rows[0], "city"] = "marseille"  # the split depends on y and the seed only
    data.x.loc[test_rows[1], "city"] = None
    splits = split(data, settings(), 0, "t")
    assert list(splits.raw_test.index) == list(test_rows)
    assert splits.encoder.columns == [("city", list(CITIES)), ("rooms", None), ("area", None)]
    assert splits.encoder.feature_names == ["city=lyon", "city=nice", "city=paris", "rooms", "area"]
    assert splits.input_shape == (5,)
    np.testing.assert_array_equal(splits.x_test[:2, :3], 0.0)  # unseen, missing: no city
    np.testing.assert_array_equal(splits.x_train[:, :3].sum(axis=1), 1.0)  # one city each
    # the one-hot features are 0/1, not standardised; the numbers are, on the training split
    np.testing.assert_array_equal(splits.mean[:3], 0.0)
    np.testing.assert_array_equal(splits.std[:3], 1.0)
    np.testing.assert_allclose(splits.x_train[:, 3:].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(splits.x_train[:, 3:].std(axis=0), 1.0, atol=1e-5)


def test_a_category_held_only_by_test_rows_is_not_learned():
    from orchestrator.datasets import split

    data = table_dataset()
    test_rows = split(data, settings(), 0, "t").raw_test.index
    data.x.loc[test_rows, "city"] = "marseille"
    splits = split(data, settings(), 0, "t")
    assert "marseille" not in splits.encoder.columns[0][1]
    np.testing.assert_array_equal(splits.x_test[:, :3], 0.0)


def test_the_encoder_turns_unseen_and_missing_values_into_zeros_and_names_a_missing_column():
    from orchestrator import OrchestratorError
    from orchestrator.datasets import TableEncoder

    encoder = TableEncoder.fit(pd.DataFrame({"n": [1.5, 2.5, 3.5], "c": ["b", "a", None]}))
    assert encoder.columns == [("n", None), ("c", ["a", "b"])]
    rows = pd.DataFrame({"c": ["a", "b", "zzz", None, np.nan], "n": [1, 2, 3, 4, 5], "extra": list("vwxyz")})
    np.testing.assert_array_equal(encoder.transform(rows), [[1, 1, 0], [2, 0, 1], [3, 0, 0], [4, 0, 0], [5, 0, 0]])
    np.testing.assert_array_equal(encoder.transform(rows.drop(columns="c")), [[k, 0, 0] for k in range(1, 6)])
    with pytest.raises(OrchestratorError, match="no column 'n'"):
        encoder.transform(rows.drop(columns="n"))


def test_a_csv_with_a_text_column_is_a_table_and_a_numeric_one_stays_an_array(tmp_path):
    from orchestrator import OrchestratorError
    from orchestrator_plugins.data import load_csv

    write_houses(tmp_path)
    path = str(tmp_path / "houses.csv")
    table = load_csv(settings(path=path, target="price", features=["city", "rooms", "area"]), 0)
    assert list(table.x.columns) == ["city", "rooms", "area"] and table.x["city"].isna().sum() == 2
    assert (table.x["rooms"].dtype.kind, table.x["area"].dtype.kind) == ("i", "f")  # types as read
    numbers = load_csv(settings(path=path, target="price", features=["rooms", "area"]), 0)
    assert isinstance(numbers.x, np.ndarray) and numbers.x.shape == (90, 2)
    (tmp_path / "mixed.csv").write_text("a,b,y\n1,x,1\n2,y,2\noops,z,3\n")
    with pytest.raises(OrchestratorError, match="column 'a' must be numeric but line 4 of the file holds 'oops'"):
        load_csv(settings(path=str(tmp_path / "mixed.csv"), target="y"), 0)
    (tmp_path / "holes.csv").write_text("a,b,y\n1,x,1\n,y,2\n3,,3\n")
    with pytest.raises(OrchestratorError, match="column 'a' has a missing value at line 3"):
        load_csv(settings(path=str(tmp_path / "holes.csv"), target="y"), 0)


def test_a_table_model_predicts_in_process_what_the_network_predicts():
    """The logged module (TablePredictor) on raw rows equals the Predictor on the encoded rows."""
    from orchestrator.datasets import split
    from orchestrator.serving import Predictor, TablePredictor

    splits = split(table_dataset(), settings(), 0, "t")
    network = torch.nn.Linear(5, 1)
    predictor = Predictor(network, splits.mean, splits.std, "regression").eval()
    served = TablePredictor(splits.encoder, predictor)
    with torch.no_grad():
        expected = network(torch.from_numpy(splits.x_test)).squeeze(-1).numpy()
    np.testing.assert_allclose(served.predict(splits.raw_test), expected, rtol=1e-5, atol=1e-5)


class TestCSVTable(DataContract):
    """data=csv returning a table (two text columns: city and the size labels) passes the data
    contract a third-party data plugin passes."""

    name = "csv"

    @pytest.fixture
    def settings(self, tmp_path):
        return {"path": str(write_houses(tmp_path)), "target": "price"}
