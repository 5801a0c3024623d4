"""A sweep's specification (:class:`SweepSpec`) and its checks: :func:`normalise` fills in the
defaults and makes paths absolute, :func:`prepare_sweep` checks everything that can be checked
without Ray (numbers, method, config, space or grid, model ids, task data) into a
:class:`PreparedSweep`, the trials' base config.

    spec = normalise(SweepSpec(method="kd", config={"task": "sst2"}))
    prep = prepare_sweep(spec)   # a UserError names what is wrong, before Ray starts
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from trainables.config import HPARAMS, DistillConfig, parse_assignments
from trainables.errors import UserError

from tuner import objectives
from tuner.mlflow_schema import DEFAULT_EXPERIMENT, resolve_tracking_uri

SCHEDULERS = ("asha", "fifo", "pbt")


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
    grace_period: int = 4                 # ASHA: evaluations before a trial can be stopped (one epoch at 4 per epoch)
    reduction_factor: float = 2.0         # ASHA
    perturbation_interval: int = 2        # PBT: evaluations between perturbations (tuner.pbt)
    quantile_fraction: float = 0.25       # PBT: the bottom fraction clones the top fraction
    resample_probability: float = 0.25    # PBT: a cloned value drawn anew instead of scaled
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    evals_per_epoch: int = 4              # sets eval_steps when config has none
    checkpoint_every: int = 1             # evaluations between trial checkpoints
    max_failures: int = 1                 # retries of a failed trial (from its last checkpoint)
    search_seed: int = 0
    defaults_first: bool = True           # the first trial runs the config defaults (a baseline)
    #: multi-objective search (tuner.objectives): e.g. ["eval_score", "student_params"]; FIFO
    objectives: list[str] | None = None
    #: a searched choice of students (model names/paths; "truncated": the default student)
    students: list[str] | None = None
    study_storage: str | None = None      # Optuna RDB URL: continue the study across sweeps
    study_name: str | None = None         # default <method>-<task> (with study_storage)
    register_model: str | None = None     # register the best student under this Model Registry name
    seeds: int = 0                        # re-run the best config with this many seeds
    mlflow_uri: str | None = None         # default sqlite:///<cwd>/mlflow.db
    experiment: str = DEFAULT_EXPERIMENT
    storage_path: str | None = None       # default <cwd>/ray_results
    name: str | None = None               # default <method>-<task>-<timestamp>
    address: str | None = None            # Ray cluster; default a local instance
    tags: dict[str, str] = field(default_factory=dict)   # extra MLflow tags (e.g. distill.study)
    output_json: str | None = None
    verbose: int = 1                      # Ray Tune's console output (0 silent .. 3)
    system_metrics: float = 0.0           # > 0: each trial's run gets system/... metrics sampled this often (s)
    #: a multi-method search (``method`` is then "multi"): the method is a searched choice, each
    #: method's space follows it (:mod:`search_spaces.multi`); ``["auto"]``: every method that fits
    methods: list[str] | None = None
    budget: str = "steps"                 # what ASHA compares trials at: steps | time (tuner.budget)

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
        return self.scheduler or ("fifo" if self.grid or self.objectives else "asha")

    @property
    def task(self) -> str:
        return str(self.config.get("task", DistillConfig().task))

    @property
    def experiment_dir(self) -> str:
        return os.path.join(self.storage_path, self.name)


@dataclass
class PreparedSweep:
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
    if spec.methods:
        from tuner.method_choice import MULTI, check_methods

        spec.methods = check_methods(list(spec.methods))
        spec.method = MULTI
    spec.storage_path = os.path.abspath(os.path.expanduser(spec.storage_path or "ray_results"))
    if not spec.name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        spec.name = f"{spec.method}-{os.path.basename(os.path.normpath(spec.task))}-{stamp}"
    if "/" in spec.name or spec.name in (".", ".."):
        raise UserError(f"--name {spec.name!r} must be a plain folder name")
    spec.mlflow_uri = resolve_tracking_uri(spec.mlflow_uri)
    objectives.check_spec(spec)
    if spec.study_storage:
        from tuner import study_storage

        if spec.grid:
            raise UserError("--study-storage keeps an Optuna search's study; a --grid sweep has none")
        spec.study_storage = study_storage.check(spec.study_storage, spec.mlflow_uri)
        spec.study_name = spec.study_name or study_storage.default_name(spec.method, spec.task)
        study_storage.open_storage(spec.study_storage)  # a bad URL fails here, before Ray starts
    if spec.output_json:
        spec.output_json = os.path.abspath(spec.output_json)
    return spec


#: the sweep's numeric settings and their lower bounds, checked in this order (the GPU fraction and
#: the scheduler between the two): (setting, bound, whether the bound itself is allowed, a note)
_LOWER_BOUNDS = (("num_samples", 1, True, ""), ("max_concurrent", 1, True, ""), ("cpus_per_trial", 0, False, ""),
                 ("gpus_per_trial", 0, True, ""))
_LATER_LOWER_BOUNDS = (("grace_period", 1, True, ""), ("reduction_factor", 1, False, ""), ("seeds", 0, True, ""),
                       ("max_failures", 0, True, ""), ("evals_per_epoch", 0, True, ""),
                       ("checkpoint_every", 1, True, " (evaluations between checkpoints)"))


def _check_lower_bounds(spec: SweepSpec, bounds: tuple) -> None:
    for name, bound, inclusive, counts in bounds:
        value = getattr(spec, name)
        if value < bound or (value == bound and not inclusive):
            raise UserError(f"--{name.replace('_', '-')} must be {'>=' if inclusive else '>'} {bound}{counts}, "
                            f"got {value}")


def _check_numbers(spec: SweepSpec) -> None:
    _check_lower_bounds(spec, _LOWER_BOUNDS)
    if spec.gpus_per_trial > 1 and not float(spec.gpus_per_trial).is_integer():
        raise UserError(f"--gpus-per-trial {spec.gpus_per_trial:g} is neither a fraction of one GPU "
                        f"(0 < g <= 1; 0.25 = four trials per GPU) nor a whole number of GPUs")
    if spec.scheduler_name not in SCHEDULERS:
        raise UserError(f"unknown scheduler {spec.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    _check_lower_bounds(spec, _LATER_LOWER_BOUNDS)
    if spec.system_metrics:
        from trainables.system_metrics import check_available

        if spec.system_metrics < 0:
            raise UserError(f"--system-metrics must be > 0 seconds between samples, got {spec.system_metrics:g}")
        check_available()
    if spec.scheduler_name == "pbt":
        from tuner.pbt import check_settings

        check_settings(spec)


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


def prepare_sweep(spec: SweepSpec) -> PreparedSweep:
    """Check everything that can be checked without Ray; fill in the trials' base config."""
    from search_spaces.overrides import parse_overrides
    from search_spaces.registry import build_space
    from trainables.experiment import load_task
    from trainables.methods import get_method
    from trainables.models import load_tokenizer

    _check_numbers(spec)
    from tuner import budget, method_choice

    budget.check(spec.budget, spec.scheduler_name)
    if not spec.methods:
        get_method(spec.method)
    fixed = {k: v for k, v in spec.fixed.items()}
    for key in fixed:
        if key not in HPARAMS:
            raise UserError(f"unknown hyperparameter {key!r} in --set; valid: {', '.join(HPARAMS)}")
    values = {**spec.config, **fixed, "method": spec.method, "output_dir": None}
    if spec.methods:  # the base config of a multi-method sweep carries its first method
        values["method"] = DistillConfig().method if spec.methods == [method_choice.AUTO] else spec.methods[0]
    cfg = DistillConfig.from_dict(values)
    if spec.methods:
        spec.methods = method_choice.check_search(spec, method_choice.resolve(spec.methods, cfg))
        cfg.method = spec.methods[0]
    fixed = {k: getattr(cfg, k) for k in fixed}   # typed by the config
    if cfg.cache_dir is None:  # teachers live next to the sweeps: shared storage on a cluster
        cfg.cache_dir = os.path.abspath(os.environ.get("TUNER_CACHE_DIR") or spec.storage_path)

    grid = _check_grid(spec.grid)
    space = None
    if spec.scheduler_name == "pbt":  # every trial of the population has the same evaluations
        from tuner.pbt import pinned

        fixed = {**pinned(cfg), **fixed}
    if grid is None:
        overrides = parse_overrides(spec.space, source="--space") if spec.space else None
        if spec.methods:
            from search_spaces.multi import build_multi_space

            space = build_multi_space(spec.methods, overrides, fixed)
        else:
            space = build_space(spec.method, overrides, fixed)
        if objectives.searches_students(spec):
            space = objectives.student_search(spec, cfg, space)
        space.describe()  # runs the space function once: a broken space fails here
        if spec.scheduler_name == "pbt":
            from tuner.pbt import mutated

            mutated(spec.method, space)  # something to perturb
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
    return PreparedSweep(spec=spec, base=cfg.to_dict(), space=space, grid=grid,
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


def expected_trials(spec: SweepSpec, prep: PreparedSweep) -> int:
    """How many trials the sweep runs when nothing stops it (grid: every combination times
    ``num_samples``)."""
    if prep.grid is None:
        return spec.num_samples
    return math.prod(len(v) for k, v in prep.grid.items() if k not in spec.fixed) * spec.num_samples
