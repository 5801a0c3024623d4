"""Ray Tune's ``Tuner`` of a prepared sweep, and running it: the trainable (wrapped with the trial
resources), the MLflow trial logger, the ``RunConfig`` (checkpoints, failures), the scheduler (ASHA,
FIFO or PBT: :mod:`tuner.pbt`) and the searcher (Optuna TPE behind a ``ConcurrencyLimiter``, a grid,
or PBT's Optuna-drawn population); :func:`fit` runs
a new Tuner or restores and continues an interrupted one.
"""

from __future__ import annotations

import os
from typing import Any

from tuner import objectives, pbt, tracking
from tuner.spec import PreparedSweep, SweepSpec

METRIC = "eval_score"  # what every sweep maximises: the task's primary dev metric


def trial_dirname(trial) -> str:
    """Short trial folders (``<method>_<trial id>``): the config is in MLflow and params.json."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def _tune_parts(prep: PreparedSweep, spec: SweepSpec, parent_run_id: str, experiment_id: str,
                tags: dict[str, str], sweep_name: str | None = None):
    from ray import tune

    from trainables.trainable import make_trainable
    from tuner.console import SweepReporter

    pbt_run = spec.scheduler_name == "pbt"
    trainable = make_trainable(spec.method, prep.base, threads=max(1, int(spec.cpus_per_trial)),
                               checkpoint_every=spec.checkpoint_every, system_metrics=spec.system_metrics,
                               report_hparams=tuple(prep.space.searched()) if pbt_run else ())
    trainable = tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    logger = tracking.MlflowTrialLogger(
        prep.tracking_uri, experiment_id, parent_run_id, sweep_name or spec.name, spec.method,
        str(prep.base["task"]), prep.base, tags={**spec.tags, **tags}, ray_experiment=spec.name)
    run_config = tune.RunConfig(
        name=spec.name, storage_path=spec.storage_path, callbacks=[logger], verbose=spec.verbose,
        # the project's console lines (tuner.console; Tune's classic reporting path, set by run_sweep)
        progress_reporter=SweepReporter(METRIC) if spec.verbose else None,
        # Ray deletes a trial's oldest checkpoint as soon as a newer one exceeds num_to_keep, but
        # saves (and syncs to the storage path) the experiment state that --resume reads only
        # every num_to_keep checkpoints: a driver killed in between resumed from a deleted
        # checkpoint. The state is saved and synced at every controller step instead (see fit:
        # TUNE_GLOBAL_CHECKPOINT_S=0, sync_period 0), so it is at most a step or two behind, and
        # three checkpoints are kept
        checkpoint_config=tune.CheckpointConfig(num_to_keep=pbt.checkpoints_to_keep(spec) if pbt_run else 3),
        sync_config=tune.SyncConfig(sync_period=0),
        # a trial whose worker dies (SIGKILL, out of memory) or that raises is retried from its
        # last checkpoint up to max_failures times, then ERROR; the sweep goes on
        failure_config=tune.FailureConfig(max_failures=spec.max_failures, fail_fast=False))
    scheduler = None
    if spec.scheduler_name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        from tuner.budget import asha_axis

        time_attr, max_t = asha_axis(spec.budget)  # evaluations (equal steps) or training seconds
        scheduler = ASHAScheduler(time_attr=time_attr, max_t=max_t, grace_period=spec.grace_period,
                                  reduction_factor=spec.reduction_factor)
    elif pbt_run:
        from tuner.pbt_scheduler import scheduler as pbt_scheduler

        scheduler = pbt_scheduler(spec, pbt.mutated(spec.method, prep.space))
    return trainable, run_config, scheduler


def _new_tuner(prep: PreparedSweep, spec: SweepSpec, parent_run_id: str, experiment_id: str,
               tags: dict[str, str], sweep_name: str | None = None):
    from ray import tune

    trainable, run_config, scheduler = _tune_parts(prep, spec, parent_run_id, experiment_id, tags, sweep_name)
    if prep.grid is not None:
        param_space = {k: tune.grid_search(v) for k, v in prep.grid.items() if k not in spec.fixed}
        param_space.update({k: prep.base[k] for k in spec.fixed})  # fixed values win over the grid
        tune_config = tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler,
                                      trial_dirname_creator=trial_dirname,
                                      num_samples=spec.num_samples, reuse_actors=True,
                                      max_concurrent_trials=spec.max_concurrent)
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    if spec.scheduler_name == "pbt":  # Ray's PBT takes no searcher: an Optuna-drawn population
        from ray.tune.search import BasicVariantGenerator

        configs = pbt.initial_configs(prep.space, spec.num_samples, spec.search_seed,
                                      default_point(prep) if spec.defaults_first else None)
        tune_config = tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler, num_samples=len(configs),
                                      # the whole population is live (no max_concurrent: it would run it in
                                      # waves that never meet); the trial resources bound how many train at
                                      # once, and PBT time-multiplexes the rest
                                      search_alg=BasicVariantGenerator(points_to_evaluate=configs),
                                      trial_dirname_creator=trial_dirname, reuse_actors=True)
        return tune.Tuner(trainable, param_space=pbt.param_space(configs), tune_config=tune_config,
                          run_config=run_config)

    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = max(2, min(10, spec.num_samples // 2))
    sampler = optuna.samplers.TPESampler(seed=spec.search_seed, n_startup_trials=startup)
    storage = persisted = None
    if spec.study_storage:  # a continued study: TPE starts from every earlier trial
        from tuner import study_storage

        storage = study_storage.open_storage(spec.study_storage)
        persisted = study_storage.finished_trials(storage, spec.study_name)
    # the defaults baseline only opens a study (a continued one has its baseline already)
    points = None
    if spec.defaults_first and not persisted:  # a multi-method space has one baseline per method
        points = prep.space.default_points(prep.base) if spec.methods else [default_point(prep)]
    # a define-by-run space ignores TuneConfig's metric: the searcher is given it too (TuneConfig's
    # single metric only names ResultGrid's best, which the sweep does not use: tuner.summary)
    metric, mode = objectives.metrics_and_modes(spec.objectives)  # lists in a multi-objective search
    searcher = ConcurrencyLimiter(OptunaSearch(space=prep.space, metric=metric, mode=mode, sampler=sampler,
                                               points_to_evaluate=[p for p in points or [] if p] or None,
                                               storage=storage, study_name=spec.study_name if storage else None),
                                  max_concurrent=spec.max_concurrent)
    tune_config = tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                  trial_dirname_creator=trial_dirname,
                                  num_samples=spec.num_samples, reuse_actors=True)
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def default_point(prep: PreparedSweep) -> dict[str, Any]:
    """The base config's value of each searched hyperparameter that lies in its range (or the
    method's paper setting, :data:`search_spaces.defaults.BASELINES`): queued as the first trial,
    it gives TPE and ASHA a baseline to compare against (the config defaults are tuned for the
    default backbone, while the papers' ranges are not)."""
    from search_spaces.multi import baseline_point

    return baseline_point(prep.space, prep.spec.method, prep.base)


def fit(prep: PreparedSweep, spec: SweepSpec, parent_run_id: str, experiment_id: str,
         tags: dict[str, str] | None = None, restore: bool = False, sweep_name: str | None = None):
    """Run (or restore and continue) the Tuner of ``spec``; trials are tagged with ``sweep_name``
    (default ``spec.name``) in MLflow."""
    from ray import tune

    tags = dict(tags or {})
    # a snapshot per controller step is what makes --resume exact (see _tune_parts); don't warn
    # about it (Ray reads this when the Tuner's controller starts)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    if restore and tune.Tuner.can_restore(spec.experiment_dir):
        trainable, run_config, _ = _tune_parts(prep, spec, parent_run_id, experiment_id, tags, sweep_name)
        tuner = tune.Tuner.restore(spec.experiment_dir, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        # Ray restores the callbacks pickled with the Tuner: the MLflow logger would log to the
        # tracking URI of the first run, not the sweep record's (or a new --mlflow-uri)
        restored = tuner._local_tuner.get_run_config()
        restored.callbacks = run_config.callbacks
        restored.failure_config = run_config.failure_config
        restored.verbose, restored.progress_reporter = run_config.verbose, run_config.progress_reporter
    else:
        tuner = _new_tuner(prep, spec, parent_run_id, experiment_id, tags, sweep_name)
    return tuner.fit()
