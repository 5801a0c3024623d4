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
    """Ray Tune's synchronous PBT with two changes.

    * A trial's last evaluation is no perturbation point: the trial goes on to its final report
      instead of pausing (it would restart only to report, or, cloned, report another trial's
      result under a config that never trained). The population trains in lockstep, so every
      trial reaches its last evaluation at the same time and none waits there.
    * A resumed sweep does not hang. Ray restores the scheduler as it was pickled at the start
      (its next synchronisation time at the first perturbation interval) while the trials resume
      from later evaluations; after the first synchronisation Ray sets the next one to the
      trials' latest time, which no paused trial is below, so none is ever run again (Ray's
      PBT in synchronous mode, ray-project/ray PR 48616, not merged). The next synchronisation
      is kept one perturbation interval after the latest time the population reached.
    """

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(LAST_EVALUATION):
            return self.CONTINUE
        before = self._next_perturbation_sync
        decision = super().on_trial_result(tune_controller, trial, result)
        if self._next_perturbation_sync != before:  # the population synchronised just now
            latest = max(state.last_train_time for state in self._trial_state.values())
            if self._next_perturbation_sync <= latest:
                self._next_perturbation_sync = latest + self._perturbation_interval
        return decision


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
