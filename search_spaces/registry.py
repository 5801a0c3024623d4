"""Looking up and assembling a method's space (see :mod:`search_spaces`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.defaults import DEFAULT_RANGES, base_space
from search_spaces.overrides import SpaceOverrides
from search_spaces.space import SearchSpace, SpaceFn, Suggest


class DictSpace:
    """A space declared as a dict ``{name: range or None}``: searches each name, in order, over
    the given range (None: its default range). Picklable, as Ray saves the searcher."""

    def __init__(self, names: Mapping[str, Any]):
        self.names = dict(names)

    def __call__(self, s: Suggest) -> None:
        for name, default in self.names.items():
            s(name, default)

    def __eq__(self, other) -> bool:
        return isinstance(other, DictSpace) and other.names == self.names

    def __repr__(self) -> str:
        return f"DictSpace({self.names!r})"


def space_function(method: str) -> SpaceFn:
    """The define-by-run function of a registered method: its class's own ``space`` (a dict made
    into a :class:`DictSpace`), or :func:`base_space` if it has none."""
    from trainables.methods import get_method

    declared = get_method(method).own_space()  # unknown method -> UserError listing the registry
    if declared is None:
        return base_space
    return DictSpace(declared) if isinstance(declared, Mapping) else declared


def build_space(method: str, overrides: SpaceOverrides | None = None,
                fixed: dict[str, Any] | None = None) -> SearchSpace:
    """The sweep's space for ``method``: its function, the ``--space`` overrides and the
    ``--set`` values (which win over both ranges and scalars of the file)."""
    from trainables.methods import get_method

    overrides = overrides or SpaceOverrides()
    merged_fixed = {**overrides.fixed, **(fixed or {})}
    ranges = {k: v for k, v in overrides.ranges.items() if k not in merged_fixed}
    return SearchSpace(method, space_function(method), get_method(method), ranges=ranges,
                       fixed=merged_fixed, defaults=DEFAULT_RANGES)


def describe_space(method: str, overrides: SpaceOverrides | None = None,
                   fixed: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(hyperparameter, range)`` rows of a method's space, for ``--list``."""
    return build_space(method, overrides, fixed).describe()
