"""The embedded search spaces, read from where they are declared.

* A method's space and baseline live with its class (``space`` and ``baseline`` in
  ``trainables/methods/<method>.py``); :data:`SPACES` and :data:`BASELINES` are live views of the
  registered methods' ones (a method registered later is in them).
* A hyperparameter's default range is its ``search`` in the config schema (a categorical one
  searches all its choices); :data:`DEFAULT_RANGES` turns them into Optuna distributions.

The embedded ranges follow the papers' grids, except the student learning rate lambda: [3e-5, 3e-4]
(log; the papers' [1e-5, 1e-4] suits BERT-base students at full budgets, see the README),
teacher learning rate mu in [1e-6, 1e-4] (log), alpha in [0, 1], temperature T in [1, 10], batch
size in {8, 16, 32, 64} (MetaDistil's {32, 64} plus two sizes for small tasks), ReptileDistil's
update strategy in {first, last, skip, both}; PKD's beta in [10, 1000] (log; Sun et al. search
{10, 100, 500, 1000}); Meta-Adaptive-KD's beta (a task-loss weight) in [0, 1].

Conditional by construction: ``teacher_lr`` is searched only where the method's teacher learns
(``Method.teacher_learns``), ``update_strategy`` only for reptile-distil, ``beta`` for pkd and
meta-adaptive-kd, ``pilot_update``/``meta_interval`` for metadistil.

A registered method without its own ``space`` gets :func:`base_space`: ``student_lr``; plus
``alpha`` and ``temperature`` when it uses a teacher; plus ``teacher_lr`` when its teacher learns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from search_spaces.ranges import Distribution, to_distribution
from trainables.config import fields
from trainables.methods import METHODS
from trainables.methods.base import base_space

__all__ = ["BASELINES", "DEFAULT_RANGES", "SPACES", "base_space", "default_range_spec"]


def default_range_spec(f) -> Any:
    """A field's default search range as data: its ``search``, else its choices, else None."""
    spec = f.metadata.get("search")
    if spec is None and f.metadata.get("choices"):
        spec = list(f.metadata["choices"])
    return spec


class _DefaultRanges(Mapping):
    """Hyperparameter -> its default range (an Optuna distribution), from the current schema."""

    def __init__(self):
        self._cache: dict[tuple[str, str], Distribution] = {}

    def _specs(self) -> dict[str, Any]:
        return {f.name: spec for f in fields("hparam") if (spec := default_range_spec(f)) is not None}

    def __getitem__(self, name: str) -> Distribution:
        spec = self._specs()[name]
        key = (name, repr(spec))
        if key not in self._cache:
            self._cache[key] = to_distribution(name, spec, f"the schema's search range of {name}")
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._specs())


class _MethodAttribute(Mapping):
    """Method name -> an attribute of its class, for the registered methods that have one."""

    def __init__(self, read):
        self._read = read

    def _items(self) -> dict[str, Any]:
        return {name: value for name, cls in METHODS.items() if (value := self._read(cls))}

    def __getitem__(self, name: str):
        return self._items()[name]

    def __iter__(self):
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


#: default range of every hyperparameter a space (or a ``--space`` key without a range) may search
DEFAULT_RANGES: Mapping[str, Distribution] = _DefaultRanges()

#: method name -> its own space (a define-by-run function, or a dict name -> range or None);
#: registered methods not in it use :func:`base_space`
SPACES: Mapping[str, Any] = _MethodAttribute(lambda cls: cls.own_space())

#: the first (baseline) trial of a method's search, where it differs from the config defaults
#: (ReptileDistil's Table 1 setting: T = 5, alpha = 0.5, skip-k)
BASELINES: Mapping[str, dict] = _MethodAttribute(lambda cls: dict(cls.baseline))
