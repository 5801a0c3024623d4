"""The joint search space of a multi-method sweep: the method is a categorical hyperparameter and
each method's own space follows it (define-by-run, conditional by construction).

    space = build_multi_space(["kd", "metadistil"], overrides, fixed)
    OptunaSearch(space=space, points_to_evaluate=space.default_points(base), ...)

For an Optuna trial, :class:`MultiSpace` suggests ``method`` (a categorical over the methods),
then runs that method's :class:`~search_spaces.space.SearchSpace`. Inside Optuna each method's
hyperparameters are *namespaced* (``kd.alpha``, ``metadistil.alpha``): every method gets its own
TPE model of its own parameters (the optimal alpha of KD says nothing of MetaDistil's), and two
methods may search one name over ranges Optuna could not share (pkd's ``beta`` is log-scaled in
[10, 1000], meta-adaptive-kd's is linear in [0, 1]). The trial's *config* (what Ray hands the
trainable, MLflow records, the summary shows) uses the plain names plus ``method``.

``--set`` values are fixed for every method; a ``--space`` range applies to the methods that
read that hyperparameter (:meth:`~trainables.methods.base.Method.hyperparameters`). The first
trials are the methods' baselines, one per method in the order given
(:meth:`MultiSpace.default_points`: each method's :func:`baseline_point`).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import CategoricalDistribution

from search_spaces.overrides import SpaceOverrides
from search_spaces.ranges import describe_distribution
from search_spaces.registry import build_space
from search_spaces.space import Distribution, SearchSpace

METHOD_PARAM = "method"
SEPARATOR = "."


def namespaced(method: str, name: str) -> str:
    """The Optuna parameter name of a method's hyperparameter (``kd.alpha``)."""
    return f"{method}{SEPARATOR}{name}"


class _Namespaced:
    """An Optuna trial seen by one method's space: its names prefixed with the method; the plain
    names' values kept in :attr:`values` (the trial's config)."""

    def __init__(self, trial, method: str):
        self.trial, self.method = trial, method
        self.values: dict[str, Any] = {}

    def _keep(self, name: str, value: Any) -> Any:
        self.values[name] = value
        return value

    def suggest_categorical(self, name, choices):
        return self._keep(name, self.trial.suggest_categorical(namespaced(self.method, name), choices))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._keep(name, self.trial.suggest_int(namespaced(self.method, name), low, high, step=step, log=log))

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._keep(name, self.trial.suggest_float(namespaced(self.method, name), low, high, step=step,
                                                         log=log))


class MultiSpace:
    """The define-by-run function of a multi-method sweep (picklable: Ray saves the searcher)."""

    def __init__(self, spaces: dict[str, SearchSpace]):
        self.spaces = dict(spaces)
        self.methods = list(self.spaces)
        self.fixed = next(iter(self.spaces.values())).fixed if self.spaces else {}

    def __call__(self, trial) -> dict[str, Any]:
        # ``method`` goes through the trial Ray hands in (it records it in the config); the
        # methods' own names go straight to the Optuna trial under it (Ray's suggest captor keeps
        # it as ``ot_trial``), so that the config holds only the plain names returned here
        method = trial.suggest_categorical(METHOD_PARAM, self.methods)
        inner = _Namespaced(getattr(trial, "ot_trial", trial), method)
        fixed = self.spaces[method](inner)
        return {**inner.values, **fixed, METHOD_PARAM: method}

    def searched_by_method(self) -> dict[str, dict[str, Distribution]]:
        return {m: space.searched() for m, space in self.spaces.items()}

    def searched(self) -> dict[str, Distribution]:
        """``method`` and every name some method searches (plain names; where two methods search
        one name over different ranges, the first method's), for the checks that ask whether a
        name is searched at all."""
        out: dict[str, Distribution] = {METHOD_PARAM: CategoricalDistribution(self.methods)}
        for dists in self.searched_by_method().values():
            for name, dist in dists.items():
                out.setdefault(name, dist)
        return out

    def describe(self) -> list[tuple[str, str]]:
        """``(name, range)`` rows: ``method``, then each method's (``kd.alpha``), then the fixed."""
        rows = [(METHOD_PARAM, describe_distribution(CategoricalDistribution(self.methods)))]
        for method, dists in self.searched_by_method().items():
            rows += [(namespaced(method, name), describe_distribution(d)) for name, d in dists.items()]
        rows += [(name, f"= {value!r} (fixed)") for name, value in self.fixed.items()]
        return rows

    def default_points(self, base: dict[str, Any]) -> list[dict[str, Any]]:
        """One baseline trial per method (Optuna's names), in the order of :attr:`methods`."""
        points = []
        for method, space in self.spaces.items():
            point = baseline_point(space, method, base)
            points.append({METHOD_PARAM: method, **{namespaced(method, k): v for k, v in point.items()}})
        return points


def baseline_point(space: SearchSpace, method: str, base: dict[str, Any]) -> dict[str, Any]:
    """The base config's value of each hyperparameter ``space`` searches that lies in its range
    (or the method's paper setting, :data:`search_spaces.defaults.BASELINES`)."""
    from search_spaces.defaults import BASELINES

    baseline = BASELINES.get(method, {})
    point = {}
    for name, dist in space.searched().items():
        value = baseline.get(name, base.get(name))
        if value is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if value in dist.choices:
                point[name] = value
        elif dist.low <= value <= dist.high:
            point[name] = value
    return point


def build_multi_space(methods: list[str], overrides: SpaceOverrides | None = None,
                      fixed: dict[str, Any] | None = None) -> MultiSpace:
    """The joint space of ``methods``: each method's :func:`~search_spaces.registry.build_space`,
    with the ``--space`` ranges of the hyperparameters it reads."""
    from trainables.methods import get_method

    overrides = overrides or SpaceOverrides()
    spaces = {}
    for method in methods:
        reads = get_method(method).hyperparameters()
        own = SpaceOverrides(ranges={k: v for k, v in overrides.ranges.items() if k in reads},
                             fixed=dict(overrides.fixed))
        spaces[method] = build_space(method, own, fixed)
    return MultiSpace(spaces)
