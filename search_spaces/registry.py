"""Looking up and assembling a method's space (see :mod:`search_spaces`)."""

from __future__ import annotations

from typing import Any

from search_spaces.defaults import DEFAULT_RANGES, SPACES, base_space
from search_spaces.overrides import SpaceOverrides
from search_spaces.space import SearchSpace, SpaceFn


def space_function(method: str) -> SpaceFn:
    """The define-by-run function of a registered method (:func:`base_space` if it has none)."""
    from trainables.methods import get_method

    get_method(method)  # unknown method -> UserError listing the registry
    return SPACES.get(method, base_space)


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
