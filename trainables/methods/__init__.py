"""The method registry: adding a method is one file in this package and one line here."""

from __future__ import annotations

from trainables.errors import choice_error
from trainables.methods.base import Method
from trainables.methods.finetune import Finetune
from trainables.methods.kd import KD
from trainables.methods.meta_adaptive_kd import MetaAdaptiveKD
from trainables.methods.metadistil import MetaDistil
from trainables.methods.pkd import PatientKD
from trainables.methods.reptile_distil import ReptileDistil

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Finetune,
        KD,
        PatientKD,
        MetaDistil,
        MetaAdaptiveKD,
        ReptileDistil,
    )
}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise choice_error("method", name, sorted(METHODS)) from None
