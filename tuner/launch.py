"""The front door: a hyperparameter search for one distillation method on one task.

    python -m tuner.launch --method metadistil --task sst2 --max-train-samples 2000 --num-samples 8

runs an Optuna (TPE) search over the method's space with ASHA early stopping on Ray Tune, every
trial tracked in MLflow, and saves the best trial's student. The embedded defaults fit a laptop
(2 concurrent trials of 1 CPU each; 2 epochs of batches of 16, i.e. ~225 optimiser steps on
2000 rows: a 3-layer MiniLM student needs 100-200 steps at lr 1e-4 to leave the majority class;
4 evaluations per epoch; ASHA grace period of one evaluation; the config defaults as the first
trial, a baseline for TPE and ASHA); on a cluster, point ``--address`` at it and raise
``--epochs``, ``--batch-size``, ``--max-concurrent`` and ``--gpus-per-trial`` (fractions share a GPU).

    python -m tuner.launch --list                      # methods, tasks and each method's space
    python -m tuner.launch ... --set alpha=0.5         # fix a hyperparameter instead of searching it
    python -m tuner.launch ... --space my_space.yaml   # override ranges (see search_spaces.overrides)
    python -m tuner.launch ... --grid alpha=0,0.5,1    # a grid instead of the search
    python -m tuner.launch --methods kd,metadistil,reptile-distil --task mrpc   # the method searched too
    python -m tuner.launch --method auto --task mrpc --budget time   # every method that fits, equal seconds
    python -m tuner.launch --resume --name NAME        # continue an interrupted sweep
    mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db   # compare the trials

Bad input (unknown method/task, a bad --set or --space, more GPUs per trial than a node has, an
unreachable --address or tracking server) is one line on stderr and exit code 2, before any
trial starts.
"""

from __future__ import annotations

import argparse
import json
import sys

from trainables.errors import UserError, exit_on_user_error

#: laptop-friendly defaults of the launch CLI (each is an option below)
LAUNCH_DEFAULTS = {"epochs": 2, "batch_size": 16, "num_samples": 8, "max_concurrent": 2, "cpus_per_trial": 1.0,
                   "gpus_per_trial": 0.0, "evals_per_epoch": 4, "grace_period": 4,
                   "reduction_factor": 2.0, "max_failures": 1}


#: exit status of a sweep interrupted by Ctrl-C (its summary is written; ``--resume`` continues it)
INTERRUPTED_EXIT = 130


