"""Sensitivity studies (MetaDistil Fig. 2-4): the primary dev metric against one hyperparameter.

    python -m analysis.sensitivity --study {loss-weight,temperature,student-size} --task sst2 \\
        [--methods kd,metadistil] [--values 0.1,0.5,0.9] [--seeds N] [--from-mlflow] [--out DIR] \\
        [data / model / budget options of the launch CLI] [--mlflow-uri URI] [--storage-path DIR] \\
        [--address ADDR] [--gpus-per-trial G]

=============  ==================  ==========================================================
study          varied field        default values
=============  ==================  ==========================================================
loss-weight    ``alpha``           0.1, 0.3, 0.5, 0.7, 0.9
temperature    ``temperature``     1, 2, 5, 10
student-size   ``student_layers``  1, 2, 3, 4, 6 (clipped to the teacher's depth)
=============  ==================  ==========================================================

Running a study: for each method, one Ray Tune grid sweep over (studied value × seed), every other
hyperparameter fixed at the best trial recorded in the store for (task, method) (sensitivity-study
runs excluded), or at the defaults when there is none; ``--set`` and the budget options
(``--epochs``, ``--batch-size``, ``--max-seq-length``) win over both. Seeds are ``seed``, ``seed+1``,
... (``seed`` from ``--set``, default 42). Every trial is logged to MLflow tagged
``distill.study=<study>``.

``--from-mlflow`` runs nothing: it re-plots the study's recorded runs (all of them, or the given
``--methods`` / ``--values``).

Writes into ``--out`` (default ``reports/<task>``):

* ``sensitivity-<study>.csv``: one row per run (value × method × seed): method, value, seed, score
  (the task's primary dev metric, named in ``metric``), student parameters and layers, run id;
* ``sensitivity-<study>.png`` / ``.pdf``: one line per method, mean over seeds with ±1 std error
  bars (ddof=1) where a point has several seeds, the fine-tuned teacher's dev score as a dashed
  line where it is known (``--teacher-score`` gives it); the student-size study is plotted against
  the student's parameter count;
* ``sensitivity-<study>-summary.csv``: the plotted points (method, x, mean, std, n).

After a run, the four files are also logged as artifacts of an MLflow run tagged
``distill.role=study``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import pandas as pd

from analysis import plots
from analysis.compare import add_teacher_score_arg, format_count, split_list
from analysis.figure_style import figure_paths
from analysis.store import (DEFAULT_EXPERIMENT, TAG_ROLE, TAG_STUDY, TAG_TASK, Store, best_hparams,
                            score_column, task_metrics)
from analysis.teacher_ref import teacher_scores_of_points
from trainables.config import DistillConfig, parse_assignments
from trainables.errors import UserError, check_writable_dir, choice_error, exit_on_user_error
from tuner.tracking import check_tracking_uri, resolve_tracking_uri


@dataclass(frozen=True)
class Study:
    name: str
    param: str                   # the DistillConfig field the study varies
    values: tuple                # its default grid
    label: str                   # x-axis label
    log_x: bool = False


STUDIES: dict[str, Study] = {
    s.name: s for s in (
        Study("loss-weight", "alpha", (0.1, 0.3, 0.5, 0.7, 0.9), "α (weight of the distillation loss)"),
        Study("temperature", "temperature", (1.0, 2.0, 5.0, 10.0), "temperature T", log_x=True),
        Study("student-size", "student_layers", (1, 2, 3, 4, 6), "student parameters (layers)"),
    )
}
DEFAULT_METHODS = ("kd", "metadistil")
ROLE_STUDY = "study"


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise choice_error("study", name, STUDIES) from None


def parse_values(study: Study, text: str | None) -> list | None:
    """``--values 0.1,0.5`` -> typed values of the studied field (None when not given)."""
    items = split_list(text)
    if not items:
        return None
    return sorted({parse_assignments([f"{study.param}={v}"])[study.param] for v in items})


def clip_layers(values: list[int], depth: int) -> list[int]:
    """Student depths above the teacher's become the teacher's (duplicates merged)."""
    return sorted({min(int(v), depth) for v in values})


def teacher_depth(cfg: DistillConfig) -> int:
    """Number of layers of the teacher backbone the default student is cut from."""
    from transformers import AutoConfig

    from trainables.models import resolve_model

    source = resolve_model(cfg.teacher)
    try:
        return int(AutoConfig.from_pretrained(source).num_hidden_layers)
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"cannot read the depth of teacher {cfg.teacher!r}: {err}") from None


# ---- study data and figure ------------------------------------------------------------------------

def study_points(runs: pd.DataFrame, study: Study, task: str) -> pd.DataFrame:
    """One row per run: ``study, task, method, param, value, seed, metric, score, student_params,
    student_layers, run_id, sweep``, sorted by method, value, seed."""
    if study.param not in runs:
        raise UserError(f"the runs of study {study.name!r} have no param {study.param!r}")
    score = score_column(runs)
    primary, _ = task_metrics(task, runs)
    cols = {"student_params": pd.NA, "student_layers": pd.NA, "seed": pd.NA, "sweep": None}
    pts = pd.DataFrame({
        "study": study.name, "task": task, "method": runs["method"], "param": study.param,
        "value": runs[study.param], "seed": runs.get("seed", cols["seed"]), "metric": primary,
        "score": runs[score].astype(float),
        "student_params": runs.get("student_params", cols["student_params"]),
        "student_layers": runs.get("student_layers", cols["student_layers"]),
        "run_id": runs["run_id"], "sweep": runs.get("sweep", cols["sweep"])})
    return pts.sort_values(["method", "value", "seed"], kind="stable").reset_index(drop=True)


def plot_study(points: pd.DataFrame, study: Study, task: str, out_dir: str, teachers: list | None = None) -> dict:
    """Write the study's CSV, PNG, PDF and summary CSV; return ``{"csv", "png", "pdf", "summary",
    "plotted"}``. ``teachers``: reference lines (:func:`analysis.teacher_ref.teacher_scores`)."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"sensitivity-{study.name}")
    paths = {"csv": f"{stem}.csv", **{os.path.splitext(p)[1][1:]: p for p in figure_paths(stem)},
             "summary": f"{stem}-summary.csv"}
    points.to_csv(paths["csv"], index=False)
    metric = points["metric"].iloc[0] if len(points) else "score"
    title = f"{task}: dev {metric} against {study.param} ({study.name} study)"
    data = points.copy()
    x, ticks, log_x, xlabel = "value", None, study.log_x, study.label
    if study.param == "student_layers" and not data["student_params"].notna().all():
        xlabel = "student layers"  # sizes not recorded: plotted against the depth
    elif study.param == "student_layers":
        x = "student_params"
        data[x] = data[x].astype(float)
        ticks = {float(p): f"{format_count(p, significant=3)}\n({int(n)}L)" for p, n in
                 data[["student_params", "student_layers"]].drop_duplicates().itertuples(index=False)}
    data[x] = data[x].astype(float)
    plotted = plots.sensitivity_lines(data, paths["png"], x=x, value="score", xlabel=xlabel,
                                      ylabel=f"dev {metric}", title=title, log_x=log_x, tick_labels=ticks,
                                      teachers=teachers)
    plotted.insert(0, "x_column", x)
    plotted.to_csv(paths["summary"], index=False)
    return {**paths, "plotted": plotted}


