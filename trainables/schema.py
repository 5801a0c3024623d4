"""The option schema: how an option is declared, typed, bounded and checked.

Every option of a run is a dataclass field declared with :func:`hparam` or :func:`setup`; its
metadata is everything the rest of the project generates from it:

* ``kind``: ``hparam`` (a hyperparameter: ``--set key=value``, searchable by a sweep, an MLflow
  param) or ``setup`` (what to train on and with which models and resources);
* ``group``: where the option is shown (CLI argument groups, the README's option table), one of
  :data:`GROUPS`;
* ``cli``: whether the entry points have a ``--kebab-name`` option for it (hyperparameters are
  set with ``--set``; the budget ones, such as ``epochs``, have an option too);
* ``help``, ``choices`` (the valid values of a categorical option), ``bounds`` (its valid interval,
  ``"(0, 1]"``, ``"[1, inf)"``), ``search`` (a hyperparameter's default search range, in the
  ``--space`` file's format: ``{low: .., high: .., log: true}`` or a list of choices; a categorical
  hyperparameter searches all its choices by default).

The core options are :class:`trainables.config.DistillConfig`'s fields; a method declares its own
in its file (an ``Options`` dataclass next to the class) and the registry adds them to the config
(:func:`declare`), so the config stays one flat dataclass of every option. This module imports
nothing of the project but :mod:`trainables.errors`: the method files use it without the config.

Why not ``transformers.HfArgumentParser``: it makes every dataclass default the CLI default, while
our options default to "unset" (the config's, or the sweep's, own default) and sit in groups.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from trainables.errors import UserError

#: option groups, in the order the CLIs and the README show them
GROUPS = {
    "method": "method and hyperparameters",
    "data": "data",
    "models": "models",
    "training": "training budget and selection",
    "resources": "resources",
    "tracking": "tracking and output",
}
KINDS = ("hparam", "setup")

#: how modules below the config (the methods and what they use) annotate a
#: :class:`trainables.config.DistillConfig`: the config imports the method registry, not the reverse
Config = Any


def _option(kind: str, default, *, help: str, group: str, choices, bounds, search, cli: bool,
            cli_default: bool) -> dataclasses.Field:
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; valid: {', '.join(GROUPS)}")
    if bounds is not None:
        parse_bounds(bounds)  # a typo in a declaration fails at import
    return dataclasses.field(default=default, metadata={
        "kind": kind, "group": group, "cli": cli, "help": help, "bounds": bounds,
        "choices": tuple(choices) if choices is not None else None, "search": search,
        "cli_default": cli_default})


def hparam(default, help: str = "", *, choices=None, bounds: str | None = None, search=None,
           group: str = "method", cli: bool = False) -> Any:
    """A hyperparameter field (``--set``; searchable; an MLflow param). ``bounds``: its valid
    interval (None is allowed where the default is None); ``search``: its default search range."""
    return _option("hparam", default, help=help, group=group, choices=choices, bounds=bounds,
                   search=search, cli=cli, cli_default=False)


def setup(default, help: str = "", *, group: str, choices=None, bounds: str | None = None,
          cli: bool = True, cli_default: bool = False) -> Any:
    """A setup field (task, models, resources ...), set by its own CLI option. ``cli_default``:
    the CLI option's default is the field's (otherwise unset, i.e. the config's)."""
    return _option("setup", default, help=help, group=group, choices=choices, bounds=bounds,
                   search=None, cli=cli, cli_default=cli_default)


# ---- bounds --------------------------------------------------------------------------------------

_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])$")


