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

from search_spaces.ranges import Distribution, check_value, to_distribution
from trainables.config import HPARAMS
from trainables.errors import UserError


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
        if isinstance(spec, (dict, list)):
            out.ranges[name] = to_distribution(name, spec, where)
        else:
            out.fixed[name] = check_value(name, spec, where)
    return out
