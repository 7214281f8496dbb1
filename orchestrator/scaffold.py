"""``orchestrator new-plugin NAME``: write a plugin distribution that installs and passes its tests.

The distribution holds ``pyproject.toml`` (with the ``orchestrator`` entry point), a package with
one component (a model by default; an optimizer, a regularizer, a learning-rate schedule, a
callback or a data set with ``--kind``) and its typed schema, a README, and tests built on
:mod:`orchestrator.testing`'s contract suites.

Plain argparse and string templates: nothing here imports torch, Lightning or MLflow, and the
templates live in this module, so they ship wherever the module does.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional

from .components import CALLBACKS
from .errors import OrchestratorError

KINDS = ("model", "optimizer", "regularizer", "scheduler", "callback", "data")

#: What a distribution name may be here: a PEP 508 name that also makes a Python package name.
NAME_RULE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

#: Words Hydra's override grammar reads as something else than an option name.
HYDRA_WORDS = {"null", "true", "false", "nan", "inf"}

#: Folders the distribution or its build already has: the package cannot take their names.
TAKEN_FOLDERS = {"tests", "test", "build", "dist"}

USAGE = f"orchestrator new-plugin NAME [--dir DIR] [--kind {{{','.join(KINDS)}}}]"

DESCRIPTION = """\
Write a new plugin distribution for orchestrator in DIR/NAME: a pyproject.toml that declares
the entry point, a package with one component of KIND (a model unless told otherwise) and its
typed schema, a README, and tests built on orchestrator's contract suites
(orchestrator.testing). It installs and passes its own tests as written."""

EPILOG = """\
NAME is the distribution's name: lowercase letters, digits, hyphens or underscores, starting
with a letter (my-thing). The package is NAME with underscores (my_thing), and so is the
option (model=my_thing), less a leading "orchestrator-" (orchestrator-mlp gives model=mlp).

example:
  orchestrator new-plugin my-thing
  pip install -e './my-thing[test]'
  python -m pytest my-thing
  python -m orchestrator model=my_thing"""


# --------------------------------------------------------------------------------------------
# Templates. {{key}} is replaced by the value of key (see Names.values); nothing else is.
# --------------------------------------------------------------------------------------------

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "An orchestrator plugin: {{choice}}."
readme = "README.md"
requires-python = ">=3.10"
# orchestrator brings torch, Lightning and MLflow, in the versions it supports. Add only what
# your code needs besides them; if you must name torch, copy orchestrator's range: a bare
# "torch" can make pip fetch a multi-GB CUDA build in place of the one installed.
dependencies = ["orchestrator>={{orchestrator_version}}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This table is what makes the distribution a plugin: orchestrator loads every entry point of
# the "orchestrator" group at start-up. The name is the plugin's name (in `orchestrator plugins`
# and in each run's MLflow tags); the value is the module holding the @hookimpl functions.
[project.entry-points.orchestrator]
{{option}} = "{{package}}.plugin"

[tool.setuptools]
packages = ["{{package}}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

GITIGNORE = """\
__pycache__/
*.egg-info/
build/
dist/
mlruns/
outputs/
multirun/
"""

INIT = '''\
"""{{dist}}: an orchestrator plugin providing {{choice}}."""

__version__ = "0.1.0"
'''

README = """\
# {{dist}}

A plugin for orchestrator, made with `orchestrator new-plugin`. It adds one option:

- `{{choice}}`: {{description}}

## Install and check

```bash
pip install -e '.[test]'       # in the environment that has orchestrator
orchestrator plugins           # lists the plugin {{option}} ({{dist}} 0.1.0) and its option {{group}}={{option}}
python -m pytest               # orchestrator's contract suite for {{kind_noun}}s, and this plugin's own tests
```

## Use

```bash
{{usage}}
```

## Settings

Each is `{{prefix}}.<name>=<value>` on the command line; types and rules are checked before
anything is built (`{{package}}/plugin.py`, the `{{schema}}` dataclass).

| setting | default | rule | meaning |
| --- | --- | --- | --- |
{{settings_table}}

## Files

- `pyproject.toml`: the `[project.entry-points.orchestrator]` table that makes this a plugin.
- `{{package}}/plugin.py`: {{plugin_about}}
  orchestrator imports it for every command, so it imports no torch at module level.{{impl_line}}
- `tests/test_{{package}}.py`: `{{contract}}` from `orchestrator.testing` (the checks every
  {{kind_noun}} must pass) and this plugin's own tests.

orchestrator's guide, `docs/writing-a-plugin.md`, describes every hook, the metrics a run
records and what each contract suite checks.
"""

# ---- model ------------------------------------------------------------------------------------

MODEL_PLUGIN = '''\
"""The module the entry point names: the schema of model={{option}} and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, with no torch or Lightning at module level. The network lives in
net.py, imported only when a run builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Model, check, hookimpl