def parse_bounds(bounds: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` -> ``(low, high, low_open, high_open)`` = ``(0.0, 1.0, True, False)``."""
    m = _INTERVAL.match(bounds)
    if m is None:
        raise ValueError(f"bad bounds {bounds!r}; expected an interval such as '[0, 1]' or '(0, inf)'")
    return float(m.group(2)), float(m.group(3)), m.group(1) == "(", m.group(4) == ")"


def bounds_rule(bounds: str) -> str:
    """``"[1, inf)"`` -> ``">= 1"``, ``"(0, 1]"`` -> ``"in (0, 1]"``."""
    low, high, low_open, _ = parse_bounds(bounds)
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {bounds}"


def check_bounds(name: str, value: float, bounds: str) -> None:
    """A UserError unless ``value`` lies in the interval ``bounds`` (``"(0, 1]"``, ``"[0, inf)"``)."""
    low, high, low_open, high_open = parse_bounds(bounds)
    if (low < value if low_open else low <= value) and (value < high if high_open else value <= high):
        return
    raise UserError(f"{name} must be {bounds_rule(bounds)}, got {value}")


# ---- types and coercion --------------------------------------------------------------------------

def base_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a resolved annotation (``float | None`` -> ``(float, True)``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce_value(name: str, typ: type, optional: bool, choices, value: Any) -> Any:
    """Convert ``value`` (possibly a CLI string) to ``typ``, or raise a UserError."""
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null", ""}):
        if optional:
            return None
        raise UserError(f"{name} may not be empty")
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                out = low in _TRUE
            elif isinstance(value, (bool, int)) and value in (0, 1):
                out = bool(value)
            else:
                raise ValueError
        elif typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value) if not isinstance(value, str) else int(value.strip())
        elif typ is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            out = str(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not a valid {typ.__name__}"
                        + (" (or none)" if optional else "")) from None
    if choices and out not in choices:
        raise UserError(f"{name}={out!r} is not one of: {', '.join(map(str, choices))}")
    return out


# ---- options declared outside the config (methods) ------------------------------------------------

@dataclasses.dataclass
class Declared:
    """An option a method (or a mixin of methods) declares: its field, type and declaring class."""

    field: dataclasses.Field
    type: Any
    owner: type


_DECLARED: dict[str, Declared] = {}
_BOUND: list[Any] = []  # the config class(es) the declared options are added to


def declare(owner: type, options: type) -> None:
    """Add the fields of the dataclass ``options`` (declared by class ``owner``) to the config.
    Declaring the same options class again is a no-op; another option of an existing name is an
    error."""
    hints = typing.get_type_hints(options)
    changed = False
    for f in dataclasses.fields(options):
        known = _DECLARED.get(f.name)
        if known is not None:
            if known.owner is owner or known.field.metadata is f.metadata:
                continue
            raise ValueError(f"option {f.name!r} of {owner.__name__} is already declared by {known.owner.__name__}")
        for bound in _BOUND:
            if f.name in {c.name for c, _ in bound.__dict__.get("__core_fields__", ())}:
                raise ValueError(f"option {f.name!r} of {owner.__name__} is already a core config field")
        if "kind" not in f.metadata:
            raise ValueError(f"option {f.name!r} of {owner.__name__}: declare it with hparam() or setup()")
        _DECLARED[f.name] = Declared(f, hints[f.name], owner)
        changed = True
    if changed:
        _rebuild_all()


def retract(owner: type) -> None:
    """Remove the options ``owner`` declared (undoing :func:`declare`, e.g. in a test)."""
    for name in [n for n, d in _DECLARED.items() if d.owner is owner]:
        del _DECLARED[name]
    _rebuild_all()


def declared() -> dict[str, Declared]:
    return dict(_DECLARED)


def bind(cls: type) -> None:
    """Make the dataclass ``cls`` (the config) carry every declared option, now and later."""
    _BOUND.append(cls)
    rebuild(cls)


def _rebuild_all() -> None:
    for cls in _BOUND:
        rebuild(cls)


def _copy(f: dataclasses.Field) -> dataclasses.Field:
    return dataclasses.field(default=f.default, default_factory=f.default_factory, init=f.init, repr=f.repr,
                             hash=f.hash, compare=f.compare, metadata=f.metadata, kw_only=f.kw_only)


_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__", "__match_args__", "__dataclass_fields__",
              "__dataclass_params__")


def rebuild(cls: type) -> None:
    """Regenerate the dataclass ``cls`` in place with its core fields followed by the declared
    options (the class object stays the same, so every import of it sees the new fields)."""
    core = cls.__dict__.get("__core_fields__")
    if core is None:  # the first time: remember the fields of the class body
        hints = typing.get_type_hints(cls)
        core = [(f, hints[f.name]) for f in dataclasses.fields(cls)]
        cls.__core_fields__ = core
    annotations = {}
    for f, hint in core:
        annotations[f.name] = hint
        setattr(cls, f.name, _copy(f))
    for name in [n for n in list(vars(cls)) if n in _DECLARED or n in cls.__dict__.get("__option_names__", ())]:
        if name not in annotations:
            delattr(cls, name)
    for name, d in _DECLARED.items():
        annotations[name] = d.type
        setattr(cls, name, _copy(d.field))
    cls.__option_names__ = tuple(_DECLARED)
    cls.__annotations__ = annotations
    for name in _GENERATED:
        if name in cls.__dict__:
            delattr(cls, name)
    dataclasses.dataclass(cls)
