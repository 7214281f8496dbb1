"""``orchestrator new-plugin NAME``: write a plugin distribution that installs and passes its tests.

The distribution holds ``pyproject.toml`` (with the ``orchestrator`` entry point), a package with
one component (a model by default; an optimizer or a data set with ``--kind``) and its typed
schema, a README, and tests built on :mod:`orchestrator.testing`'s contract suites.

Plain argparse and string templates: nothing here imports torch, Lightning or MLflow, and the
templates live in this module, so they ship wherever the module does.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional

from .errors import OrchestratorError

KINDS = ("model", "optimizer", "data")

#: What a distribution name may be here: a PEP 508 name that also makes a Python package name.
NAME_RULE = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

#: Words Hydra's override grammar reads as something else than an option name.
HYDRA_WORDS = {"null", "true", "false", "nan", "inf"}

#: Folders the distribution or its build already has: the package cannot take their names.
TAKEN_FOLDERS = {"tests", "test", "build", "dist"}

USAGE = "orchestrator new-plugin NAME [--dir DIR] [--kind {model,optimizer,data}]"

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
description = "An orchestrator plugin: {{group}}={{option}}."
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
"""{{dist}}: an orchestrator plugin providing {{group}}={{option}}."""

__version__ = "0.1.0"
'''

README = """\
# {{dist}}

A plugin for orchestrator, made with `orchestrator new-plugin`. It adds one option:

- `{{group}}={{option}}`: {{description}}

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

Each is `{{group}}.<name>=<value>` on the command line; types and rules are checked before
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


@dataclass(frozen=True)
class Kind:
    """What differs between the kinds of component a plugin can start with."""

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
    "data": Kind(
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
            "schema": schema, "group": self.kind, "contract": kind.contract,
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
                   help="the component the plugin starts with: model (default), optimizer or data")
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
        check_option_is_free(names.kind, names.option)
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
        f"Wrote the plugin distribution {names.dist} to {shown}/: {names.kind}={names.option}, "
        f"package {names.package}, tests in {shown}/tests.\n"
        f"Next:\n"
        f"  pip install -e '{shown}[test]'\n"
        f"  python -m pytest {shown}\n"
        f"  orchestrator plugins\n"
        f"  python -m orchestrator {names.kind}={names.option}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