@dataclass
class {{schema}}:
    """Settings of model={{option}}: each field is `model.<field>=...` on the command line,
    type-checked from its annotation and checked against its rule before anything is built."""

    #: Width of the hidden layer; at least 1.
    hidden: int = check(32, ge=1)
    #: Activation after the hidden layer: relu or tanh.
    activation: str = check("relu", choices=("relu", "tanh"))
    #: Probability of dropping a hidden unit while training, in [0, 1).
    dropout: float = check(0.0, ge=0, lt=1)


def build(cfg: {{schema}}, input_shape: tuple, output_dim: int):
    """The torch module for one run: it takes a batch of shape (n, *input_shape) and returns
    raw outputs (logits for classifiers) of shape (n, output_dim)."""
    from .net import {{klass}}Net

    return {{klass}}Net(input_shape, output_dim, cfg.hidden, cfg.activation, cfg.dropout)


@hookimpl
def register_components():
    return [
        Model(
            name="{{option}}",
            schema={{schema}},
            build=build,
            description="{{description}}",
            inputs=("tabular", "image"),  # images are flattened
            tasks=("regression", "classification"),
            default_data="classification",  # what `model={{option}}` trains on without data=
        )
    ]
'''

MODEL_NET = '''\
"""The torch module behind model={{option}}: edit it, or replace it with your network.

orchestrator trains it on the CPU or a GPU, in full or mixed precision. Create every new tensor
from one the module receives or owns (x.new_zeros(...), torch.zeros(..., device=x.device,
dtype=x.dtype)) and keep constants as buffers (self.register_buffer): a bare torch.zeros(...)
in forward is made on the CPU and fails when the model trains on a GPU.
"""

from __future__ import annotations

import math

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class {{klass}}Net(nn.Module):
    """Flatten, one hidden layer with its activation and dropout, one output per target."""

    def __init__(self, input_shape, output_dim: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(hidden, output_dim),
        )

    def forward(self, x):
        # Raw outputs: orchestrator applies the task's loss (MSE, binary or multi-class
        # cross-entropy) and, in the logged model, the output link (sigmoid or softmax).
        return self.layers(x)
'''

MODEL_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for models, and this plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import mlflow

from orchestrator.testing import ModelContract, train_once


class Test{{klass}}(ModelContract):
    """The checks every model passes: registered by an installed distribution, described, a
    typed schema that builds from its defaults, outputs of shape (n, output_dim), gradients
    reaching every parameter, and a real training run on its default data."""

    name = "{{option}}"


def test_learns_its_default_data(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    result = train_once(tmp_path, "model={{option}}", "model.hidden=16", "optimizer=adam",
                        "trainer.max_epochs=20")
    assert result.metrics["test/accuracy"] >= 0.75
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.data.params["model.hidden"] == "16"
    assert run.data.tags["orchestrator.model.distribution"] == "{{dist}}==0.1.0"


def test_forward_makes_no_tensor_on_another_device():
    # On a GPU, a tensor made in forward without device= (torch.zeros(n)) is on the CPU, and the
    # run fails at its first step. With PyTorch's default device set to "meta", such a tensor
    # lands on meta and fails here the same way, on a machine without a GPU.
    import torch

    from {{package}}.plugin import {{schema}}, build

    module = build({{schema}}(dropout=0.5), (5,), 3).train()
    x = torch.randn(4, 5)
    with torch.device("meta"):
        out = module(x)
    assert out.device == x.device and out.shape == (4, 3)
'''

MODEL_SETTINGS = [
    ("hidden", "32", ">= 1", "width of the hidden layer"),
    ("activation", "relu", "relu or tanh", "activation after the hidden layer"),
    ("dropout", "0.0", "in [0, 1)", "probability of dropping a hidden unit while training"),
]

MODEL_USAGE = """\
python -m orchestrator model={{option}}                           # on its default data: classification
python -m orchestrator model={{option}} model.hidden=64 optimizer=adam trainer.max_epochs=30
python -m orchestrator model={{option}} data=digits                # images are flattened
python -m orchestrator -m model={{option}},logistic optimizer=adam  # a sweep against a built-in"""

# ---- optimizer --------------------------------------------------------------------------------

OPTIMIZER_PLUGIN = '''\
"""The module the entry point names: the schema of optimizer={{option}} and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, with no torch or Lightning at module level. The update rule lives in
optim.py, imported only when a run builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator import Optimizer, check, hookimpl


@dataclass
class {{schema}}:
    """Settings of optimizer={{option}}: each field is `optimizer.<field>=...` on the command
    line, type-checked from its annotation and checked against its rule before anything is
    built."""

    #: Step size; greater than 0.
    lr: float = check(0.05, gt=0)
    #: Momentum factor in [0, 1); 0 is plain stochastic gradient descent.
    momentum: float = check(0.9, ge=0, lt=1)
    #: Examples per step, reshuffled every epoch; null steps on the whole training set. A
    #: field named batch_size is what sets orchestrator's batch size.
    batch_size: Optional[int] = check(32, ge=1)


def build(cfg: {{schema}}, params):
    """The torch optimizer of one run, over the model's parameters."""
    from .optim import {{klass}}

    return {{klass}}(params, lr=cfg.lr, momentum=cfg.momentum)


@hookimpl
def register_components():
    return [Optimizer(name="{{option}}", schema={{schema}}, build=build, description="{{description}}")]
'''

