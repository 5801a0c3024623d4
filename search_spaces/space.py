"""The machinery behind a method's search space.

A method's space is a plain define-by-run function ``space(s)`` that calls ``s("name")`` for each
hyperparameter it searches (in any order, under any condition). ``s`` is a :class:`Suggest`: it
holds the Optuna trial and the method class (``s.method.teacher_learns`` ...), and for each name
it returns

* the fixed value, when the user fixed the name (``--set name=value`` or a scalar in ``--space``);
* otherwise ``trial.suggest_*(name, ...)`` over the name's range: the user's range from
  ``--space`` if given, else the default the space function passes (``s("beta", {"low": 10,
  "high": 1000, "log": True})``, the ``--space`` file's format, or an Optuna distribution), else
  :data:`search_spaces.defaults.DEFAULT_RANGES` (the field's ``search`` in the config schema).

:class:`SearchSpace` binds a space function to the overrides and fixed values of one sweep; it is
the callable handed to :class:`ray.tune.search.optuna.OptunaSearch` (and is picklable, so Ray can
save the searcher with the experiment). ``--space`` keys that the method's function does not
search are searched too, after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search_spaces.ranges import Choice, Distribution, Float, Int, describe_distribution, to_distribution
from trainables.errors import UserError

__all__ = ["Choice", "Distribution", "Float", "Int", "SearchSpace", "SpaceFn", "Suggest", "describe_distribution",
           "suggest_from"]

SpaceFn = Callable[["Suggest"], None]


def suggest_from(trial, name: str, dist: Distribution) -> Any:
    """``trial.suggest_*`` for ``dist`` (the public calls, which Ray's OptunaSearch records)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution for {name}: {dist!r}")


class Suggest:
    """What a space function calls: ``s(name[, default_range])`` -> the trial's value of ``name``."""

    def __init__(self, trial, method_cls: type, ranges: dict[str, Distribution],
                 fixed: dict[str, Any], defaults: dict[str, Distribution]):
        self.trial = trial
        self.method = method_cls
        self._ranges, self._fixed, self._defaults = ranges, fixed, defaults
        self.seen: list[str] = []

    def range_of(self, name: str, default=None) -> Distribution:
        if name in self._ranges:
            return self._ranges[name]
        if default is not None:
            return to_distribution(name, default, f"the {self.method.name} space: {name}")
        try:
            return self._defaults[name]
        except KeyError:
            raise UserError(f"no default range for {name!r}; give one in --space") from None

    def __call__(self, name: str, default=None) -> Any:
        if name not in self.seen:
            self.seen.append(name)
        if name in self._fixed:
            return self._fixed[name]
        return suggest_from(self.trial, name, self.range_of(name, default))


class SearchSpace:
    """One sweep's space: a method's space function + ``--space`` ranges + ``--set`` values.

    Calling it with an Optuna trial samples the searched names (Optuna records them) and returns
    the fixed ones (and any dict the space function returns), which Ray merges into the trial's
    config.
    """

    def __init__(self, method: str, fn: SpaceFn, method_cls: type, *,
                 ranges: dict[str, Distribution] | None = None, fixed: dict[str, Any] | None = None,
                 defaults: dict[str, Distribution] | None = None):
        self.method, self.fn, self.method_cls = method, fn, method_cls
        self.ranges = dict(ranges or {})
        self.fixed = dict(fixed or {})
        self.defaults = dict(defaults or {})

    def __call__(self, trial) -> dict[str, Any]:
        s = Suggest(trial, self.method_cls, self.ranges, self.fixed, self.defaults)
        extra = self.fn(s)  # a function may return config values of its own (search_spaces.students)
        for name in self.ranges:  # --space names the method's function does not search
            if name not in s.seen:
                s(name)
        return {**(extra if isinstance(extra, dict) else {}), **self.fixed}

    def searched(self) -> dict[str, Distribution]:
        """The names this space searches and their ranges (conditional branches taken with the
        config defaults), for ``--list`` and the sweep record."""
        recorder = _Recorder()
        s = Suggest(recorder, self.method_cls, self.ranges, self.fixed, self.defaults)
        self.fn(s)
        for name in self.ranges:
            if name not in s.seen:
                s(name)
        return dict(recorder.distributions)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, range or fixed value)`` rows, searched names first."""
        rows = [(name, describe_distribution(d)) for name, d in self.searched().items()]
        rows += [(name, f"= {value!r} (fixed)") for name, value in self.fixed.items()]
        return rows


class _Recorder:
    """A stand-in Optuna trial that records what is suggested and answers with config defaults."""

    def __init__(self):
        from trainables.config import DistillConfig

        self.distributions: dict[str, Distribution] = {}
        self._defaults = DistillConfig().to_dict()

    def _answer(self, name: str, dist: Distribution) -> Any:
        self.distributions[name] = dist
        default = self._defaults.get(name)
        if isinstance(dist, CategoricalDistribution):
            return default if default in dist.choices else dist.choices[0]
        if default is None or not dist.low <= default <= dist.high:
            return dist.low
        return default

    def suggest_categorical(self, name, choices):
        return self._answer(name, CategoricalDistribution(choices))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._answer(name, IntDistribution(low, high, step=step, log=log))

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._answer(name, FloatDistribution(low, high, step=step, log=log))
