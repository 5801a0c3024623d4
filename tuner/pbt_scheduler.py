"""The Ray side of population-based training (``--scheduler pbt``, :mod:`tuner.pbt` holds the
settings, the perturbed hyperparameters and the schedules): Ray Tune's synchronous
``PopulationBasedTraining`` with the project's one change (:class:`DistillPBT`), built from the
perturbed hyperparameters' search ranges."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import PopulationBasedTraining

from trainables.trainable import EVALUATION, LAST_EVALUATION
from tuner.pbt import ClipToRanges


def _domain(dist):
    """A Ray Tune domain (or a list of choices) for an Optuna distribution."""
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from ray import tune

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return tune.lograndint(dist.low, dist.high + 1) if dist.log else tune.randint(dist.low, dist.high + 1)
    return tune.loguniform(dist.low, dist.high) if dist.log else tune.uniform(dist.low, dist.high)


class DistillPBT(PopulationBasedTraining):
    """Ray Tune's PBT, except that a trial's last evaluation is no perturbation point: the trial
    goes on to its final report instead of pausing (it would restart only to report, or, cloned,
    report another trial's result under a config that never trained). The population trains in
    lockstep, so every trial reaches its last evaluation at the same time and none waits there."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(LAST_EVALUATION):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def scheduler(spec, mutations: dict[str, Any]) -> DistillPBT:
    """Ray Tune's synchronous PBT on the evaluation count."""
    from optuna.distributions import CategoricalDistribution

    ranges = {n: (d.low, d.high) for n, d in mutations.items() if not isinstance(d, CategoricalDistribution)}
    # require_attrs=False: the report after training has no evaluation count (it is no perturbation point)
    return DistillPBT(
        time_attr=EVALUATION, perturbation_interval=spec.perturbation_interval,
        hyperparam_mutations={n: _domain(d) for n, d in mutations.items()},
        quantile_fraction=spec.quantile_fraction, resample_probability=spec.resample_probability,
        custom_explore_fn=ClipToRanges(ranges), require_attrs=False, synch=True)