OPTIMIZER_IMPL = '''\
"""The torch optimizer behind optimizer={{option}}: edit step() to try your update rule.

orchestrator may train on a GPU: make state from the parameter it belongs to
(torch.zeros_like(p), p.new_zeros(...), p.new_tensor(...)), never with a bare torch.zeros(...),
which is made on the CPU.
"""

from __future__ import annotations

import torch


class {{klass}}(torch.optim.Optimizer):
    """Stochastic gradient descent with heavy-ball momentum, written out:
    v <- momentum * v + grad;  p <- p - lr * v."""

    def __init__(self, params, lr: float, momentum: float):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        # Lightning passes a closure that computes the loss and its gradients: call it first.
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)  # same device and dtype as p
                velocity = state["velocity"]
                velocity.mul_(group["momentum"]).add_(p.grad)
                p.add_(velocity, alpha=-group["lr"])
        return loss
'''

OPTIMIZER_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for optimizers, and this plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import mlflow

from orchestrator.testing import OptimizerContract, train_once


class Test{{klass}}(OptimizerContract):
    """The checks every optimizer passes: registered by an installed distribution, described, a
    typed schema that builds from its defaults, a batch size that is null or positive, steps
    downhill on a quadratic, and a real training run."""

    name = "{{option}}"


def test_fits_a_linear_regression(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    # Without model= and data=, that is model=linear on data=regression (y = 3x + 2 + noise).
    result = train_once(tmp_path, "optimizer={{option}}", "optimizer.batch_size=64", "trainer.max_epochs=10")
    assert result.metrics["test/r2"] >= 0.9
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.data.params["optimizer.batch_size"] == "64"
    assert run.data.tags["orchestrator.optimizer.distribution"] == "{{dist}}==0.1.0"


def test_step_makes_no_tensor_on_another_device():
    # On a GPU, state made in step without device= (torch.zeros(p.shape)) is on the CPU, and the
    # run fails at its first step. With PyTorch's default device set to "meta", such a tensor
    # lands on meta and fails here the same way, on a machine without a GPU.
    import torch

    from {{package}}.plugin import {{schema}}, build

    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    optimizer = build({{schema}}(), [w])
    for _ in range(2):
        optimizer.zero_grad()
        w.pow(2).sum().backward()
        with torch.device("meta"):
            optimizer.step()
    state = [t for t in optimizer.state[w].values() if isinstance(t, torch.Tensor)]
    assert w.device.type == "cpu" and all(t.device == w.device for t in state)
'''

OPTIMIZER_SETTINGS = [
    ("lr", "0.05", "> 0", "step size"),
    ("momentum", "0.9", "in [0, 1)", "momentum factor; 0 is plain SGD"),
    ("batch_size", "32", ">= 1 or null", "examples per step; null steps on the whole training set"),
]

OPTIMIZER_USAGE = """\
python -m orchestrator optimizer={{option}}                                # model=linear on data=regression
python -m orchestrator optimizer={{option}} optimizer.lr=0.01 optimizer.momentum=0.5 model=cnn
python -m orchestrator -m optimizer={{option}},adam model=logistic            # a sweep against a built-in"""

# ---- data -------------------------------------------------------------------------------------

DATA_PLUGIN = '''\
"""The module the entry point names: the schema of data={{option}}, the loader and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, importing numpy (or pandas, ...) inside the loader.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Data, DataConfig, Dataset, check, hookimpl


@dataclass
class {{schema}}(DataConfig):
    """Settings of data={{option}}: each field is `data.<field>=...` on the command line,
    type-checked from its annotation and checked against its rule before anything is loaded.
    DataConfig adds val_fraction, test_fraction and standardize, which every data option has."""

    #: Number of examples generated; at least 10.
    n_samples: int = check(500, ge=10)
    #: Number of features (columns of x); at least 1.
    n_features: int = check(3, ge=1)
    #: Standard deviation of the Gaussian noise added to y; at least 0.
    noise: float = check(0.1, ge=0)


def load(cfg: {{schema}}, seed: int) -> Dataset:
    """All the examples, as arrays: orchestrator shuffles them with `seed`, holds out the
    validation and test splits and standardises the features (fitted on the training split).

    Replace the body with your loading code: read a file named by a setting, query a database.
    Draw any randomness from `seed`: the same seed must give the same examples.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=(cfg.n_samples, cfg.n_features))  # (n, features)
    weights = np.linspace(1.0, 2.0, cfg.n_features)
    y = x @ weights + 0.5 + rng.normal(scale=cfg.noise, size=cfg.n_samples)  # (n,) floats
    return Dataset(x=x, y=y, task="regression", source="synthetic: y = x . w + 0.5 + noise")


@hookimpl
def register_components():
    return [Data(name="{{option}}", schema={{schema}}, build=load, description="{{description}}")]
