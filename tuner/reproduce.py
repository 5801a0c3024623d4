"""One command for the comparison the papers make (MetaDistil Table 1): an equal-budget search per
method, its best config re-run with the same seeds for every method, and the table.

    python -m tuner.reproduce --tasks sst2 --methods kd,metadistil --num-samples 8 --seeds 3 \\
        --max-train-samples 2000 --out reports/reproduce

For every task and method: one sweep (``tuner.sweep.run_sweep``) whose :class:`~tuner.spec.SweepSpec` is the
same shared base for every method (trials, epochs, teacher, data, student, scheduler, resources,
``--set`` values: everything but the method and hence its own search space), then its best
config re-run with ``--seeds N`` seeds (``SweepSpec.seeds``: seeds ``s+1 .. s+N`` where ``s`` is
the config's ``seed``, default 42, so every method gets the same seed values and the runs pair up
by seed). The fine-tuned teachers are shared (they are cached by their settings).

Writes into ``--out`` (default ``reports/<name>``), via :mod:`analysis.paper_table`:
``reproduce.md`` (the table: per task a teacher row and one row per method, dev and, where the task
has a labelled test split, test metrics as mean ± sample std over seeds, n, and Δ vs KD: the mean
paired difference to ``kd`` over seeds with a paired two-sided t-test p-value), ``reproduce.csv``
(the tidy per-seed results: task, method, seed, metric, split, value; re-make everything with
``python -m analysis.paper_table --from reproduce.csv``; the rows: :mod:`tuner.seed_results`),
``reproduce_table.csv`` (the aggregated table) and ``reproduce.png`` / ``.pdf`` (grouped bars,
teacher dashed). The five files are logged as artifacts of one MLflow run (tag
``distill.role=reproduce``) in the experiment; every sweep's runs carry the tag
``distill.reproduce=<name>``.

Bad input (an unknown method or task, a bad ``--set``, ...) is one line on stderr and exit code 2,
before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from trainables.errors import UserError, choice_error, exit_on_user_error

DEFAULT_METHODS = ("kd", "metadistil")
DEFAULT_SEEDS = 3
ROLE_REPRODUCE = "reproduce"
#: on the reproduce run and on every run of its sweeps: the reproduce name
TAG_REPRODUCE = "distill.reproduce"
OUTPUT_PREFIX = "reproduce"


# ---- the command line -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from trainables.run import add_model_and_data_args

    from tuner.launch import LAUNCH_DEFAULTS, add_sweep_args

    p = argparse.ArgumentParser(prog="python -m tuner.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"methods to compare, comma-separated (default {','.join(DEFAULT_METHODS)}; Δ is "
                        "against kd)")
    add_model_and_data_args(p, several_tasks=True)
    p.set_defaults(epochs=LAUNCH_DEFAULTS["epochs"], batch_size=LAUNCH_DEFAULTS["batch_size"])
    o = add_sweep_args(p, single_method=False)
    p.set_defaults(seeds=DEFAULT_SEEDS)
    o.add_argument("--name", default=None,
                   help="name of this comparison (default reproduce-<time>); sweeps are <name>-<task>-<method>")
    o.add_argument("--out", default=None, help="output folder (default reports/<name>)")
    o.add_argument("--quiet", action="store_true", help="no trial tables")
    return p


def split_list(text: str | None) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))


def check_names(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The tasks and methods asked for; an unknown one is a UserError naming the valid ones."""
    from trainables.methods import METHODS
    from trainables.tasks import get_task

    methods = split_list(args.methods)
    if not methods:
        raise UserError(f"--methods names no method; valid: {', '.join(sorted(METHODS))}")
    for method in methods:
        if method not in METHODS:
            raise choice_error("method", method, sorted(METHODS))
    tasks = split_list(args.tasks)
    if not tasks:
        raise UserError("--tasks names no task")
    for task in tasks:
        get_task(task, args.text_columns, args.label_column)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1 (the table reports the seed re-runs), got {args.seeds}")
    return tasks, methods


def base_spec(args: argparse.Namespace, task: str, method: str):
    """The launch CLI's SweepSpec for ``task`` (the shared base of every method's sweep)."""
    from tuner.launch import spec_from_args

    ns = argparse.Namespace(**vars(args))
    ns.task, ns.method, ns.name, ns.output_json = task, method, None, None
    return spec_from_args(ns)


def method_spec(base, method: str, name: str, tags: dict[str, str]):
    """``base`` with only the method, the sweep name and the tags changed."""
    return dataclasses.replace(base, method=method, name=name, tags={**base.tags, **tags},
                               config=dict(base.config), fixed=dict(base.fixed))


def plan(args: argparse.Namespace, tasks: list[str], methods: list[str], name: str) -> list[tuple[str, str, Any]]:
    """(task, method, SweepSpec) of every sweep, all checked (config, data, space, no name clash)."""
    from tuner.record import RECORD_FILE
    from tuner.spec import normalise, prepare_sweep

    out = []
    for task in tasks:
        base = base_spec(args, task, methods[0])
        short = os.path.basename(os.path.normpath(task))
        for method in methods:
            spec = normalise(method_spec(base, method, f"{name}-{short}-{method}", {TAG_REPRODUCE: name}))
            if os.path.isfile(os.path.join(spec.experiment_dir, RECORD_FILE)):
                raise UserError(f"a sweep named {spec.name!r} already exists in {spec.storage_path}; "
                                f"choose another --name")
            prepare_sweep(spec)  # a bad config, space or dataset fails here, before anything runs
            out.append((task, method, spec))
    return out