def recorded_study(store: Store, study: Study, task: str, methods: list[str] | None = None,
                   values: list | None = None, sweeps: list[str] | None = None) -> pd.DataFrame:
    """The study's recorded runs as :func:`study_points` rows (UserError when there are none)."""
    runs = store.runs(task, method=methods, study=study.name)
    if sweeps is not None:
        runs = runs[runs["sweep"].isin(sweeps)]
    if values is not None:
        kept = runs[runs[study.param].astype(float).isin([float(v) for v in values])]
        if kept.empty:
            raise UserError(f"no runs of study {study.name!r} for task {task!r} at {study.param} in "
                            f"{values} (recorded values: {', '.join(f'{v:g}' for v in sorted(runs[study.param].dropna().unique()))})")
        runs = kept
    if runs.empty:
        raise UserError(f"no runs of study {study.name!r} for task {task!r} in experiment "
                        f"{store.experiment!r} at {store.uri}")
    return study_points(runs, study, task)


# ---- running a study ------------------------------------------------------------------------------

#: budget options of the launch CLI that are hyperparameters: given on the command line, they win
#: over the best recorded configuration
_BUDGET_OPTIONS = ("epochs", "batch_size", "max_seq_length")


def study_config(args: argparse.Namespace, method: str, store: Store | None, study: Study) -> tuple[DistillConfig, str]:
    """The fixed configuration of ``method`` for the study and where its hyperparameters came from:
    defaults < best recorded trial for (task, method) < ``--set`` and budget options."""
    from trainables.run import config_from_args

    cfg = config_from_args(args, method=method)
    given = set(parse_assignments(args.assignments)) | {o for o in _BUDGET_OPTIONS
                                                          if getattr(args, o, None) is not None}
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