'''

DATA_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for data sets, and this plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import mlflow

from orchestrator.testing import DataContract, train_once


class Test{{klass}}(DataContract):
    """The checks every data set passes: registered by an installed distribution, described, a
    typed schema that subclasses DataConfig and builds from its defaults, consistent finite
    arrays, and the same examples for the same seed.

    Settings the defaults lack (a file's path, say) go in a `settings` fixture:

        @pytest.fixture
        def settings(self):
            return {"path": "tests/example.csv"}
    """

    name = "{{option}}"


def test_a_linear_model_fits_it(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    # Without model= and optimizer=, that is model=linear with full-batch gradient descent.
    result = train_once(tmp_path, "data={{option}}", "data.n_samples=400", "trainer.max_epochs=30")
    assert result.metrics["test/r2"] >= 0.9
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    n = sum(run.data.metrics[f"data.n_{split}"] for split in ("train", "val", "test"))
    assert n == 400
    assert run.data.tags["orchestrator.data.distribution"] == "{{dist}}==0.1.0"
'''

DATA_SETTINGS = [
    ("n_samples", "500", ">= 10", "number of examples generated"),
    ("n_features", "3", ">= 1", "number of features"),
    ("noise", "0.1", ">= 0", "standard deviation of the noise added to y"),
    ("val_fraction", "0.15", "in (0, 1)", "share held out for validation (every data option has it)"),
    ("test_fraction", "0.15", "in (0, 1)", "share held out for the final test (every data option has it)"),
    ("standardize", "true", "true or false", "scale features, fitted on the training split (every data option has it)"),
]

DATA_USAGE = """\
python -m orchestrator data={{option}}                               # model=linear, full-batch gradient descent
python -m orchestrator data={{option}} data.n_features=5 data.noise=0.5 optimizer=adam
python -m orchestrator -m data={{option}} optimizer=gd,adam            # a sweep: a child run per optimizer"""


# ---- regularizer ------------------------------------------------------------------------------

REGULARIZER_PLUGIN = '''\
"""The module the entry point names: the schema of regularizer={{option}}, its penalty and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, with no torch at module level (the penalty needs none).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Regularizer, check, hookimpl


@dataclass
class {{schema}}:
    """Settings of regularizer={{option}}: each field is `regularizer.<field>=...` on the
    command line, type-checked from its annotation and checked against its rule before anything
    is built."""

    #: Multiplies the penalty; at least 0.
    strength: float = check(1e-3, ge=0)


def build(cfg: {{schema}}):
    """The penalty of one run: `penalty(module)` is a scalar tensor added to the loss each step
    and logged as train/penalty. Return None instead for no penalty at all."""

    def penalty(module):
        # Weight matrices and kernels (ndim > 1), never biases. Build the value from the
        # parameters themselves, so that it lies on their device.
        return cfg.strength * sum(w.pow(2).sum() for w in module.parameters() if w.ndim > 1)

    return penalty


@hookimpl
def register_components():
    return [Regularizer(name="{{option}}", schema={{schema}}, build=build, description="{{description}}")]
'''

REGULARIZER_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for regularizers, and this plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import mlflow

from orchestrator.testing import RegularizerContract, train_once


class Test{{klass}}(RegularizerContract):
    """The checks every regularizer passes: registered by an installed distribution, described,
    a typed schema that builds from its defaults, a non-negative differentiable scalar penalty,
    and no penalty for zero weights."""

    name = "{{option}}"


