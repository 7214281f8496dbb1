"""The pieces under ``run``: data splits, CSV loading, the plugin catalogue, penalties."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator import Dataset, Model, OrchestratorError
from orchestrator.datasets import split
from orchestrator.plugins import Catalog, PluginInfo, hookimpl, load_plugins


def fractions(val=0.2, test=0.2, standardize=True):
    return SimpleNamespace(val_fraction=val, test_fraction=test, standardize=standardize)


def test_split_is_seeded_disjoint_stratified_and_scaled_on_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=5.0, scale=3.0, size=(500, 3))
    y = (rng.random(500) < 0.2).astype(int)  # imbalanced classes
    data = Dataset(x, y, "classification", num_classes=2)
    a, b = split(data, fractions(), seed=1, name="t"), split(data, fractions(), seed=1, name="t")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, split(data, fractions(), seed=2, name="t").x_train)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 500
    rows = lambda part: {tuple(r) for r in part}
    assert not rows(a.x_train) & rows(a.x_test) and not rows(a.x_val) & rows(a.x_test)
    for part in (a.y_train, a.y_val, a.y_test):
        assert part.mean() == pytest.approx(y.mean(), abs=0.02)
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a.x_train.std(axis=0), 1, atol=1e-4)
    raw_train = a.x_train * a.std + a.mean
    np.testing.assert_allclose(a.mean, raw_train.mean(axis=0), rtol=1e-4)
    assert not np.allclose(a.mean, x.mean(axis=0), rtol=1e-4)  # fitted on train rows only
    assert np.abs(a.x_test.mean(axis=0)).max() > 1e-4  # test split not used for the fit


def test_split_refuses_fractions_that_leave_nothing_to_train():
    data = Dataset(np.zeros((10, 1)), np.zeros(10), "regression")
    with pytest.raises(OrchestratorError, match="val_fraction"):
        split(data, fractions(val=0.6, test=0.5), seed=0, name="t")


@pytest.mark.parametrize(
    "content,target,words",
    [
        ("", "y", ["empty"]),
        ("a,y\n", "y", ["no rows"]),
        ("a,y\n1,2\n", "z", ["'z'", "a, y"]),
        ("a,y\n1,2\n,3\n", "y", ["'a'", "missing", "line 3"]),
        ("a,y\n1,2\nx,3\n", "y", ["'a'", "numeric", "line 3", "'x'"]),
    ],
)
def test_csv_problems_name_the_file_column_and_line(tmp_path, content, target, words):
    from orchestrator_plugins.data import CSVConfig, load_csv

    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(OrchestratorError) as error:
        load_csv(CSVConfig(path=str(path), target=target), seed=0)
    for word in [str(path), *words]:
        assert word in str(error.value)


def test_builtins_come_from_the_entry_point_group():
    pm, infos, failures = load_plugins()
    assert failures == []
    builtin = {name for name, info in infos.items() if info.distribution == "orchestrator"}
    assert builtin == {"builtin.models", "builtin.optimizers", "builtin.regularizers", "builtin.data",
                       "builtin.tracking", "builtin.schedulers", "builtin.callbacks", "builtin.optuna"}
    catalog = Catalog(pm, infos)
    assert set(catalog.options["model"]) >= {"linear", "logistic", "cnn"}
    assert catalog.get("model", "cnn").plugin.name == "builtin.models"


def test_an_option_provided_twice_names_both_plugins():
    pm, infos, _ = load_plugins()

    class Copycat:
        @hookimpl
        def register_components(self):
            from orchestrator_plugins.models import LinearConfig

            return [Model("cnn", LinearConfig, lambda *a: None)]

    pm.register(Copycat(), name="copycat")
    infos["copycat"] = PluginInfo("copycat", "copycat-dist", "1.0", "copycat")
    catalog = Catalog(pm, infos, strict=False)
    (failure,) = catalog.failures
    message = str(failure)
    assert "model=cnn" in message and "builtin.models" in message and "copycat" in message
    assert "copycat-dist" in message
    assert catalog.get("model", "cnn").plugin.name == "builtin.models"  # the first one stays
    with pytest.raises(OrchestratorError, match="copycat-dist"):
        Catalog(*load_plugins()[:2], failures=[failure], strict=True)


def test_unknown_option_suggests_the_closest():
    from orchestrator.plugins import get_catalog

    with pytest.raises(OrchestratorError, match=r"did you mean 'logistic'\?.*cnn, linear, logistic"):
        get_catalog().get("model", "logistc")


def test_penalties_cover_weights_not_biases():
    import torch

    from orchestrator_plugins.regularizers import penalty

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(100.0)
    assert penalty(0.5, 0.0)(layer).item() == pytest.approx(0.5 * 3)
    assert penalty(0.0, 0.5)(layer).item() == pytest.approx(0.5 * 5)
    assert penalty(0.1, 0.2)(layer).item() == pytest.approx(0.1 * 3 + 0.2 * 5)


def test_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits as reference

    from orchestrator_plugins.data import DigitsConfig, load_digits

    ours, theirs = load_digits(DigitsConfig(), seed=0), reference()
    np.testing.assert_array_equal(ours.x, theirs.images[:, None] / 16.0)
    np.testing.assert_array_equal(ours.y, theirs.target)
