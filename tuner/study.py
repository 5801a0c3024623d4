"""Running a sensitivity study (MetaDistil Fig. 2-4): the primary dev metric against one hyperparameter.

    python -m tuner.study --study {loss-weight,temperature,student-size} --task sst2 \\
        [--methods kd,metadistil] [--values 0.1,0.5,0.9] [--seeds N] [--from-mlflow] [--out DIR] \\
        [data / model / budget options of the launch CLI] [--mlflow-uri URI] [--storage-path DIR] \\
        [--address ADDR] [--gpus-per-trial G]

(``python -m analysis.sensitivity`` is the same command.)

Running a study: for each method, one Ray Tune grid sweep over (studied value × seed), every other
hyperparameter fixed at the best trial recorded in the store for (task, method) (sensitivity-study
runs excluded), or at the defaults when there is none; ``--set`` and the budget options
(``--epochs``, ``--batch-size``, ``--max-seq-length``) win over both. Each method's grid is its own
(student depths are clipped to the depth of that method's teacher). Seeds are ``seed``, ``seed+1``,
... (``seed`` from ``--set``, default 42). Every trial is logged to MLflow tagged
``distill.study=<study>``.

``--from-mlflow`` runs nothing: it re-plots the study's recorded runs (all of them, or the given
``--methods`` / ``--values``) with :mod:`analysis.studies`.

Writes the study's CSV, figure and summary CSV (below) into ``--out`` (default ``reports/<task>``).
After a run, the four files are also logged as artifacts of an MLflow run tagged
``distill.role=study``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from analysis.compare import add_teacher_score_arg, split_list
from analysis.store import Store, best_hparams
from analysis.studies import STUDIES, Study, clip_layers, get_study, parse_values, plot_study, recorded_study
from analysis.teacher_ref import teacher_scores_of_points
from trainables.config import DistillConfig, parse_assignments
from trainables.errors import UserError, check_writable_dir, exit_on_user_error
from tuner.mlflow_schema import (DEFAULT_EXPERIMENT, TAG_ROLE, TAG_STUDY, TAG_TASK, check_tracking_uri,
                                 resolve_tracking_uri)

DEFAULT_METHODS = ("kd", "metadistil")
ROLE_STUDY = "study"


def teacher_depth(cfg: DistillConfig) -> int:
    """Number of layers of the teacher backbone the default student is cut from."""
    from transformers import AutoConfig

    from trainables.models import resolve_model

    source = resolve_model(cfg.teacher)
    try:
        return int(AutoConfig.from_pretrained(source).num_hidden_layers)
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"cannot read the depth of teacher {cfg.teacher!r}: {err}") from None


def study_config(args: argparse.Namespace, method: str, store: Store | None, study: Study) -> tuple[DistillConfig, str]:
    """The fixed configuration of ``method`` for the study and where its hyperparameters came from:
    defaults < best recorded trial for (task, method) < ``--set`` and the options given (the
    hyperparameters with an option of their own: ``--epochs``, ``--batch-size``, ``--max-seq-length``,
    ``--student-layers``)."""
    from trainables.options import given_fields
    from trainables.run import config_from_args

    cfg = config_from_args(args, method=method)
    given = set(parse_assignments(args.assignments)) | given_fields(args)
    found = best_hparams(store, cfg.task, method) if store is not None else None
    if found is None:
        return cfg, "defaults"
    hparams, run_id = found
    keep = {k: v for k, v in hparams.items() if k not in given and k not in (study.param, "seed")}
    try:
        cfg = DistillConfig.from_dict({**cfg.to_dict(), **keep})
    except UserError as err:
        raise UserError(f"the best recorded {method} trial (run {run_id}) has an unusable "
                        f"configuration: {err}") from None
    return cfg, f"best recorded trial {run_id}"


def study_values(study: Study, values: list | None, cfg: DistillConfig) -> list:
    """The grid of the studied field: ``values`` or the study's default, student depths clipped to
    the teacher's."""
    values = sorted(values or study.values)
    if study.param == "student_layers":
        if cfg.student:
            raise UserError(f"--student {cfg.student!r} fixes the student model; the student-size study "
                            "varies the depth of the student cut from the teacher (leave out --student)")
        depth = teacher_depth(cfg)
        clipped = clip_layers(values, depth)
        if clipped != values:
            print(f"student_layers clipped to the teacher's {depth} layers: {clipped}")
        values = clipped
    elif not cfg.student:
        depth = teacher_depth(cfg)
        if cfg.student_layers > depth:
            raise UserError(f"student_layers={cfg.student_layers} is more than the {depth} layers of teacher "
                            f"{cfg.teacher!r}; pass --set student_layers=K with K <= {depth}")
    return values


def open_store_if_any(uri: str | None, experiment: str | None) -> Store | None:
    """The store to look best configurations up in, or None when nothing is recorded yet."""
    try:
        store = Store(uri, experiment)
        store.experiment_id
        return store
    except UserError:
        return None