def test_adds_its_penalty_to_the_loss(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    # Without model=, data= and optimizer=, that is model=linear on data=regression.
    result = train_once(tmp_path, "regularizer={{option}}", "regularizer.strength=0.1", "trainer.max_epochs=3")
    assert result.metrics["train/penalty"] > 0
    run = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.data.params["regularizer.strength"] == "0.1"
    assert run.data.tags["orchestrator.regularizer.distribution"] == "{{dist}}==0.1.0"
'''

REGULARIZER_SETTINGS = [
    ("strength", "0.001", ">= 0", "multiplies the sum of squared weights (biases left out)"),
]

REGULARIZER_USAGE = """\
python -m orchestrator regularizer={{option}} regularizer.strength=0.01     # model=linear on data=regression
python -m orchestrator -m regularizer={{option}},l2 regularizer.strength=0.001,0.01 model=logistic   # a sweep"""

# ---- scheduler --------------------------------------------------------------------------------

SCHEDULER_PLUGIN = '''\
"""The module the entry point names: the schema of scheduler={{option}}, its builder and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, importing torch inside the builder.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Scheduler, check, hookimpl


@dataclass
class {{schema}}:
    """Settings of scheduler={{option}}: each field is `scheduler.<field>=...` on the command
    line, type-checked from its annotation and checked against its rule before anything is
    built."""

    #: Share of the fit's steps over which the rate rises linearly to optimizer.lr, in [0, 1).
    warmup_fraction: float = check(0.1, ge=0, lt=1)
    #: The rate the decay ends at, as a fraction of optimizer.lr, in [0, 1].
    final_fraction: float = check(0.0, ge=0, le=1)


def build(cfg: {{schema}}, optimizer, total_steps: int, max_epochs: int):
    """The torch scheduler of one run, over the optimizer the run built. orchestrator steps it
    after every optimizer step (interval="step" below); total_steps is their number in the
    whole fit. Return None instead for a constant rate."""
    import torch

    warmup = int(cfg.warmup_fraction * total_steps)

    def factor(step: int) -> float:  # multiplies optimizer.lr at optimizer step `step`
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1.0 - (1.0 - cfg.final_fraction) * progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@hookimpl
def register_components():
    return [
        Scheduler(
            name="{{option}}",
            schema={{schema}},
            build=build,
            description="{{description}}",
            interval="step",  # or "epoch": stepped once after each epoch
            # A schedule that steps on a metric (ReduceLROnPlateau) names it: monitor="val/loss".
        )
    ]
'''

SCHEDULER_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for learning-rate schedules, and this
plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import mlflow
import pytest

from orchestrator.testing import SchedulerContract, train_once


class Test{{klass}}(SchedulerContract):
    """The checks every schedule passes: registered by an installed distribution, described, a
    typed schema that builds from its defaults, a torch scheduler of the optimizer it is given,
    a finite positive rate through the whole fit, a published metric for a metric-driven one,
    and a real training run that logs train/lr."""

    name = "{{option}}"


def test_warms_up_then_decays(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    # Without model= and data=, that is model=linear on data=regression; optimizer=gd is
    # full-batch gradient descent: one step per epoch, 4 in all, the first 2 of them warm-up.
    result = train_once(tmp_path, "scheduler={{option}}", "scheduler.warmup_fraction=0.5", "optimizer=gd",
                        "optimizer.lr=0.3", "trainer.max_epochs=4")
    client = mlflow.MlflowClient(result.tracking_uri)
    history = sorted(client.get_metric_history(result.run_id, "train/lr"), key=lambda m: m.step)
    lr = [m.value for m in history]  # the rate each epoch began with
    assert lr == pytest.approx([0.1, 0.2, 0.3, 0.15])
    assert client.get_run(result.run_id).data.tags["orchestrator.scheduler.distribution"] == "{{dist}}==0.1.0"
'''

SCHEDULER_SETTINGS = [
    ("warmup_fraction", "0.1", "in [0, 1)",
     "share of the steps over which the rate rises linearly to `optimizer.lr`"),
    ("final_fraction", "0.0", "in [0, 1]", "the rate the linear decay ends at, as a fraction of `optimizer.lr`"),
]

SCHEDULER_USAGE = """\
python -m orchestrator scheduler={{option}}                           # model=linear on data=regression
python -m orchestrator scheduler={{option}} scheduler.warmup_fraction=0.2 optimizer=adam trainer.max_epochs=20
python -m orchestrator -m scheduler={{option}},cosine optimizer=adam    # a sweep against a built-in"""

# ---- callback ---------------------------------------------------------------------------------

CALLBACK_PLUGIN = '''\
"""The module the entry point names: the schema of callbacks=[{{option}}] and the hooks.

orchestrator imports this module for every command, `orchestrator plugins` and `--help`
included: keep it cheap, with no torch or Lightning at module level. The callback lives in
callback.py, imported only when a run builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import Callback, check, hookimpl


@dataclass
class {{schema}}:
    """Settings of callbacks=[{{option}}]: each field is `callbacks.{{option}}.<field>=...` on
    the command line, type-checked from its annotation and checked against its rule before
    anything is built.

    A callback that watches a metric takes it from a field `monitor: Optional[str] = None`
    (with `mode`): null is the task's ranking metric, and any other is checked against the
    metrics the run publishes before training starts.
    """

    #: Order of the norm: 2 is the Euclidean norm; at least 1.
    norm_type: float = check(2.0, ge=1)


def build(cfg: {{schema}}):
    """The Lightning callback of one run."""
    from .callback import {{klass}}

    return {{klass}}(cfg.norm_type)


@hookimpl
def register_components():
    return [Callback(name="{{option}}", schema={{schema}}, build=build, description="{{description}}")]
'''

CALLBACK_IMPL = '''\
"""The Lightning callback behind callbacks=[{{option}}]: edit it, or replace it with yours.

Any pytorch_lightning.Callback hook works. A value logged with pl_module.log(name, value,
on_epoch=True) reaches MLflow with the run's other metrics. orchestrator may train on a GPU:
make tensors from those you are given (p.grad, torch.stack of them), never with a bare
torch.tensor(...), which is made on the CPU.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class {{klass}}(pl.Callback):
    """Log the norm of all the gradients, averaged over each epoch's steps, as train/grad_norm:
    a growing norm warns of divergence before the loss does."""

    def __init__(self, norm_type: float):
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # Called once a step's gradients are ready, before the optimizer applies them.
        norms = [torch.linalg.vector_norm(p.grad.detach(), self.norm_type)
                 for p in pl_module.parameters() if p.grad is not None]
        if norms:
            total = torch.linalg.vector_norm(torch.stack(norms), self.norm_type)
            pl_module.log("train/grad_norm", total, on_step=False, on_epoch=True)
'''

CALLBACK_TESTS = '''\
"""Tests of {{dist}}: orchestrator's contract suite for callbacks, and this plugin's own.

The suites load the plugin through its entry point, as `python -m orchestrator` does: install
the distribution first (pip install -e '.[test]'), then run python -m pytest.
"""

from __future__ import annotations

import math

import mlflow

from orchestrator.testing import CallbackContract, train_once


class Test{{klass}}(CallbackContract):
    """The checks every callback passes: registered by an installed distribution, described, a
    typed schema that builds from its defaults, a pytorch_lightning.Callback for either task,
    a watched metric taken from its checked `monitor` setting (this one watches none), and a
    real training run."""

    name = "{{option}}"


def test_logs_the_gradient_norm_each_epoch(tmp_path):
    # train_once composes the config as the command line does (these are the overrides), trains
    # into a SQLite MLflow store under tmp_path and returns the run's id, URI and final metrics.
    result = train_once(tmp_path, "callbacks=[{{option}}]", "callbacks.{{option}}.norm_type=1",
                        "trainer.max_epochs=3")
    client = mlflow.MlflowClient(result.tracking_uri)
    history = client.get_metric_history(result.run_id, "train/grad_norm")
    assert len(history) == 3 and all(math.isfinite(m.value) and m.value > 0 for m in history)
    assert client.get_run(result.run_id).data.params["callbacks.{{option}}.norm_type"] == "1.0"


def test_the_norm_is_the_gradients_and_makes_no_tensor_on_another_device():
    # On a GPU, a tensor made without device= (torch.tensor(0.0)) is on the CPU, and the run
    # fails at its first step. With PyTorch's default device set to "meta", such a tensor lands
    # on meta and fails here the same way, on a machine without a GPU.
    import torch

    from {{package}}.plugin import {{schema}}, build

    module, logged = torch.nn.Linear(3, 2), {}
    module.log = lambda name, value, **how: logged.update({name: value})
    module(torch.randn(4, 3)).pow(2).sum().backward()
    with torch.device("meta"):
        build({{schema}}()).on_before_optimizer_step(None, module, None)
    expected = torch.cat([p.grad.flatten() for p in module.parameters()]).norm()
    assert logged["train/grad_norm"].device.type == "cpu"
    assert torch.allclose(logged["train/grad_norm"], expected)
'''

CALLBACK_SETTINGS = [
    ("norm_type", "2.0", ">= 1", "order of the gradient norm logged as `train/grad_norm`"),
]

CALLBACK_USAGE = """\
python -m orchestrator 'callbacks=[{{option}}]'                        # model=linear on data=regression
python -m orchestrator 'callbacks=[{{option}},early_stopping]' callbacks.{{option}}.norm_type=1 optimizer=adam"""


@dataclass(frozen=True)
class Kind:
    """What differs between the kinds of component a plugin can start with."""

    #: The config group the option belongs to (``--kind callback`` gives ``callbacks``).
    group: str
    contract: str
    #: What the README calls one component of the kind: "model", "data set".
    noun: str
    description: str
    #: What plugin.py holds, and the module beside it that holds torch code ("" if none).
    plugin_about: str
    impl_file: str
    impl_about: str
    usage: str
    settings: list
    files: dict  # relative path template -> content template


KIND = {
    "model": Kind(
        group="model",
        contract="ModelContract",
        noun="model",
        description="A one-hidden-layer network on flattened inputs (a template to edit).",
        plugin_about="the schema and the `register_components` hook.",
        impl_file="net.py",
        impl_about="the torch module, imported only when a run builds it.",
        usage=MODEL_USAGE,
        settings=MODEL_SETTINGS,
        files={"{{package}}/plugin.py": MODEL_PLUGIN, "{{package}}/net.py": MODEL_NET,
               "tests/test_{{package}}.py": MODEL_TESTS},
    ),
    "optimizer": Kind(
        group="optimizer",
        contract="OptimizerContract",
        noun="optimizer",
        description="SGD with heavy-ball momentum, written out (a template to edit).",
        plugin_about="the schema and the `register_components` hook.",
        impl_file="optim.py",
        impl_about="the `torch.optim.Optimizer`, imported only when a run builds it.",
        usage=OPTIMIZER_USAGE,
        settings=OPTIMIZER_SETTINGS,
        files={"{{package}}/plugin.py": OPTIMIZER_PLUGIN, "{{package}}/optim.py": OPTIMIZER_IMPL,
               "tests/test_{{package}}.py": OPTIMIZER_TESTS},
    ),
    "regularizer": Kind(
        group="regularizer",
        contract="RegularizerContract",
        noun="regularizer",
        description="strength * sum of squared weights, biases left out (a template to edit).",
        plugin_about="the schema, the penalty and the `register_components` hook.",
        impl_file="",
        impl_about="",
        usage=REGULARIZER_USAGE,
        settings=REGULARIZER_SETTINGS,
        files={"{{package}}/plugin.py": REGULARIZER_PLUGIN, "tests/test_{{package}}.py": REGULARIZER_TESTS},
    ),
    "scheduler": Kind(
        group="scheduler",
        contract="SchedulerContract",
        noun="learning-rate schedule",
        description="Linear warm-up, then linear decay to final_fraction, stepped every batch "
                    "(a template to edit).",
        plugin_about="the schema, the builder (a `torch.optim.lr_scheduler.LambdaLR`, torch imported "
                     "inside it) and the `register_components` hook.",
        impl_file="",
        impl_about="",
        usage=SCHEDULER_USAGE,
        settings=SCHEDULER_SETTINGS,
        files={"{{package}}/plugin.py": SCHEDULER_PLUGIN, "tests/test_{{package}}.py": SCHEDULER_TESTS},
    ),
    "callback": Kind(
        group=CALLBACKS,
        contract="CallbackContract",
        noun="callback",
        description="Log the gradient norm as train/grad_norm each epoch (a template to edit).",
        plugin_about="the schema and the `register_components` hook.",
        impl_file="callback.py",
        impl_about="the `pytorch_lightning.Callback`, imported only when a run builds it.",
        usage=CALLBACK_USAGE,
        settings=CALLBACK_SETTINGS,
        files={"{{package}}/plugin.py": CALLBACK_PLUGIN, "{{package}}/callback.py": CALLBACK_IMPL,
               "tests/test_{{package}}.py": CALLBACK_TESTS},
    ),
    "data": Kind(
        group="data",
        contract="DataContract",
        noun="data set",
        description="Synthetic regression, y = x . w + 0.5 + noise (a template to edit).",
        plugin_about="the schema, the loader (`load(cfg, seed)` returns an `orchestrator.Dataset`) "
                     "and the `register_components` hook.",
        impl_file="",
        impl_about="",
        usage=DATA_USAGE,
        settings=DATA_SETTINGS,
        files={"{{package}}/plugin.py": DATA_PLUGIN, "tests/test_{{package}}.py": DATA_TESTS},
    ),
}

COMMON_FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    ".gitignore": GITIGNORE,
    "{{package}}/__init__.py": INIT,
}


