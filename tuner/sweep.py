"""One sweep: a :class:`SweepSpec` in, a Ray Tune run with MLflow tracking, a summary dict out.

    from tuner.sweep import SweepSpec, run_sweep
    summary = run_sweep(SweepSpec(method="metadistil", config={"task": "sst2", "max_train_samples": 2000},
                                  num_samples=8))

Two ways to choose trial configs:

* **search** (default): :class:`~ray.tune.search.optuna.OptunaSearch` (TPE, seeded by
  ``search_seed``) over the method's define-by-run space (:mod:`search_spaces`; ``space``
  overrides ranges, ``fixed`` pins values), behind a ``ConcurrencyLimiter``;
* **grid** (``grid={"alpha": [0, 0.5, 1]}``): every combination once (times ``num_samples``),
  all other hyperparameters fixed: for studies (``analysis.sensitivity``).

Scheduler ``asha`` (default for search: ASHA on ``eval_score`` with one evaluation as the time
unit, grace period ``grace_period`` evaluations) or ``fifo`` (default for a grid).

Before any trial starts everything is checked (method, config, space, task data, cluster
resources, tracking store) and the teacher is fine-tuned once, as a Ray task, into the teacher
cache under the storage path (shared storage on a cluster), where every trial finds it. The
sweep's record (``distill_sweep.json``: spec, parent run, ...) is written next to Ray's
experiment state, so :func:`run_sweep` with ``resume=True`` continues an interrupted sweep with
``Tuner.restore``: finished trials stay finished, unfinished ones continue from their last
checkpoint, and their MLflow runs are reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from trainables.config import HPARAMS, DistillConfig, parse_assignments
from trainables.errors import UserError, check_writable_dir

from tuner import cluster, summary as summaries, tracking

RECORD_FILE = "distill_sweep.json"
SUMMARY_FILE = "summary.json"
BEST_STUDENT_DIR = "best_student"
SCHEDULERS = ("asha", "fifo")
METRIC = "eval_score"  # what every sweep maximises: the task's primary dev metric
#: ASHA's horizon in evaluations: far beyond any run, so trials end by finishing, not by max_t
ASHA_MAX_T = 10_000


@dataclass
class SweepSpec:
    """Everything a sweep needs; JSON-serialisable (it is saved with the sweep for ``resume``)."""

    method: str
    #: DistillConfig fields shared by every trial (task, data_dir, teacher, epochs, ...)
    config: dict[str, Any] = field(default_factory=dict)
    #: hyperparameters fixed for every trial (``--set``); they win over ``space`` and ``grid``
    fixed: dict[str, Any] = field(default_factory=dict)
    #: ``--space`` overrides, as the YAML mapping (see :mod:`search_spaces.overrides`)
    space: dict[str, Any] | None = None
    #: a grid ``{hyperparameter: [values]}`` instead of the Optuna search
    grid: dict[str, list] | None = None
    num_samples: int = 8
    scheduler: str | None = None          # asha (search default) | fifo (grid default)
    grace_period: int = 1                 # ASHA: evaluations before a trial can be stopped
    reduction_factor: float = 2.0         # ASHA
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    evals_per_epoch: int = 4              # sets eval_steps when config has none
    checkpoint_every: int = 1             # evaluations between trial checkpoints
    max_failures: int = 1                 # retries of a failed trial (from its last checkpoint)
    search_seed: int = 0
    defaults_first: bool = True           # the first trial runs the config defaults (a baseline)
    seeds: int = 0                        # re-run the best config with this many seeds
    mlflow_uri: str | None = None         # default sqlite:///<cwd>/mlflow.db
    experiment: str = tracking.DEFAULT_EXPERIMENT
    storage_path: str | None = None       # default <cwd>/ray_results
    name: str | None = None               # default <method>-<task>-<timestamp>
    address: str | None = None            # Ray cluster; default a local instance
    tags: dict[str, str] = field(default_factory=dict)   # extra MLflow tags (e.g. distill.study)
    output_json: str | None = None
    verbose: int = 1                      # Ray Tune's console output (0 silent .. 3)

    # ---- helpers ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SweepSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"unknown sweep setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**values)

    @property
    def scheduler_name(self) -> str:
        return self.scheduler or ("fifo" if self.grid else "asha")

    @property
    def task(self) -> str:
        return str(self.config.get("task", DistillConfig().task))

    @property
    def experiment_dir(self) -> str:
        return os.path.join(self.storage_path, self.name)


def grid_sweep(method: str, variable: str, values: list, *, config: dict[str, Any] | None = None,
               fixed: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
               repeats: int = 1, **settings: Any) -> dict:
    """Run ``method`` once (``repeats`` times) per value of one hyperparameter, everything else
    fixed; every run carries ``tags`` (e.g. ``{"distill.study": "alpha-sensitivity"}``).
    Returns the sweep summary (see :func:`run_sweep`)."""
    spec = SweepSpec(method=method, config=dict(config or {}), fixed=dict(fixed or {}),
                     grid={variable: list(values)}, num_samples=repeats, tags=dict(tags or {}),
                     **settings)
    return run_sweep(spec)


# ---- checking a spec -----------------------------------------------------------------------

@dataclass
class Prepared:
    spec: SweepSpec
    base: dict[str, Any]            # validated DistillConfig fields for every trial
    space: Any                      # search_spaces.SearchSpace (search mode)
    grid: dict[str, list] | None
    tracking_uri: str
    eval_steps: int
    train_rows: int


def normalise(spec: SweepSpec) -> SweepSpec:
    """Defaults filled in and paths made absolute (trials run elsewhere: other cwd, other node)."""
    spec = dataclasses.replace(spec, config=dict(spec.config), fixed=dict(spec.fixed),
                               tags=dict(spec.tags))
    spec.storage_path = os.path.abspath(os.path.expanduser(spec.storage_path or "ray_results"))
    if not spec.name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        spec.name = f"{spec.method}-{os.path.basename(os.path.normpath(spec.task))}-{stamp}"
    if "/" in spec.name or spec.name in (".", ".."):
        raise UserError(f"--name {spec.name!r} must be a plain folder name")
    spec.mlflow_uri = tracking.resolve_tracking_uri(spec.mlflow_uri)
    if spec.output_json:
        spec.output_json = os.path.abspath(spec.output_json)
    return spec


def _check_numbers(spec: SweepSpec) -> None:
    if spec.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {spec.num_samples}")
    if spec.max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {spec.max_concurrent}")
    if spec.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {spec.cpus_per_trial}")
    if spec.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {spec.gpus_per_trial}")
    if spec.scheduler_name not in SCHEDULERS:
        raise UserError(f"unknown scheduler {spec.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    if spec.grace_period < 1:
        raise UserError(f"--grace-period must be >= 1, got {spec.grace_period}")
    if spec.reduction_factor <= 1:
        raise UserError(f"--reduction-factor must be > 1, got {spec.reduction_factor}")
    if spec.seeds < 0:
        raise UserError(f"--seeds must be >= 0, got {spec.seeds}")
    if spec.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0, got {spec.max_failures}")
    if spec.evals_per_epoch < 0:
        raise UserError(f"--evals-per-epoch must be >= 0, got {spec.evals_per_epoch}")


def _check_grid(grid: dict[str, list] | None) -> dict[str, list] | None:
    if not grid:
        return None
    out = {}
    for name, values in grid.items():
        if name not in HPARAMS:
            raise UserError(f"unknown hyperparameter {name!r} in the grid; valid: {', '.join(HPARAMS)}")
        if not isinstance(values, (list, tuple)) or not values:
            raise UserError(f"the grid of {name} needs a non-empty list of values")
        out[name] = [parse_assignments([f"{name}={v}"])[name] for v in values]
        for v in out[name]:
            DistillConfig(**{name: v})
    return out


def prepare(spec: SweepSpec) -> Prepared:
    """Check everything that can be checked without Ray; fill in the trials' base config."""
    from search_spaces.overrides import parse_overrides
    from search_spaces.registry import build_space
    from trainables.experiment import load_task
    from trainables.methods import get_method
    from trainables.models import load_tokenizer

    _check_numbers(spec)
    get_method(spec.method)
    fixed = {k: v for k, v in spec.fixed.items()}
    for key in fixed:
        if key not in HPARAMS:
            raise UserError(f"unknown hyperparameter {key!r} in --set; valid: {', '.join(HPARAMS)}")
    values = {**spec.config, **fixed, "method": spec.method, "output_dir": None}
    cfg = DistillConfig.from_dict(values)
    fixed = {k: getattr(cfg, k) for k in fixed}   # typed by the config
    if cfg.cache_dir is None:  # teachers live next to the sweeps: shared storage on a cluster
        cfg.cache_dir = os.path.abspath(os.environ.get("TUNER_CACHE_DIR") or spec.storage_path)

    grid = _check_grid(spec.grid)
    space = None
    if grid is None:
        overrides = parse_overrides(spec.space, source="--space") if spec.space else None
        space = build_space(spec.method, overrides, fixed)
        space.describe()  # runs the space function once: a broken space fails here
    elif spec.space:
        raise UserError("a grid sweep takes no --space (all other hyperparameters are fixed)")

    load_tokenizer(cfg.teacher_checkpoint or cfg.student or cfg.teacher)  # a bad model id fails now
    _check_student_layers(cfg, None if "student_layers" in fixed else grid, space)
    _, data = load_task(cfg)
    train_rows = len(data.train)
    eval_steps = cfg.eval_steps
    if not eval_steps and spec.evals_per_epoch:
        steps_per_epoch = max(1, math.ceil(train_rows / cfg.batch_size))
        eval_steps = max(1, steps_per_epoch // spec.evals_per_epoch)
        cfg.eval_steps = eval_steps
    return Prepared(spec=spec, base=cfg.to_dict(), space=space, grid=grid,
                    tracking_uri=spec.mlflow_uri, eval_steps=eval_steps, train_rows=train_rows)


def _check_student_layers(cfg: DistillConfig, grid: dict[str, list] | None, space) -> None:
    """The default student is the teacher's first ``student_layers`` layers: every value the
    sweep can try (base or fixed value, grid, searched range) must fit in the teacher (else each
    such trial fails after Ray started)."""
    from optuna.distributions import CategoricalDistribution

    from trainables.models import model_depth

    if cfg.student:
        return
    values = {cfg.student_layers, *(grid or {}).get("student_layers", [])}
    dist = space.searched().get("student_layers") if space is not None else None
    if dist is not None:
        values |= set(dist.choices) if isinstance(dist, CategoricalDistribution) else {dist.high}
    depth = model_depth(cfg.teacher)
    if depth is not None and max(values) > depth:
        raise UserError(f"student_layers={max(values)} is more than the {depth} layers of the teacher "
                        f"{cfg.teacher!r} (valid: 1..{depth})")


# ---- the teacher stage ----------------------------------------------------------------------

def fine_tune_teachers(configs: list[dict[str, Any]], spec: SweepSpec,
                       resources: dict[str, float]) -> list[list[str]]:
    """The teacher stage of every config (distinct settings fine-tuned once), as Ray tasks."""
    from trainables.methods import get_method

    if not get_method(spec.method).uses_teacher:
        return [[] for _ in configs]
    if spec.verbose:
        print(f"teacher stage: {len(configs)} teacher setting(s), fine-tuned once and cached under "
              f"{configs[0].get('cache_dir')} ...", flush=True)
    started = time.time()
    cpus = max(spec.cpus_per_trial, min(resources.get("max_node_CPU", 1.0),
                                        spec.cpus_per_trial * spec.max_concurrent))
    gpus = min(1.0, resources.get("max_node_GPU", 0.0)) if spec.gpus_per_trial > 0 else 0.0
    # a task of trainables.teacher (a light module): a worker that finds every teacher cached
    # imports neither this module's tracking stack nor torch
    from trainables.teacher import teacher_stage

    paths = cluster.run_remote(teacher_stage, [(c, int(cpus)) for c in configs], num_cpus=cpus, num_gpus=gpus)
    if spec.verbose:
        for teacher in (p for group in paths for p in group):
            print(f"teacher ready ({time.time() - started:.0f}s): {teacher} {_teacher_metrics(teacher)}", flush=True)
    return paths


def _teacher_metrics(path: str) -> str:
    from trainables.teacher import INFO_FILE

    try:
        with open(os.path.join(path, INFO_FILE)) as fh:
            metrics = json.load(fh).get("dev_metrics", {})
    except (OSError, ValueError):
        return ""
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))