def build_parser() -> argparse.ArgumentParser:
    from trainables.options import add_config_options
    from trainables.run import add_model_and_data_args

    d = LAUNCH_DEFAULTS
    p = argparse.ArgumentParser(prog="python -m tuner.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="print methods, tasks and each method's search space")
    add_config_options(p, fields=("method",), defaults={"method": None}, required=("method",))
    add_model_and_data_args(p)
    p.set_defaults(epochs=d["epochs"], batch_size=d["batch_size"])
    o = add_sweep_args(p)
    add_multi_method_args(p)
    o.add_argument("--name", default=None, help="sweep name (default <method>-<task>-<time>)")
    o.add_argument("--resume", action="store_true", help="continue the interrupted sweep --name")
    o.add_argument("--output-json", default=None, help="write the summary here")
    o.add_argument("--quiet", action="store_true",
                   help="no progress lines, trial table or MLflow 'View run' lines: the summary as one JSON line")
    return p


def add_sweep_args(p: argparse.ArgumentParser, *, single_method: bool = True):
    """The sweep options shared by the CLIs that run sweeps (``tuner.launch``, ``tuner.reproduce``):
    ``--student-layers``, the search, resource and tracking groups, with :data:`LAUNCH_DEFAULTS`
    (the config's resource options from the schema, the sweep's by hand).
    ``single_method=False`` leaves out what belongs to one method's space (``--space``, ``--grid``).
    Returns the "tracking and output" group, for the caller's own output options."""
    from trainables.options import add_config_options, option_group

    from tuner import pbt
    from tuner.mlflow_schema import DEFAULT_EXPERIMENT
    from tuner.spec import SCHEDULERS

    d = LAUNCH_DEFAULTS
    add_config_options(p, fields=("student_layers",))
    g = option_group(p, "search")
    g.add_argument("--num-samples", type=int, default=d["num_samples"],
                   help=f"trials (default {d['num_samples']}; with --grid: repeats of the grid)")
    if single_method:
        g.add_argument("--space", default=None, metavar="FILE", help="YAML overriding search ranges")
        g.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="grid over a hyperparameter instead of the search (repeatable)")
        g.add_argument("--objectives", default=None, metavar="A,B",
                       help="multi-objective search: eval_score and costs among student_params, latency_ms "
                            "(batch 1), latency_ms_b32; FIFO; writes the Pareto front (see tuner.objectives)")
        g.add_argument("--students", default=None, metavar="A,B,C",
                       help="search the student among these model names/paths ('truncated': the default "
                            "student, whose --student-layers is then searched)")
    else:
        p.set_defaults(space=None, grid=[], objectives=None, students=None)
    g.add_argument("--scheduler", default=None, choices=SCHEDULERS,
                   help="asha (default for a search), fifo (default for a grid) or pbt (population-based "
                        "training of lambda, mu, alpha, T)")
    g.add_argument("--grace-period", type=int, default=d["grace_period"],
                   help=f"ASHA: evaluations before a trial may be stopped (default {d['grace_period']})")
    g.add_argument("--reduction-factor", type=float, default=d["reduction_factor"],
                   help=f"ASHA reduction factor (default {d['reduction_factor']:g})")
    pbt.add_args(g)
    g.add_argument("--evals-per-epoch", type=int, default=d["evals_per_epoch"],
                   help=f"evaluations per epoch when --eval-steps is not given (default {d['evals_per_epoch']})")
    g.add_argument("--search-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    g.add_argument("--no-defaults-first", dest="defaults_first", action="store_false",
                   help="do not run the config defaults as the first trial (by default they do, as a "
                        "baseline for TPE and ASHA)")
    g.add_argument("--study-storage", default=None, metavar="URI",
                   help="keep the Optuna study in this database (sqlite:///optuna.db, postgresql://...) "
                        "so a later sweep with the same --study-name continues it (not the MLflow file)")
    g.add_argument("--study-name", default=None,
                   help="the persistent study's name (default <method>-<task>)")
    g.add_argument("--register-model", default=None, metavar="NAME",
                   help="register the best student in MLflow's Model Registry under NAME (it is always "
                        "logged as an MLflow model on the sweep's run)")
    g.add_argument("--seeds", type=int, default=0,
                   help="re-run the best config with N more seeds and report mean ± std")
    add_config_options(p, groups=("resources", "tracking"), exclude=("output_dir",))
    r = option_group(p, "resources")
    r.add_argument("--max-concurrent", type=int, default=d["max_concurrent"],
                   help=f"trials at once (default {d['max_concurrent']})")
    r.add_argument("--cpus-per-trial", type=float, default=d["cpus_per_trial"],
                   help=f"CPUs per trial, also torch's threads (default {d['cpus_per_trial']:g})")
    r.add_argument("--gpus-per-trial", type=float, default=d["gpus_per_trial"],
                   help="GPUs per trial; fractions share a GPU (default 0)")
    r.add_argument("--address", default=None,
                   help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local one)")
    r.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="a trial checkpoint every N evaluations (default 1: a resumed or retried trial "
                        "repeats no evaluation; N > 1 writes 1/N of the checkpoints, and a resumed trial "
                        "repeats up to N - 1 evaluations' training)")
    r.add_argument("--max-failures", type=int, default=d["max_failures"],
                   help="retries of a failed trial (worker killed, out of memory, an exception) from its "
                        f"last checkpoint before it is ERROR (default {d['max_failures']})")
    o = option_group(p, "tracking")
    o.add_argument("--mlflow-uri", default=None,
                   help="tracking URI (default sqlite:///<cwd>/mlflow.db; http://HOST:PORT for a server)")
    o.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    o.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="extra MLflow tag on every run of the sweep (e.g. distill.study=NAME)")
    o.add_argument("--system-metrics", nargs="?", type=float, const=10.0, default=0.0, metavar="SECONDS",
                   help="log the trial machine's CPU, memory, disk, network (and GPU) use in each trial's MLflow "
                        "run as system/... metrics, with MLflow's monitors sampling every SECONDS (default 10) "
                        "and one average per evaluation")
    o.add_argument("--storage-path", default=None,
                   help="where sweeps, checkpoints, teachers and best students go (default ./ray_results; "
                        "shared storage on a cluster)")
    return o


def add_multi_method_args(p: argparse.ArgumentParser) -> None:
    """``--methods`` (a multi-method search; ``--method auto``: every method that fits) and
    ``--budget`` (what ASHA compares trials at), in the search group."""
    from trainables.options import option_group

    from tuner.budget import BUDGETS, DEFAULT, UNITS

    g = option_group(p, "search")
    # dest search_methods: tuner.reproduce has its own --methods (one sweep per method) and builds
    # each sweep's spec with spec_from_args
    g.add_argument("--methods", dest="search_methods", default=None, metavar="M1,M2,...",
                   help="search over these methods in one study: the method is a searched choice and each "
                        "method's own space follows it (--method auto: every method that fits the "
                        "teacher/student pair; see docs/sweeps.md)")
    g.add_argument("--budget", default=DEFAULT, choices=list(BUDGETS),
                   help="what ASHA compares trials at: " + "; ".join(f"{k}: {v}" for k, v in UNITS.items())
                        + f" (default {DEFAULT}; with time, --grace-period is in training seconds)")