def run_study(args: argparse.Namespace, study: Study, methods: list[str],
              values: list | None) -> tuple[list[str], str, dict[str, list]]:
    """One grid sweep per method over (its studied values × seed), tagged ``distill.study``;
    returns the sweep names, the task as recorded and each method's values run."""
    from tuner import cluster
    from tuner.spec import SweepSpec
    from tuner.sweep import run_sweep

    store = open_store_if_any(args.mlflow_uri, args.experiment)
    plans = []
    for method in methods:
        cfg, source = study_config(args, method, store, study)
        plans.append((method, cfg, source))
    grids = {method: study_values(study, values, cfg) for method, cfg, _ in plans}
    first_seed = plans[0][1].seed
    seeds = [first_seed + i for i in range(args.seeds)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    task_label = os.path.basename(os.path.normpath(plans[0][1].task))
    names = []
    with cluster.connect(args.address):  # one Ray instance for every method's sweep
        for method, cfg, source in plans:
            name = f"study-{study.name}-{task_label}-{method}-{stamp}"
            print(f"{name}: {study.param} in {grids[method]} × seed in {seeds}; other hyperparameters: "
                  f"{source}" + (" with --set / budget options" if args.assignments else ""))
            config = {k: v for k, v in cfg.to_dict().items() if k not in ("method", "output_dir")}
            spec = SweepSpec(method=method, config=config, grid={study.param: grids[method], "seed": seeds},
                             num_samples=1, scheduler="fifo", mlflow_uri=args.mlflow_uri,
                             experiment=args.experiment or DEFAULT_EXPERIMENT,
                             storage_path=args.storage_path, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             max_concurrent=args.max_concurrent, name=name,
                             tags={TAG_STUDY: study.name}, verbose=args.verbose,
                             system_metrics=args.system_metrics)
            run_sweep(spec)
            names.append(name)
    return names, plans[0][1].task, grids


def log_study_artifacts(store: Store, study: Study, task: str, files: list[str], info: dict) -> str:
    """An MLflow run tagged ``distill.role=study`` holding the study's files; returns its id."""
    client = store.client
    run = client.create_run(store.experiment_id, run_name=f"study-{study.name}-{task}",
                            tags={TAG_ROLE: ROLE_STUDY, TAG_STUDY: study.name, TAG_TASK: task})
    rid = run.info.run_id
    for key, value in info.items():
        client.log_param(rid, key, str(value))
    for path in files:
        client.log_artifact(rid, path)
    client.set_terminated(rid)
    return rid


# ---- CLI ------------------------------------------------------------------------------------------

def build_parser(prog: str = "python -m tuner.study") -> argparse.ArgumentParser:
    from trainables.options import add_config_options
    from trainables.run import add_model_and_data_args

    import analysis.studies

    studies = analysis.studies.__doc__.split("\n\n", 1)[1]  # the studies' table and files
    parser = argparse.ArgumentParser(prog=prog, description=__doc__ + "\n" + studies,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help=f"one of: {', '.join(STUDIES)}")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated (default when running: {','.join(DEFAULT_METHODS)}; with "
                             "--from-mlflow: every method recorded)")
    parser.add_argument("--values", default=None, help="comma-separated values of the studied field "
                        "(default: the study's grid)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point (default 1)")
    parser.add_argument("--from-mlflow", action="store_true", help="only re-plot recorded study runs")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<task>)")
    add_model_and_data_args(parser)
    add_config_options(parser, fields=("student_layers",))
    add_config_options(parser, groups=("resources", "tracking"), exclude=("output_dir",))
    parser.add_argument("--mlflow-uri", default=None,
                        help="tracking URI (default: sqlite:///<cwd>/mlflow.db, as the sweeps)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: distill-tune)")
    parser.add_argument("--storage-path", default=None, help="Ray Tune storage path")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once")
    parser.add_argument("--verbose", type=int, default=1, help="Ray Tune's console output (0 silent .. 3)")
    parser.add_argument("--system-metrics", nargs="?", type=float, const=10.0, default=0.0, metavar="SECONDS",
                        help="MLflow system metrics in each trial's run, sampled every SECONDS (default 10); "
                             "see python -m tuner.launch --help")
    add_teacher_score_arg(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None, *, prog: str = "python -m tuner.study") -> dict:
    args = build_parser(prog).parse_args(argv)
    study = get_study(args.study)
    values = parse_values(study, args.values)
    methods = split_list(args.methods)
    out_dir = check_writable_dir(args.out or os.path.join("reports", args.task), "--out")
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")

    if not args.from_mlflow:  # the sweeps log there: it must work before any starts
        check_tracking_uri(resolve_tracking_uri(args.mlflow_uri))
    if args.from_mlflow:
        store = Store(args.mlflow_uri, args.experiment)
        points = recorded_study(store, study, args.task, methods, values)
        result = plot_study(points, study, args.task, out_dir,
                            teacher_scores_of_points(store, points, given=args.teacher_score))
    else:
        result = _run_and_plot(args, study, methods or list(DEFAULT_METHODS), values, out_dir)
    print(result["plotted"].to_string(index=False))
    print("\nwrote " + ", ".join(result[k] for k in ("csv", "png", "pdf", "summary")))
    return result


def _run_and_plot(args, study: Study, methods: list[str], values: list | None, out_dir: str) -> dict:
    sweeps, task, grids = run_study(args, study, methods, values)
    runs = list(grids.values())
    grid_values = runs[0] if all(g == runs[0] for g in runs) else grids
    store = Store(args.mlflow_uri, args.experiment)
    points = recorded_study(store, study, task, methods, sweeps=sweeps)
    result = plot_study(points, study, args.task, out_dir,
                        teacher_scores_of_points(store, points, given=args.teacher_score))
    run_id = log_study_artifacts(store, study, task, [result[k] for k in ("csv", "png", "pdf", "summary")], {
        "study": study.name, "param": study.param, "values": grid_values, "methods": ",".join(methods),
        "seeds": args.seeds, "sweeps": ",".join(sweeps)})
    print(f"study figure and data logged to MLflow run {run_id}")
    return {**result, "sweeps": sweeps, "study_run_id": run_id}


if __name__ == "__main__":
    main(sys.argv[1:])
