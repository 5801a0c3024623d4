"""Which methods a multi-method sweep searches: ``--methods kd,metadistil,...`` or ``--method auto``.

A multi-method sweep's :class:`~tuner.spec.SweepSpec` has ``methods`` (the list) and the label
:data:`MULTI` as its ``method``. ``auto`` means every registered method that *fits* the sweep's
teacher(s) and student: a method fits unless its class says why not
(:meth:`trainables.methods.base.Method.unfit`, given the pair's :class:`~trainables.methods.base.Pairing`):

* ``pkd`` needs an intermediate layer map: a student of at least 2 layers, each teacher's depth a
  whole multiple of the student's, and the teacher's architecture (model type and hidden size);
* ``reptile-distil`` moves the teacher toward the student on mapped parameters: the same
  architecture and whole-multiple depths;
* every other registered method (finetune, kd, metadistil, meta-adaptive-kd) fits any pair.

The default student (the teacher's own first ``student_layers`` layers) always has the teacher's
architecture; a ``--student`` model has it when its model type and hidden size are the teacher's.
Depths and architectures are read from the models' configs (no weights are loaded). Where
``student_layers`` is searched, the base value is the one checked.
"""

from __future__ import annotations

import sys

from trainables.errors import UserError

#: the ``method`` label of a multi-method sweep (its trials carry their own method)
MULTI = "multi"
#: ``--method auto``: every registered method that fits the teacher/student pair
AUTO = "auto"


def split_methods(text: str | None) -> list[str] | None:
    """``"kd, pkd"`` -> ``["kd", "pkd"]`` (None for an empty value)."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    return names or None


def check_methods(methods: list[str]) -> list[str]:
    """The named methods, each registered and named once (``auto`` alone is resolved later)."""
    from trainables.methods import get_method

    if methods == [AUTO]:
        return methods
    if len(methods) < 2:
        raise UserError(f"--methods needs at least two methods (got {', '.join(methods) or 'none'}); "
                        "for one method use --method")
    seen = set()
    for name in methods:
        get_method(name)  # an unknown name: a UserError listing the registered methods
        if name in seen:
            raise UserError(f"--methods names {name!r} twice")
        seen.add(name)
    return list(methods)


def _config_of(source: str):
    from transformers import AutoConfig

    from trainables.models import resolve_model

    try:
        return AutoConfig.from_pretrained(resolve_model(source))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the model config of {source!r}: {err}") from None


def _architecture(config) -> tuple:
    return getattr(config, "model_type", None), getattr(config, "hidden_size", None)


def pairing_of(cfg):
    """The :class:`~trainables.methods.base.Pairing` of a config's teacher(s) and student."""
    from trainables.methods.base import Pairing

    if cfg.teachers:
        sources = [t.strip() for t in cfg.teachers.split(",") if t.strip()]
    else:
        sources = [cfg.teacher_checkpoint or cfg.teacher]
    teachers = [_config_of(s) for s in sources]
    depths = tuple(getattr(t, "num_hidden_layers", None) for t in teachers)
    if cfg.student:
        student = _config_of(cfg.student)
        same = all(_architecture(t) == _architecture(student) for t in teachers)
        return Pairing(depths, getattr(student, "num_hidden_layers", None), same)
    same = all(_architecture(t) == _architecture(teachers[0]) for t in teachers)
    return Pairing(depths, cfg.student_layers, same)


def fitting(cfg) -> tuple[list[str], dict[str, str]]:
    """The registered methods that fit ``cfg``'s teacher/student pair (registry order) and, for
    the others, why not."""
    from trainables.methods import METHODS

    pairing = pairing_of(cfg)
    fit, unfit = [], {}
    for name, cls in METHODS.items():
        reason = cls.unfit(pairing)
        if reason:
            unfit[name] = reason
        else:
            fit.append(name)
    return fit, unfit


def resolve(methods: list[str], cfg) -> list[str]:
    """The sweep's methods: ``auto`` resolved against ``cfg``. A method named explicitly that does
    not fit is kept (the user asked for it: pkd on a 1-layer student runs, as plain KD), with a
    warning on stderr saying why it does not fit."""
    from trainables.methods import get_method

    if methods == [AUTO]:
        fit, unfit = fitting(cfg)
        if len(fit) < 2:
            raise UserError(f"--method auto: only {', '.join(fit) or 'no method'} fits this teacher/student "
                            f"pair ({'; '.join(f'{k}: {v}' for k, v in unfit.items())})")
        return fit
    pairing = pairing_of(cfg)
    for name in methods:
        reason = get_method(name).unfit(pairing)
        if reason:
            print(f"warning: method {name} does not fit this teacher/student pair ({reason}); "
                  "its trials may fail or degenerate", file=sys.stderr, flush=True)
    return list(methods)


def check_search(spec, methods: list[str]) -> list[str]:
    """A multi-method sweep is an Optuna search with a trial per method at least (the methods'
    baselines come first): no grid, ``num_samples >= len(methods)``."""
    if spec.grid:
        raise UserError("a multi-method sweep (--methods, --method auto) is an Optuna search; --grid is for one method")
    if spec.num_samples < len(methods):
        raise UserError(f"--num-samples {spec.num_samples} is fewer than the {len(methods)} methods searched "
                        f"({', '.join(methods)}): every method's baseline is a trial")
    return methods
