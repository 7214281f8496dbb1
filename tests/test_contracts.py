"""The built-in plugins pass the same contract suites a third-party plugin reuses."""

from __future__ import annotations

import pytest

from orchestrator.testing import (
    CallbackContract,
    DataContract,
    ModelContract,
    OptimizerContract,
    RegularizerContract,
    SchedulerContract,
)


class TestLinear(ModelContract):
    name = "linear"


class TestLogistic(ModelContract):
    name = "logistic"


class TestCNN(ModelContract):
    name = "cnn"


class TestGD(OptimizerContract):
    name = "gd"


class TestMinibatch(OptimizerContract):
    name = "minibatch"


class TestAdam(OptimizerContract):
    name = "adam"


@pytest.mark.parametrize("option", ["none", "l1", "l2", "elasticnet"])
class TestRegularizers(RegularizerContract):
    @pytest.fixture
    def provided(self, option):
        from orchestrator.plugins import get_catalog

        return get_catalog().get("regularizer", option)


@pytest.mark.parametrize("option", ["none", "step", "cosine", "onecycle", "plateau"])
class TestSchedulers(SchedulerContract):
    @pytest.fixture
    def provided(self, option):
        from orchestrator.plugins import get_catalog

        return get_catalog().get("scheduler", option)


@pytest.mark.parametrize("option", ["early_stopping", "model_checkpoint", "lr_monitor", "swa"])
class TestCallbacks(CallbackContract):
    @pytest.fixture
    def provided(self, option):
        from orchestrator.plugins import get_catalog

        return get_catalog().get("callbacks", option)


class TestRegression(DataContract):
    name = "regression"


class TestClassification(DataContract):
    name = "classification"


class TestDigits(DataContract):
    name = "digits"


class TestCSV(DataContract):
    name = "csv"

    @pytest.fixture
    def settings(self, tmp_path):
        path = tmp_path / "table.csv"
        path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(30)))
        return {"path": str(path), "target": "y"}