# --------------------------------------------------------------------------------------------
# Names and checks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """The names one NAME gives: distribution, package, option (and entry point), classes."""

    dist: str
    package: str
    option: str
    kind: str

    @classmethod
    def from_name(cls, name: str, kind: str) -> "Names":
        package = name.replace("-", "_")
        option = package.removeprefix("orchestrator_") or package
        return cls(name, package, option, kind)

    @property
    def klass(self) -> str:
        return "".join(part.capitalize() for part in self.option.split("_"))

    @property
    def group(self) -> str:
        return KIND[self.kind].group

    @property
    def choice(self) -> str:
        """What chooses the option on the command line: ``model=my_thing``, ``callbacks=[my_thing]``."""
        return f"{self.group}=[{self.option}]" if self.group == CALLBACKS else f"{self.group}={self.option}"

    def values(self) -> dict[str, str]:
        from . import __version__

        kind = KIND[self.kind]
        schema = f"{self.klass}Config"
        if schema == "DataConfig":  # orchestrator's own base class, which a data schema extends
            schema = "DataOptionConfig"
        table = "\n".join(f"| `{key}` | `{default}` | {rule} | {meaning} |"
                          for key, default, rule, meaning in kind.settings)
        values = {
            "dist": self.dist, "package": self.package, "option": self.option, "klass": self.klass,
            "schema": schema, "group": self.group, "choice": self.choice, "contract": kind.contract,
            # Where the option's settings go: scheduler.<field>, callbacks.my_thing.<field>.
            "prefix": f"{self.group}.{self.option}" if self.group == CALLBACKS else self.group,
            "kind_noun": kind.noun, "description": kind.description,
            "plugin_about": kind.plugin_about, "settings_table": table,
            "impl_line": f"\n- `{self.package}/{kind.impl_file}`: {kind.impl_about}" if kind.impl_file else "",
            "orchestrator_version": __version__,
        }
        values["usage"] = render(kind.usage, values)
        return values


