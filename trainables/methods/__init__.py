"""The method registry: adding a method is one file in this package and one line here.

The file defines the class with its own options, search space and baseline (see
:mod:`trainables.methods.base`); :func:`register` adds the class under its ``name`` and its options
to the config (:class:`trainables.config.DistillConfig`), so the CLIs, ``--set``, the sweeps and
the docs know them. A method defined elsewhere (a plugin, a test) is registered the same way; a
sweep's Ray workers know it only if they register it too (importing this package does, for the
methods listed below), so a method meant for sweeps gets its line here.
"""

from __future__ import annotations

from trainables import schema
from trainables.errors import choice_error
from trainables.methods.base import Method
from trainables.methods.finetune import Finetune
from trainables.methods.kd import KD
from trainables.methods.meta_adaptive_kd import MetaAdaptiveKD
from trainables.methods.metadistil import MetaDistil
from trainables.methods.pkd import PatientKD
from trainables.methods.reptile_distil import ReptileDistil

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Register a method class (usable as a class decorator): its name, and its options (those
    of its ``Options`` and its bases') as config fields."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if METHODS.get(cls.name, cls) is not cls:
        raise ValueError(f"method name {cls.name!r} is taken by {METHODS[cls.name].__name__}")
    for options in cls.option_classes():
        schema.declare(_declaring_class(cls, options), options)
    METHODS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a registered method and the options no other registered method declares."""
    cls = METHODS.pop(name)
    still = {o for other in METHODS.values() for o in other.option_classes()}
    for options in cls.option_classes():
        if options not in still:
            schema.retract(_declaring_class(cls, options))


def _declaring_class(cls: type, options: type) -> type:
    return next(c for c in cls.__mro__ if vars(c).get("Options") is options)


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise choice_error("method", name, sorted(METHODS)) from None


def owners(option: str) -> list[str]:
    """The registered methods that declare ``option`` (none: a core option every method may read)."""
    return [name for name, cls in METHODS.items()
            if any(option in o.__dataclass_fields__ for o in cls.option_classes())]


for _method in (
    Finetune,
    KD,
    PatientKD,
    MetaDistil,
    MetaAdaptiveKD,
    ReptileDistil,
):
    register(_method)