# ---- the run --------------------------------------------------------------------------------------

def _log_reproduce_run(client, experiment_id: str, name: str, tasks, methods, args, sweeps) -> str:
    from tuner import tracking

    run = client.create_run(experiment_id, run_name=name, tags={
        tracking.TAG_ROLE: ROLE_REPRODUCE, TAG_REPRODUCE: name, tracking.TAG_TASK: ",".join(tasks),
        "distill.methods": ",".join(methods)})
    params = {"tasks": ",".join(tasks), "methods": ",".join(methods), "num_samples": args.num_samples,
              "seeds": args.seeds, "epochs": args.epochs, "batch_size": args.batch_size,
              "max_train_samples": args.max_train_samples, "teacher": args.teacher,
              "student_layers": args.student_layers, "scheduler": args.scheduler or "asha",
              "max_concurrent": args.max_concurrent, "cpus_per_trial": args.cpus_per_trial,
              "gpus_per_trial": args.gpus_per_trial, "set": ";".join(args.assignments) or "None",
              "sweeps": ",".join(s.name for _, _, s in sweeps)}
    tracking.log_params(client, run.info.run_id, params)
    return run.info.run_id


def reproduce(args: argparse.Namespace) -> dict[str, Any]:
    from analysis.paper_table import write_outputs
    from tuner import cluster, tracking
    from tuner.record import read_record
    from tuner.seed_results import (seed_runs, student_rows, task_metric_order, teacher_param_count,
                                    teacher_rows, teachers_used)
    from tuner.sweep import run_sweep

    import pandas as pd

    tasks, methods = check_names(args)
    name = args.name or f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in (".", ".."):
        raise UserError(f"--name {name!r} must be a plain folder name")
    out_dir = os.path.abspath(args.out or os.path.join("reports", name))
    sweeps = plan(args, tasks, methods, name)
    uri = sweeps[0][2].mlflow_uri
    tracking.check_tracking_uri(uri)
    started = time.time()
    with cluster.connect(args.address):  # one Ray instance for every sweep
        experiment_id = tracking.ensure_experiment(uri, args.experiment)
        client = tracking.client(uri)
        run_id = _log_reproduce_run(client, experiment_id, name, tasks, methods, args, sweeps)
        try:
            rows, summaries = [], {}
            teachers: dict[str, dict[str, set]] = {}
            teacher_params: dict[str, float | None] = {}
            for task, method, spec in sweeps:
                if not args.quiet:
                    print(f"== {name}: {method} on {task} ({spec.num_samples} trials, then {spec.seeds} seeds) ==",
                          flush=True)
                summary = run_sweep(spec)
                summaries[(task, method)] = summary
                runs = seed_runs(uri, experiment_id, spec.name)
                order = task_metric_order(task, args)
                rows += student_rows(task, method, summary, runs, order)
                teacher_params.setdefault(task, teacher_param_count(summary))
                for path, seeds in teachers_used(runs, read_record(spec.experiment_dir)).items():
                    teachers.setdefault(task, {}).setdefault(path, set()).update(seeds)
            for task in tasks:
                rows += teacher_rows(task, teachers.get(task, {}), task_metric_order(task, args))
                if teacher_params.get(task) and any(r["method"] == "teacher" and r["task"] == task for r in rows):
                    rows.append({"task": task, "method": "teacher", "seed": None, "metric": "params",
                                 "split": "cost", "value": teacher_params[task]})
            if not any(r["method"] != "teacher" for r in rows):
                raise UserError("no seed re-run finished: nothing to tabulate (see the sweeps' errors above)")
            results = pd.DataFrame(rows)
            extra = (f"Each method: an Optuna/TPE search of {args.num_samples} trials "
                     f"({sweeps[0][2].scheduler_name}, {args.epochs} epoch(s), the same teacher, data and "
                     f"student), then its best config re-run with {args.seeds} seeds, the same seed values "
                     f"for every method. Sweeps: {', '.join(s.name for _, _, s in sweeps)}.")
            written = write_outputs(results, out_dir, prefix=OUTPUT_PREFIX, title=f"{name}: method comparison",
                                    extra=extra)
            for path in written["paths"].values():
                client.log_artifact(run_id, path)
            metrics = {}
            for _, r in written["table"].iterrows():
                for col in r.index:
                    if col.endswith(("_mean", "_delta", "_p")) and not pd.isna(r[col]):
                        metrics[f"{r['task']}/{r['method']}/{col}"] = float(r[col])
            tracking.log_metrics(client, run_id, metrics, 0)
            client.set_terminated(run_id, status="FINISHED")
        except BaseException:
            client.set_terminated(run_id, status="KILLED")
            raise
    print(written["markdown"])
    print(f"\nwrote {', '.join(written['paths'].values())}; MLflow run {run_id} "
          f"({time.time() - started:.0f}s)")
    return {"name": name, "run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri,
            "results": results, "table": written["table"], "paths": written["paths"],
            "markdown": written["markdown"], "summaries": summaries}


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    from tuner.console import sweep_console

    with sweep_console(args.quiet):  # also the comparison's own run: no MLflow 'View run' lines
        return reproduce(args)


if __name__ == "__main__":
    main(sys.argv[1:])