def render(template: str, values: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", substitute, template)


def check_name(name: str) -> None:
    """Refuse a NAME that cannot be a distribution, a package and an option at once."""
    if not NAME_RULE.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        hint = f" (did you mean {suggestion!r}?)" if suggestion and NAME_RULE.fullmatch(suggestion) else ""
        raise OrchestratorError(
            f"{name!r} is not a valid plugin name{hint}. NAME is the distribution's name and, with "
            "underscores for hyphens, its Python package's and option's name: use lowercase "
            "letters, digits, and single hyphens or underscores between them, starting with a "
            "letter (for example my-thing, which gives the package my_thing)."
        )
    names = Names.from_name(name, "model")
    package, option = names.package, names.option
    for word, what in ((package, "package"), (option, "option")):
        if keyword.iskeyword(word):
            raise OrchestratorError(
                f"{name!r} is not a valid plugin name: its {what} name {word!r} is a Python "
                "keyword, which cannot be imported. Choose another name, such as "
                f"{name}-plugin."
            )
    if package in TAKEN_FOLDERS:
        raise OrchestratorError(
            f"{name!r} is not a valid plugin name: the package {package}/ would share its folder "
            f"with the distribution's own {package}/ folder. Choose another name, such as "
            f"{name}-plugin."
        )
    if option in HYDRA_WORDS:
        raise OrchestratorError(
            f"{name!r} is not a valid plugin name: the option {option}= would be read by Hydra "
            f"as a value, not an option name. Choose another name, such as {name}-plugin."
        )


def check_not_shadowing(package: str) -> None:
    """Refuse a package name that is already importable: installing the plugin would shadow
    that module, or be shadowed by it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or []) or "here"
        raise OrchestratorError(
            f"A module named {package!r} can already be imported ({where}): a plugin whose "
            f"package is {package} would shadow it or be shadowed by it. Choose another name "
            f"(such as {package.replace('_', '-')}-plugin), or uninstall that distribution first "
            "if it is an earlier copy of this plugin."
        )


def check_option_is_free(group: str, option: str) -> None:
    """Refuse an option that an installed plugin, or a YAML file of orchestrator, provides."""
    from .config import conf_dir
    from .plugins import get_catalog

    try:
        catalog = get_catalog()
    except Exception:  # a broken installation is reported by `orchestrator plugins`, not here
        return
    provided = catalog.options.get(group, {}).get(option)
    if provided is not None:
        info = provided.plugin
        raise OrchestratorError(
            f"The option {group}={option} is already provided by plugin {info.name!r} from "
            f"{info.distribution} {info.version}; two plugins cannot provide the same option. "
            f"Choose another name, such as {option.replace('_', '-')}-2 or my-{option.replace('_', '-')}."
        )
    if (conf_dir() / group / f"{option}.yaml").is_file():
        raise OrchestratorError(
            f"The option {group}={option} is already a preset of orchestrator "
            f"(conf/{group}/{option}.yaml). Choose another name."
        )


def check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise OrchestratorError(f"{target} exists and is not a folder. Choose another NAME or --dir.")
    if target.is_dir() and any(target.iterdir()):
        raise OrchestratorError(
            f"{target} already exists and is not empty; new-plugin writes only into a new or "
            "empty folder, so that nothing of yours is overwritten. Choose another NAME or "
            "--dir, or remove the folder."
        )
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise OrchestratorError(f"--dir {parent} is not a folder.")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def plugin_files(names: Names) -> dict[str, str]:
    """Every file of the distribution: relative path -> text."""
    values = names.values()
    templates = {**COMMON_FILES, **KIND[names.kind].files}
    return {render(path, values): render(text, values) for path, text in templates.items()}


def write(target: Path, files: dict[str, str]) -> None:
    """Write into a folder next to ``target``, then move it into place: a failure leaves no
    half-written plugin behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.chmod(0o777 & ~_umask())
        if target.is_dir():
            target.rmdir()  # empty: checked before
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting, so that ``main`` returns the status."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if message:
            print(message, file=sys.stderr, end="")
        raise SystemExit(status)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="orchestrator new-plugin", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    p.add_argument("name", metavar="NAME", help="the distribution's name, such as my-thing (see below)")
    p.add_argument("--dir", metavar="DIR", default=".",
                   help="the folder in which NAME/ is made (default: the current folder); "
                        "DIR/NAME must not exist or be empty")
    p.add_argument("--kind", choices=KINDS, default="model",
                   help="the component the plugin starts with: model (default), optimizer, regularizer, "
                        "scheduler, callback or data")
    return p


def main(argv: list[str]) -> int:
    """Run ``orchestrator new-plugin ARGV``; return the exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except _UsageError as error:
        print(f"Error: {error}. Usage: {USAGE} (orchestrator new-plugin --help explains).",
              file=sys.stderr)
        return 2
    target = Path(args.dir) / args.name
    try:
        check_name(args.name)
        names = Names.from_name(args.name, args.kind)
        check_target(target)
        check_not_shadowing(names.package)
        check_option_is_free(names.group, names.option)
        write(target, plugin_files(names))
    except OrchestratorError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"Error: cannot write the plugin to {target}: {error}.", file=sys.stderr)
        return 2
    shown = str(target)
    if not target.is_absolute() and not shown.startswith("."):
        shown = f".{os.sep}{shown}"  # pip reads a bare name as a distribution to download
    print(
        f"Wrote the plugin distribution {names.dist} to {shown}/: {names.choice}, "
        f"package {names.package}, tests in {shown}/tests.\n"
        f"Next:\n"
        f"  pip install -e '{shown}[test]'\n"
        f"  python -m pytest {shown}\n"
        f"  orchestrator plugins\n"
        f"  python -m orchestrator {shlex.quote(names.choice)}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
