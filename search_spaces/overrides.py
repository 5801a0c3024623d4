"""``--space FILE``: a YAML file that overrides ranges of the embedded spaces.

Keys are hyperparameter names (those of ``--set``); each value is one of::

    student_lr: {low: 2.0e-5, high: 8.0e-5, log: true}   # a numeric range (log, step optional)
    meta_interval: {low: 1, high: 3}                     # int fields get an int range
    update_strategy: [first, skip]                       # choices (also {choices: [...]})
    alpha: 0.5                                           # a scalar fixes the value (like --set)

A key the method's own space does not search is added to the search. Everything is checked when
the file is read: an unknown key, an empty or inverted range, a value of the wrong type or one
the config rejects (e.g. ``temperature: {low: 0, ...}``) is a :class:`UserError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from search_spaces.space import Choice, Distribution, Float, Int
from trainables.config import HPARAMS, DistillConfig, _base_type, _fields, coerce
from trainables.errors import UserError

_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass
class SpaceOverrides:
    ranges: dict[str, Distribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


def load_space_file(path: str) -> SpaceOverrides:
    """Read and validate a ``--space`` YAML file."""
    import yaml

    if not os.path.isfile(path):
        raise UserError(f"--space file {path!r} does not exist")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"--space file {path!r} is not valid YAML: {first}") from None
    return parse_overrides(data, source=path)


def parse_overrides(data: Any, source: str = "--space") -> SpaceOverrides:
    """Validate a mapping ``{hyperparameter: range | choices | value}``."""
    if data is None:
        return SpaceOverrides(source=source)
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of hyperparameter -> range, got {type(data).__name__}")
    out = SpaceOverrides(source=source)
    for key, spec in data.items():
        name = str(key).replace("-", "_")
        if name not in HPARAMS:
            raise UserError(f"{source}: unknown hyperparameter {key!r}; valid: {', '.join(HPARAMS)}")
        where = f"{source}: {name}"
        if isinstance(spec, dict) and set(spec) == {"choices"}:
            spec = spec["choices"]
        if isinstance(spec, dict):
            out.ranges[name] = _range(name, spec, where)
        elif isinstance(spec, list):
            out.ranges[name] = _choices(name, spec, where)
        else:
            out.fixed[name] = _value(name, spec, where)
    return out


def _value(name: str, raw: Any, where: str) -> Any:
    try:
        value = coerce(_fields()[name], raw)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    _check_in_config(name, value, where)
    return value


def _check_in_config(name: str, value: Any, where: str) -> None:
    """The config's own validation (e.g. temperature > 0) applied to one value."""
    try:
        DistillConfig(**{name: value})
    except UserError as err:
        raise UserError(f"{where}: {err}") from None


def _choices(name: str, raw: list, where: str) -> Distribution:
    if not raw:
        raise UserError(f"{where}: empty list of choices")
    values = [_value(name, v, where) for v in raw]
    if len(set(map(repr, values))) != len(values):
        raise UserError(f"{where}: repeated choices {raw}")
    return Choice(*values)


def _number(raw: Any, integer: bool, what: str, where: str) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise UserError(f"{where}: {what} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{where}: {what} must be a number, got {raw!r}") from None
    if integer:
        if not value.is_integer():
            raise UserError(f"{where}: {what} must be an integer, got {raw!r}")
        return int(value)
    return value


def _range(name: str, spec: dict, where: str) -> Distribution:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown range key(s) {', '.join(unknown)}; valid: low, high, log, step "
                        f"(or choices)")
    typ, _ = _base_type(_fields()[name])
    if typ not in (int, float):
        raise UserError(f"{where}: a {typ.__name__} hyperparameter takes a list of choices, not a range")
    if "low" not in spec or "high" not in spec:
        raise UserError(f"{where}: a range needs both low and high")
    integer = typ is int
    low = _number(spec["low"], integer, "low", where)
    high = _number(spec["high"], integer, "high", where)
    if not low < high:
        kind = "empty" if low == high else "inverted"
        raise UserError(f"{where}: {kind} range [{low}, {high}] (low must be < high; to fix a value "
                        f"use --set {name}=VALUE)")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, integer, "step", where)
        if step <= 0:
            raise UserError(f"{where}: step must be > 0, got {step}")
        if log:
            raise UserError(f"{where}: step cannot be combined with log")
    for end in (low, high):
        _check_in_config(name, end, where)
    if integer:
        return Int(low, high, log=log, step=step or 1)
    return Float(low, high, log=log, step=step)
