"""Search spaces: one Optuna define-by-run function per method, a registry, and YAML overrides.

    from search_spaces import build_space
    space = build_space("metadistil", overrides=load_space_file("space.yaml"), fixed={"alpha": 0.5})
    OptunaSearch(space=space, metric="eval_score", mode="max")

Precedence for one hyperparameter: ``--set`` (fixed) > ``--space FILE`` > the method's space >
:data:`~search_spaces.defaults.DEFAULT_RANGES` (the ``search`` ranges of the config schema). A
method's space is declared with its class (``space`` in ``trainables/methods/<method>.py``, ranges
as plain data); a registered method without one searches :func:`~search_spaces.defaults.base_space`.
"""

from __future__ import annotations

from search_spaces.defaults import DEFAULT_RANGES, SPACES, base_space
from search_spaces.overrides import SpaceOverrides, load_space_file, parse_overrides
from search_spaces.registry import build_space, describe_space, space_function
from search_spaces.ranges import Choice, Float, Int, describe_distribution, to_distribution
from search_spaces.space import SearchSpace, SpaceFn, Suggest

__all__ = [
    "DEFAULT_RANGES", "SPACES", "base_space", "space_function", "build_space", "describe_space",
    "SpaceOverrides", "load_space_file", "parse_overrides", "SearchSpace", "Suggest",
    "SpaceFn", "Float", "Int", "Choice", "describe_distribution", "to_distribution",
]