def _methods_of(args: argparse.Namespace) -> list[str] | None:
    """The multi-method list of the command line (``--methods`` or ``--method auto``), or None."""
    from tuner.method_choice import AUTO, split_methods

    methods = split_methods(getattr(args, "search_methods", None))
    if methods and args.method:
        raise UserError(f"give either --method or --methods, not both (got --method {args.method} and "
                        f"--methods {args.search_methods})")
    if args.method == AUTO:
        return [AUTO]
    return methods


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def spec_from_args(args: argparse.Namespace):
    """The :class:`~tuner.sweep.SweepSpec` of a parsed command line."""
    from search_spaces.overrides import load_space_file
    from trainables.config import DistillConfig, parse_assignments
    from trainables.methods import get_method
    from trainables.run import config_from_args

    from tuner.spec import SweepSpec

    methods = _methods_of(args)
    if not args.method and not methods:
        raise UserError("--method (or --methods M1,M2 / --method auto) is required (see --list for the methods)")
    method = args.method if not methods else DistillConfig().method if methods == ["auto"] else methods[0]
    get_method(method)
    fixed = parse_assignments(args.assignments)
    if args.student_layers is not None:
        fixed["student_layers"] = args.student_layers
    cfg = config_from_args(args, method=method)  # every field, typed and checked
    config = {k: v for k, v in cfg.to_dict().items() if k not in fixed and k != "method"}
    space = None
    if args.space:
        load_space_file(args.space)  # validated here: errors name the file
        import yaml

        with open(args.space) as fh:
            space = yaml.safe_load(fh) or {}
    grid = {k.replace("-", "_"): [v.strip() for v in vals.split(",") if v.strip()]
            for k, vals in _pairs(args.grid, "--grid").items()}
    return SweepSpec(
        method=method, methods=methods, budget=getattr(args, "budget", "steps"), config=config, fixed=fixed, space=space, grid=grid or None,
        num_samples=args.num_samples, scheduler=args.scheduler, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, max_concurrent=args.max_concurrent, **pbt_fields(args),
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        evals_per_epoch=args.evals_per_epoch, checkpoint_every=args.checkpoint_every,
        max_failures=args.max_failures,
        search_seed=args.search_seed, defaults_first=args.defaults_first,
        objectives=args.objectives, students=args.students,
        study_storage=args.study_storage, study_name=args.study_name, register_model=args.register_model, seeds=args.seeds, mlflow_uri=args.mlflow_uri,
        experiment=args.experiment, storage_path=args.storage_path, name=args.name, address=args.address,
        tags=_pairs(args.tag, "--tag"), output_json=args.output_json, verbose=0 if args.quiet else 1,
        system_metrics=args.system_metrics)


def pbt_fields(args: argparse.Namespace) -> dict:
    from tuner import pbt

    return pbt.spec_fields(args)


def listing() -> str:
    """Methods (with their own options, from the schema), tasks and each method's search space."""
    from search_spaces.defaults import SPACES
    from search_spaces.registry import describe_space
    from trainables.methods import METHODS
    from trainables.options import method_rows
    from trainables.tasks import TASKS

    lines = ["methods (their own options; --help lists every hyperparameter):"]
    for name, teacher, options in method_rows():
        own = "" if name in SPACES else "  (base space)"
        lines.append(f"  {name:18s} {teacher}{own}" + (f"; options: {', '.join(options)}" if options else ""))
    lines.append("tasks:")
    for name, task in TASKS.items():
        lines.append(f"  {name:18s} primary metric {task.primary_metric}; metrics {', '.join(task.metrics)}")
    lines.append("  (or a folder with train/dev files: --task PATH --text-columns a[,b] --label-column y)")
    lines.append("search spaces (override with --space FILE, fix with --set key=value):")
    for name in METHODS:
        lines.append(f"  {name}:")
        for param, rng in describe_space(name):
            lines.append(f"    {param:16s} {rng}")
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    if args.list:
        print(listing())
        return None
    from tuner.spec import SweepSpec
    from tuner.sweep import run_sweep

    if args.resume:
        if not args.name:
            raise UserError("--resume needs --name of the sweep to continue")
        spec = SweepSpec(method=args.method or "", storage_path=args.storage_path, name=args.name,
                         address=args.address, mlflow_uri=args.mlflow_uri, output_json=args.output_json,
                         verbose=0 if args.quiet else 1)
        summary = run_sweep(spec, resume=True)
    else:
        summary = run_sweep(spec_from_args(args))
        if args.quiet:
            print(json.dumps({k: summary[k] for k in ("best_metric", "metric_name", "best_config", "counts",
                                                      "best_student_path")}, default=str))
    return summary


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result and result.get("interrupted"):  # a calling script sees the interrupt (128 + SIGINT)
        sys.exit(INTERRUPTED_EXIT)
