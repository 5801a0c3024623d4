"""Ranges: Optuna distributions, and the plain-data form the option schema and ``--space`` use.

A range is written as data wherever it is declared (a field's ``search`` in the config schema, a
method's ``space``, a ``--space`` YAML file)::

    {low: 1.0e-5, high: 1.0e-4, log: true}   # a numeric range (log, step optional)
    [first, skip]                            # choices (also {choices: [...]})

and :func:`to_distribution` turns it into an Optuna distribution, checking it against the
config's schema (the field's type, choices and bounds) so that a bad range is one clear error.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from trainables.config import DistillConfig, _fields, coerce, field_type
from trainables.errors import UserError

Distribution = BaseDistribution
_RANGE_KEYS = {"low", "high", "log", "step"}


def Float(low: float, high: float, log: bool = False, step: float | None = None) -> FloatDistribution:
    return FloatDistribution(low, high, log=log, step=step)


def Int(low: int, high: int, log: bool = False, step: int = 1) -> IntDistribution:
    return IntDistribution(low, high, log=log, step=step)


def Choice(*choices: Any) -> CategoricalDistribution:
    return CategoricalDistribution(list(choices))


def describe_distribution(dist: Distribution) -> str:
    """``[1e-05, 0.0001] log`` / ``{first, last}`` / ``[1, 4] int``."""
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(map(str, dist.choices)) + "}"
    kind = " log" if dist.log else ""
    if isinstance(dist, IntDistribution):
        kind += " int" + (f" step {dist.step}" if dist.step != 1 else "")
    elif dist.step is not None:
        kind += f" step {dist.step}"
    return f"[{dist.low:g}, {dist.high:g}]{kind}"


def to_distribution(name: str, spec: Any, where: str) -> Distribution:
    """The distribution of hyperparameter ``name`` for a range written as data (an Optuna
    distribution is returned as it is); ``where`` prefixes the errors."""
    if isinstance(spec, BaseDistribution):
        return spec
    if isinstance(spec, dict) and set(spec) == {"choices"}:
        spec = spec["choices"]
    if isinstance(spec, dict):
        return _range(name, spec, where)
    if isinstance(spec, (list, tuple)):
        return _choices(name, list(spec), where)
    raise UserError(f"{where}: expected a range {{low, high}} or a list of choices, got {spec!r}")


def check_value(name: str, raw: Any, where: str) -> Any:
    """``raw`` typed and checked as a value of ``name`` (its type, choices and bounds)."""
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
    values = [check_value(name, v, where) for v in raw]
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
    typ, _ = field_type(name)
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