def run_study(args: argparse.Namespace, study: Study, methods: list[str], values: list | None) -> tuple[list[str], str, list]:
    """One grid sweep per method over (studied value × seed), tagged ``distill.study``; returns
    the sweep names, the task as recorded and the values run."""
    from tuner import cluster
    from tuner.sweep import SweepSpec, run_sweep

    store = open_store_if_any(args.mlflow_uri, args.experiment)
    plans = []
    for method in methods:
        cfg, source = study_config(args, method, store, study)
        plans.append((method, cfg, source))
    for _, cfg, _ in plans:
        grid_values = study_values(study, values, cfg)
    first_seed = plans[0][1].seed
    seeds = [first_seed + i for i in range(args.seeds)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    task_label = os.path.basename(os.path.normpath(plans[0][1].task))
    names = []
    with cluster.connect(args.address):  # one Ray instance for every method's sweep
        for method, cfg, source in plans:
            name = f"study-{study.name}-{task_label}-{method}-{stamp}"
            print(f"{name}: {study.param} in {grid_values} × seed in {seeds}; other hyperparameters: "
                  f"{source}" + (" with --set / budget options" if args.assignments else ""))
            config = {k: v for k, v in cfg.to_dict().items() if k not in ("method", "output_dir")}
            spec = SweepSpec(method=method, config=config, grid={study.param: grid_values, "seed": seeds},
                             num_samples=1, scheduler="fifo", mlflow_uri=args.mlflow_uri,
                             experiment=args.experiment or DEFAULT_EXPERIMENT,
                             storage_path=args.storage_path, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             max_concurrent=args.max_concurrent, name=name,
                             tags={TAG_STUDY: study.name}, verbose=args.verbose)
            run_sweep(spec)
            names.append(name)
    return names, plans[0][1].task, grid_values


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

def build_parser() -> argparse.ArgumentParser:
    from trainables.run import add_model_and_data_args

    parser = argparse.ArgumentParser(prog="python -m analysis.sensitivity", description=__doc__,
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
    parser.add_argument("--mlflow-uri", default=None,
                        help="tracking URI (default: sqlite:///<cwd>/mlflow.db, as the sweeps)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: distill-tune)")
    parser.add_argument("--storage-path", default=None, help="Ray Tune storage path")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once")
    parser.add_argument("--verbose", type=int, default=1, help="Ray Tune's console output (0 silent .. 3)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda")
    parser.add_argument("--cache-dir", default=None, help="fine-tuned teacher cache")
    parser.add_argument("--eval-teacher", action="store_true", default=None,
                        help="also evaluate the (learning) teacher: curves for analysis.dynamics")
    add_teacher_score_arg(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
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
    sweeps, task, grid_values = run_study(args, study, methods, values)
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