# ---- building and running the Tuner ----------------------------------------------------------

def trial_dirname(trial) -> str:
    """Short trial folders (``<method>_<trial id>``): the config is in MLflow and params.json."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def _tune_parts(prep: Prepared, spec: SweepSpec, parent_run_id: str, experiment_id: str,
                tags: dict[str, str], sweep_name: str | None = None):
    from ray import tune

    from trainables.trainable import EVALUATION, make_trainable

    trainable = make_trainable(spec.method, prep.base, threads=max(1, int(spec.cpus_per_trial)),
                               checkpoint_every=spec.checkpoint_every)
    trainable = tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
    logger = tracking.MlflowTrialLogger(
        prep.tracking_uri, experiment_id, parent_run_id, sweep_name or spec.name, spec.method,
        str(prep.base["task"]), prep.base, tags={**spec.tags, **tags})
    run_config = tune.RunConfig(
        name=spec.name, storage_path=spec.storage_path, callbacks=[logger], verbose=spec.verbose,
        # Ray deletes a trial's oldest checkpoint as soon as a newer one exceeds num_to_keep, but
        # saves (and syncs to the storage path) the experiment state that --resume reads only
        # every num_to_keep checkpoints: a driver killed in between resumed from a deleted
        # checkpoint. The state is saved and synced at every controller step instead (see _fit:
        # TUNE_GLOBAL_CHECKPOINT_S=0, sync_period 0), so it is at most a step or two behind, and
        # three checkpoints are kept
        checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
        sync_config=tune.SyncConfig(sync_period=0),
        # a trial whose worker dies (SIGKILL, out of memory) or that raises is retried from its
        # last checkpoint up to max_failures times, then ERROR; the sweep goes on
        failure_config=tune.FailureConfig(max_failures=spec.max_failures, fail_fast=False))
    scheduler = None
    if spec.scheduler_name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr=EVALUATION, max_t=ASHA_MAX_T, grace_period=spec.grace_period,
                                  reduction_factor=spec.reduction_factor)
    return trainable, run_config, scheduler


def _new_tuner(prep: Prepared, spec: SweepSpec, parent_run_id: str, experiment_id: str,
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

    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = max(2, min(10, spec.num_samples // 2))
    sampler = optuna.samplers.TPESampler(seed=spec.search_seed, n_startup_trials=startup)
    points = [default_point(prep)] if spec.defaults_first else None
    # a define-by-run space ignores TuneConfig's metric: the searcher is given it too
    searcher = ConcurrencyLimiter(OptunaSearch(space=prep.space, metric=METRIC, mode="max", sampler=sampler,
                                               points_to_evaluate=[p for p in points or [] if p] or None),
                                  max_concurrent=spec.max_concurrent)
    tune_config = tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                  trial_dirname_creator=trial_dirname,
                                  num_samples=spec.num_samples, reuse_actors=True)
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def default_point(prep: Prepared) -> dict[str, Any]:
    """The base config's value of each searched hyperparameter that lies in its range (or the
    method's paper setting, :data:`search_spaces.defaults.BASELINES`): queued as the first trial,
    it gives TPE and ASHA a baseline to compare against (the config defaults are tuned for the
    default backbone, while the papers' ranges are not)."""
    from optuna.distributions import CategoricalDistribution

    from search_spaces.defaults import BASELINES

    baseline = BASELINES.get(prep.spec.method, {})
    point = {}
    for name, dist in prep.space.searched().items():
        value = baseline.get(name, prep.base.get(name))
        if value is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if value in dist.choices:
                point[name] = value
        elif dist.low <= value <= dist.high:
            point[name] = value
    return point


def _fit(prep: Prepared, spec: SweepSpec, parent_run_id: str, experiment_id: str,
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
    else:
        tuner = _new_tuner(prep, spec, parent_run_id, experiment_id, tags, sweep_name)
    return tuner.fit()


# ---- the sweep record -----------------------------------------------------------------------

def _record_path(spec: SweepSpec) -> str:
    return os.path.join(spec.experiment_dir, RECORD_FILE)


def _write_record(spec: SweepSpec, **extra: Any) -> None:
    os.makedirs(spec.experiment_dir, exist_ok=True)
    path = _record_path(spec)
    record = {"spec": spec.to_dict(), **extra}
    with open(path + ".tmp", "w") as fh:
        json.dump(record, fh, indent=2, default=str)
    os.replace(path + ".tmp", path)


def read_record(experiment_dir: str) -> dict[str, Any]:
    """The sweep's record; a UserError when it is unreadable, truncated or not a sweep record."""
    path = os.path.join(experiment_dir, RECORD_FILE)
    try:
        with open(path) as fh:
            record = json.load(fh)
        if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
            raise ValueError("no 'spec' mapping")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot resume from {path}: the sweep record is corrupt or truncated ({err}); "
                        f"start the sweep again under another --name") from None
    return record


def _sweeps_in(storage_path: str) -> list[str]:
    if not os.path.isdir(storage_path):
        return []
    return sorted(d for d in os.listdir(storage_path)
                  if os.path.isfile(os.path.join(storage_path, d, RECORD_FILE)))


def _resume_spec(spec: SweepSpec) -> tuple[SweepSpec, dict[str, Any]]:
    storage = os.path.abspath(os.path.expanduser(spec.storage_path or "ray_results"))
    known = _sweeps_in(storage)
    if not spec.name:
        raise UserError(f"--resume needs --name of the sweep to continue; sweeps in {storage}: "
                        f"{', '.join(known) or 'none'}")
    directory = os.path.join(storage, spec.name)
    if not os.path.isfile(os.path.join(directory, RECORD_FILE)):
        raise UserError(f"no sweep {spec.name!r} to resume in {storage}; sweeps there: {', '.join(known) or 'none'}")
    record = read_record(directory)
    try:
        saved = SweepSpec.from_dict(record["spec"])
    except TypeError as err:  # a required setting missing
        raise UserError(f"cannot resume from {os.path.join(directory, RECORD_FILE)}: the sweep record is "
                        f"corrupt ({err})") from None
    # where it runs and where the summary goes may change; what it searches may not
    saved.address = spec.address
    saved.verbose = spec.verbose
    # the store may have moved with the sweep: the record's URI unless --mlflow-uri is given
    saved.mlflow_uri = spec.mlflow_uri or record.get("tracking_uri") or saved.mlflow_uri
    if spec.output_json:
        saved.output_json = os.path.abspath(spec.output_json)
    saved.storage_path = storage
    return saved, record


# ---- the sweep -------------------------------------------------------------------------------

def run_sweep(spec: SweepSpec, *, resume: bool = False) -> dict[str, Any]:
    """Run (or with ``resume`` continue) a sweep; return its summary (also written to
    ``<storage>/<name>/summary.json`` and ``spec.output_json``)."""
    started = time.time()
    record: dict[str, Any] = {}
    if resume:
        spec, record = _resume_spec(spec)
    spec = normalise(spec)
    check_writable_dir(spec.storage_path, "--storage-path")
    if spec.output_json:
        check_writable_dir(os.path.dirname(spec.output_json), "--output-json's folder")
    if not resume and os.path.isfile(_record_path(spec)):
        raise UserError(f"a sweep named {spec.name!r} already exists in {spec.storage_path}; "
                        f"continue it with --resume or choose another --name")
    prep = prepare(spec)
    tracking.check_tracking_uri(prep.tracking_uri)

    with cluster.connect(spec.address) as conn:
        resources = cluster.check_trial_resources(spec.cpus_per_trial, spec.gpus_per_trial)
        experiment_id = tracking.ensure_experiment(prep.tracking_uri, spec.experiment)
        if record.get("parent_run_id"):
            parent_run_id = record["parent_run_id"]
            tracking.client(prep.tracking_uri).update_run(parent_run_id, status="RUNNING")
            if record.get("tracking_uri") != prep.tracking_uri:  # resumed with another --mlflow-uri
                record = {**{k: v for k, v in record.items() if k != "spec"}, "tracking_uri": prep.tracking_uri}
                _write_record(spec, **record)
        else:
            teacher_paths = fine_tune_teachers([prep.base], spec, resources)[0]
            parent_run_id = tracking.start_parent_run(
                prep.tracking_uri, experiment_id, spec.name, spec.method, str(prep.base["task"]),
                tags=spec.tags, params=_parent_params(prep, spec))
            record = {"parent_run_id": parent_run_id, "experiment_id": experiment_id,
                      "tracking_uri": prep.tracking_uri, "teacher_paths": teacher_paths,
                      "eval_steps": prep.eval_steps, "train_rows": prep.train_rows,
                      "space": prep.space.describe() if prep.space else None}
            _write_record(spec, **record)
        try:
            results = _fit(prep, spec, parent_run_id, experiment_id, restore=resume)
            trials = summaries.collect_trials(results)
            best = summaries.best_trial(trials)
            student_path = None
            if best is not None and best.get("_checkpoint") is not None:
                student_path = summaries.export_student(
                    best, os.path.join(spec.experiment_dir, BEST_STUDENT_DIR))
                if student_path:
                    tracking.log_best_student(prep.tracking_uri, parent_run_id, student_path)
            # Ray Tune returns normally after Ctrl-C: trials left running or pending, or samples
            # the search had not created yet, are what tells an interrupted sweep
            interrupted = (any(t["status"] == summaries.STATUS_UNFINISHED for t in trials)
                           or len(trials) < expected_trials(spec, prep))
            summaries.prune_engine_states(trials)
            seeds = None
            if spec.seeds and best is not None and not interrupted:
                seeds = _seed_reruns(prep, spec, best, parent_run_id, experiment_id, resources)
            summary = summaries.build_summary(
                spec, prep, trials, best, student_path=student_path, parent_run_id=parent_run_id,
                experiment_id=experiment_id, seeds=seeds, address=conn["address"],
                wall_seconds=time.time() - started)
            summary["interrupted"] = interrupted
            summary["not_started"] = max(0, expected_trials(spec, prep) - len(trials))
            summary["resume_command"] = resume_command(spec) if interrupted else None
            if interrupted:
                print(f"sweep {spec.name} interrupted; continue it with: {summary['resume_command']}",
                      file=sys.stderr, flush=True)
            path = os.path.join(spec.experiment_dir, SUMMARY_FILE)
            summaries.write_json(summary, path)
            if spec.output_json:
                summaries.write_json(summary, spec.output_json)
            tracking.finish_parent_run(prep.tracking_uri, parent_run_id, summaries.parent_metrics(summary), path,
                                       status="KILLED" if interrupted else "FINISHED")
        except BaseException:
            tracking.client(prep.tracking_uri).set_terminated(parent_run_id, status="KILLED")
            print(f"sweep {spec.name} stopped; continue it with: {resume_command(spec)}", file=sys.stderr,
                  flush=True)
            raise
    if spec.verbose:
        print(summaries.format_summary(summary))
    return summary


def expected_trials(spec: SweepSpec, prep: Prepared) -> int:
    """How many trials the sweep runs when nothing stops it (grid: every combination times
    ``num_samples``)."""
    if prep.grid is None:
        return spec.num_samples
    return math.prod(len(v) for k, v in prep.grid.items() if k not in spec.fixed) * spec.num_samples


def resume_command(spec: SweepSpec) -> str:
    """The command that continues this sweep (printed instead of Ray's ``Tuner.restore`` hint)."""
    return shlex.join(["python", "-m", "tuner.launch", "--resume", "--name", spec.name,
                       "--storage-path", spec.storage_path])


def _parent_params(prep: Prepared, spec: SweepSpec) -> dict[str, Any]:
    params = {k: v for k, v in prep.base.items() if k not in (prep.space.searched() if prep.space else {})}
    params.update({
        "sweep.num_samples": spec.num_samples, "sweep.scheduler": spec.scheduler_name,
        "sweep.max_concurrent": spec.max_concurrent, "sweep.cpus_per_trial": spec.cpus_per_trial,
        "sweep.gpus_per_trial": spec.gpus_per_trial, "sweep.search_seed": spec.search_seed,
        "sweep.grid": json.dumps(prep.grid) if prep.grid else "None",
        "sweep.space": json.dumps(dict(prep.space.describe())) if prep.space else "None",
    })
    return params


def _seed_reruns(prep: Prepared, spec: SweepSpec, best: dict, parent_run_id: str, experiment_id: str,
                 resources: dict[str, float]) -> dict[str, Any]:
    """Re-run the best config with ``spec.seeds`` new seeds (a grid over ``seed``)."""
    best_config = {**prep.base, **best["config"]}
    first = int(best_config.get("seed", 42))
    seeds = [first + i for i in range(1, spec.seeds + 1)]
    rerun = dataclasses.replace(spec, name=f"{spec.name}-seeds", grid={"seed": seeds}, num_samples=1,
                                scheduler="fifo", seeds=0, space=None,
                                fixed={k: v for k, v in best["config"].items() if k != "seed"})
    base = {k: v for k, v in best_config.items() if k != "seed"}
    rerun_prep = dataclasses.replace(prep, spec=rerun, base={**base, "seed": first}, space=None,
                                     grid={"seed": seeds})
    fine_tune_teachers([{**base, "seed": s} for s in seeds], rerun, resources)
    results = _fit(rerun_prep, rerun, parent_run_id, experiment_id,
                   tags={tracking.TAG_SEED_RERUN: "true"}, restore=True, sweep_name=spec.name)
    trials = summaries.collect_trials(results)
    summaries.prune_engine_states(trials)
    scores = [t["metrics"]["best_eval_score"] for t in trials
              if t["status"] == tracking.STATUS_TERMINATED and "best_eval_score" in t["metrics"]]
    return summaries.seed_stats(seeds, scores, trials)
