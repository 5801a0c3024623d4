"""How each method fared in a multi-method sweep (``tuner.launch --methods`` / ``--method auto``):
its best dev score so far against its number of trials and against its measured training seconds.

    python -m analysis.method_search --sweep NAME [--mlflow-uri URI] [--experiment E] [--out DIR]

Read from the sweep's trial runs in MLflow (tag ``distill.method`` per trial): trials in the order
they started; a method's *k*-th point is its best ``best_eval_score`` over its first *k* trials,
at *k* (left panel) and at the training seconds (``step_seconds``: optimisation steps only,
evaluation excluded) its first *k* trials took together (right panel). Trials stopped early count
with the score and seconds they reached; errored trials count as trials and seconds without a
score. Writes ``method_search.png`` / ``.pdf`` (the project's figure style: score axis from 0,
the fine-tuned teacher's dev score dashed where recorded) and ``method_search.csv`` (one row
per trial: ``method``, ``trial``, ``run_id``, ``score``, ``seconds``, ``best_so_far``,
``seconds_so_far``) into ``--out`` (default ``reports/<sweep>``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import pandas as pd

from analysis.compare import add_store_args, add_teacher_score_arg
from analysis.figure_style import (TEACHER_STYLE, outside_legend, save_figure, series_style, set_score_axis,
                                   teacher_lines, teacher_values)
from analysis.store import Store, score_column, task_metrics
from analysis.teacher_ref import teacher_scores
from trainables.errors import UserError, check_writable_dir, exit_on_user_error

FILE = "method_search"


def progress(runs: pd.DataFrame) -> pd.DataFrame:
    """Per trial, in start order within each method (first-seen order of the methods): its score
    and training seconds, and the method's best score and training seconds so far."""
    score = score_column(runs)
    seconds = runs["step_seconds"] if "step_seconds" in runs else pd.Series(math.nan, index=runs.index)
    frame = pd.DataFrame({"method": runs["method"], "run_id": runs["run_id"], "start": runs["start_time"],
                          "score": runs[score].astype(float), "seconds": seconds.astype(float).fillna(0.0)})
    frame = frame.sort_values("start", kind="stable")
    order = list(dict.fromkeys(frame["method"]))
    parts = []
    for method in order:
        part = frame[frame["method"] == method].copy()
        part["trial"] = range(1, len(part) + 1)
        part["best_so_far"] = part["score"].cummax()
        part["seconds_so_far"] = part["seconds"].cumsum()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    return out[["method", "trial", "run_id", "score", "seconds", "best_so_far", "seconds_so_far"]]


def figure(points: pd.DataFrame, *, metric: str, title: str, teachers=None):
    """Two panels sharing the score axis: best so far vs trials, and vs training seconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, sharey=True)
    values = list(points["best_so_far"].dropna()) + teacher_values(teachers)
    for i, (method, part) in enumerate(points.groupby("method", sort=False)):
        style = series_style(i)
        for ax, x in ((left, "trial"), (right, "seconds_so_far")):
            ax.plot(part[x], part["best_so_far"], drawstyle="steps-post", **style,
                    label=f"{method} ({len(part)} trials)" if ax is right else None)
    set_score_axis(left, values, f"best dev {metric} so far")
    for ax, label in ((left, "trials of the method"), (right, "training seconds of the method (steps only)")):
        ax.set_xlabel(label)
    teacher_lines(right, teachers)
    for ref in teachers or ():
        left.axhline(ref.value, zorder=1.5, **TEACHER_STYLE)
    left.set_xticks(range(1, int(points["trial"].max()) + 1))
    outside_legend(right)
    fig.suptitle(title)
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.method_search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", required=True, help="the multi-method sweep's name")
    add_store_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default: reports/<sweep>)")
    add_teacher_score_arg(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = build_parser().parse_args(argv)
    out_dir = check_writable_dir(args.out or os.path.join("reports", args.sweep), "--out")
    store = Store(args.mlflow_uri, args.experiment)
    runs = store.runs(sweep=args.sweep, include_failed=True)
    runs = runs[runs["seed_rerun"].fillna(False) == False]  # noqa: E712  (the search's trials only)
    runs = runs[runs["method"].notna()]
    if runs.empty:
        raise UserError(f"sweep {args.sweep!r} has no trial runs with a method")
    task = str(runs["task"].dropna().iloc[0]) if runs["task"].notna().any() else None
    primary, _ = task_metrics(task, runs)
    points = progress(runs)
    teachers = teacher_scores(store, runs, primary, given=args.teacher_score)
    fig = figure(points, metric=primary, teachers=teachers,
                 title=f"{args.sweep}: {', '.join(dict.fromkeys(points['method']))} on {task}")
    paths = save_figure(fig, os.path.join(out_dir, FILE))
    csv = os.path.join(out_dir, f"{FILE}.csv")
    points.to_csv(csv, index=False)
    print(points.to_string(index=False))
    print("\nwrote " + ", ".join([*paths, csv]))
    return points


if __name__ == "__main__":
    main(sys.argv[1:])
