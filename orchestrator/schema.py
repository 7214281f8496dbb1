"""Rules on config values, declared next to each field of a component's schema.

    from orchestrator import check

    @dataclass
    class AdamConfig:
        lr: float = check(1e-3, gt=0)                 # learning rate > 0
        batch_size: Optional[int] = check(64, ge=1)   # None passes: it means "whole set"
        activation: str = check("relu", choices=("relu", "tanh"))

Types and unknown keys are checked by Hydra and OmegaConf from the dataclass itself; these rules
add ranges and choices. :func:`validate` checks an instance before anything is built and names
the key, the value and the rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from .errors import OrchestratorError, closest

RULES = "orchestrator_rules"


def check(
    default: Any = dataclasses.MISSING,
    *,
    gt: Optional[float] = None,
    ge: Optional[float] = None,
    lt: Optional[float] = None,
    le: Optional[float] = None,
    choices: Optional[Iterable[Any]] = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a default and rules: bounds (``gt``, ``ge``, ``lt``, ``le``) for
    numbers (each item of a list) and ``choices`` for anything."""
    rules = {k: v for k, v in {"gt": gt, "ge": ge, "lt": lt, "le": le}.items() if v is not None}
    if choices is not None:
        rules["choices"] = tuple(choices)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={RULES: rules})


def describe(rules: dict) -> str:
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [f"{words[k]} {v}" for k, v in rules.items() if k in words]
    if "choices" in rules:
        parts.append("one of " + ", ".join(map(str, rules["choices"])))
    return " and ".join(parts)


def broken_rule(value: Any, rules: dict) -> bool:
    if value is None:
        return False  # None means "not set" (e.g. batch_size=null: the whole set)
    if "choices" in rules and value not in rules["choices"]:
        return True
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if ("gt" in rules and not item > rules["gt"]) or ("ge" in rules and not item >= rules["ge"]):
            return True
        if ("lt" in rules and not item < rules["lt"]) or ("le" in rules and not item <= rules["le"]):
            return True
        if item != item:  # NaN passes no bound
            return True
    return False


def validate(settings: Any, prefix: str) -> None:
    """Raise OrchestratorError for the first field of ``settings`` that breaks its rule."""
    for f in dataclasses.fields(settings):
        rules = f.metadata.get(RULES)
        if not rules:
            continue
        value = getattr(settings, f.name)
        if broken_rule(value, rules):
            hint = closest(value, rules["choices"]) if "choices" in rules and isinstance(value, str) else ""
            raise OrchestratorError(
                f"{prefix}.{f.name}={value!r} is not allowed: it must be {describe(rules)}{hint}."
            )
