"""The Pareto front of a multi-objective sweep (``--objectives``): which trials no other trial beats
on every objective at once, as a table and a figure.

    python -m analysis.pareto --sweep NAME [--experiment distill-tune] [--mlflow-uri URI] [--out DIR]

re-makes them from the sweep's trial runs in MLflow (the sweep itself writes the same files into
its results folder, :mod:`tuner.front`). The objectives are the sweep's own (its parent run's
``sweep.objectives`` param) unless ``--objectives`` names others; their directions are
:data:`tuner.mlflow_schema.OBJECTIVE_MODES` (``eval_score`` up, the costs down).

A trial is *on the front* when no other trial is at least as good on every objective and strictly
better on one (:func:`pareto_front`). Only trials that trained to the end count (seed re-runs and
failed or unfinished trials are left out), with their final metrics: ``eval_score`` is the best
dev evaluation's score (``best_eval_score``), the costs are the student's parameter count and its
latency measured on the trial's device. Two trials with equal values on every objective are both
on the front (neither dominates the other); a trial missing an objective's value is on no front.

Files written (``--out``, default ``reports/pareto/<sweep>``): ``pareto.csv`` (every trial, with an
``on_front`` column), ``pareto.md`` (the front, best score first) and ``pareto.png`` / ``.pdf``:
score against each cost objective (one panel per cost), every trial a point labelled with its
method and student (``kd 2L`` is the truncated 2-layer student, otherwise the student model's
name), the dominated ones grey, the front's in colour by method and joined by the front's
staircase when there is one cost.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import pandas as pd

from trainables.errors import UserError, exit_on_user_error
from tuner.mlflow_schema import DEFAULT_EXPERIMENT, OBJECTIVE_MODES, PARAM_OBJECTIVES

SCORE = "eval_score"
AXIS_LABELS = {"eval_score": "dev score (eval_score)", "student_params": "student parameters",
               "latency_ms": "student latency, batch 1 (ms)", "latency_ms_b32": "student latency, batch 32 (ms)"}
#: the table's columns besides the objectives
ID_COLUMNS = ("trial_id", "label", "method", "student_id", "student_layers")
TABLE = "pareto"


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """Whether point ``a`` dominates ``b``: at least as good on every objective (``max``: higher,
    ``min``: lower) and strictly better on one."""
    better = False
    for x, y, mode in zip(a, b, modes):
        x, y = (x, y) if mode == "max" else (-x, -y)
        if x < y:
            return False
        better |= x > y
    return better


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; a point with a missing or
    non-finite value is neither on the front nor dominates another."""
    if any(m not in ("max", "min") for m in modes):
        raise ValueError(f"modes must be max or min, got {list(modes)}")
    valid = [i for i, p in enumerate(points) if len(p) == len(modes) and all(_finite(v) for v in p)]
    return [i for i in valid
            if not any(dominates([float(v) for v in points[j]], [float(v) for v in points[i]], modes)
                       for j in valid if j != i)]


def check_objectives(objectives: Sequence[str]) -> list[str]:
    names = [str(o).strip() for o in objectives if str(o).strip()]
    unknown = [n for n in names if n not in OBJECTIVE_MODES]
    if unknown or SCORE not in names or len(names) < 2:
        raise UserError(f"objectives {','.join(names) or '(none)'}: need {SCORE} and at least one of "
                        f"{', '.join(n for n in OBJECTIVE_MODES if n != SCORE)}")
    return names


def student_label(student_id: object, layers: object) -> str:
    """``2L`` for the truncated default student (``<teacher>[:2]``), else the model's folder or name."""
    text = str(student_id or "")
    if not text or text.endswith("]") and "[:" in text:
        return f"{int(layers)}L" if _finite(layers) else "truncated"
    return os.path.basename(os.path.normpath(text)) or text


def front_frame(rows: Sequence[dict], objectives: Sequence[str]) -> pd.DataFrame:
    """One row per trial (``trial_id``, ``method``, ``student_id``, ``student_layers`` and the
    objectives' values) with ``label`` and ``on_front`` added; the front first, best score first."""
    objectives = check_objectives(objectives)
    frame = pd.DataFrame(list(rows)) if rows else pd.DataFrame(columns=[*ID_COLUMNS, *objectives])
    for col in (*ID_COLUMNS, *objectives):
        if col not in frame:
            frame[col] = None
    points = [[r[o] for o in objectives] for r in frame.to_dict("records")]
    front = set(pareto_front(points, [OBJECTIVE_MODES[o] for o in objectives]))
    frame["on_front"] = pd.Series([i in front for i in range(len(frame))], index=frame.index, dtype=bool)
    frame["label"] = [f"{m} {student_label(s, k)}" for m, s, k in
                      zip(frame["method"], frame["student_id"], frame["student_layers"])]
    extra = [c for c in frame.columns if c not in (*ID_COLUMNS, *objectives, "on_front")]
    frame = frame[[*ID_COLUMNS, *objectives, "on_front", *extra]]
    frame[SCORE] = pd.to_numeric(frame[SCORE], errors="coerce")
    return frame.sort_values(["on_front", SCORE, "trial_id"], ascending=[False, False, True],
                             na_position="last").reset_index(drop=True)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else ""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def markdown(frame: pd.DataFrame, objectives: Sequence[str], title: str) -> str:
    """The front's trials as a Markdown table (with ``student_path`` where the students were saved)."""
    front = frame[frame["on_front"]]
    cols = ["trial_id", "label", *objectives] + (["student_path"] if "student_path" in frame else [])
    lines = [f"# {title}", "",
             f"{len(front)} of {len(frame)} trials on the Pareto front of "
             + ", ".join(f"{o} ({OBJECTIVE_MODES[o]})" for o in objectives) + ".", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in front.to_dict("records"):
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def plot_front(frame: pd.DataFrame, objectives: Sequence[str], path: str, title: str) -> list[str]:
    """Score against each cost objective, the front highlighted (see the module docstring);
    returns the PNG and PDF paths."""
    from matplotlib.ticker import FuncFormatter

    from analysis.figure_style import new_figure, outside_legend, save_figure, series_style, set_score_axis

    costs = [o for o in objectives if o != SCORE]
    fig, axes = new_figure(width=4.6 * len(costs) + 1.6, height=4.2)
    if len(costs) > 1:
        fig.clear()
        axes = list(fig.subplots(1, len(costs), sharey=True))
    else:
        axes = [axes]
    data = frame.dropna(subset=[SCORE, *costs])
    methods = sorted(data.loc[data["on_front"], "method"].astype(str).unique())
    for ax, cost in zip(axes, costs):
        rest = data[~data["on_front"]]
        if len(rest):
            ax.scatter(rest[cost].astype(float), rest[SCORE], color="lightgray", edgecolor="gray", s=28,
                       label="dominated trials", zorder=2)
        front = data[data["on_front"]].sort_values(cost)
        if len(costs) == 1 and len(front) > 1:
            ax.step(front[cost].astype(float), front[SCORE], where="post", color="black", linewidth=0.8,
                    alpha=0.6, label="Pareto front", zorder=2.5)
        for i, method in enumerate(methods):
            part = front[front["method"].astype(str) == method]
            style = series_style(i)
            ax.scatter(part[cost].astype(float), part[SCORE], color=style["color"], marker=style["marker"],
                       s=48, edgecolor="black", linewidth=0.6, label=f"front: {method}", zorder=3)
        for row in data.to_dict("records"):  # every point labelled: method and student
            ax.annotate(row["label"], (float(row[cost]), row[SCORE]), textcoords="offset points",
                        xytext=(4, 5), fontsize=7, color="black" if row["on_front"] else "gray")
        values = data[cost].astype(float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 20:
            ax.set_xscale("log")
        elif cost == "student_params":  # millions, not an offset multiplier
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:.3g}M"))
        ax.margins(x=0.15)  # room for the labels of the outermost points
        ax.set_xlabel(AXIS_LABELS.get(cost, cost))
        set_score_axis(ax, data[SCORE], AXIS_LABELS[SCORE] if ax is axes[0] else "")
        ax.grid(alpha=0.3)
    outside_legend(axes[-1])
    fig.suptitle(title)
    return save_figure(fig, path)


def write_outputs(frame: pd.DataFrame, objectives: Sequence[str], out_dir: str, title: str) -> dict[str, str]:
    """``pareto.csv``, ``pareto.md``, ``pareto.png`` and ``pareto.pdf`` in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"csv": os.path.join(out_dir, f"{TABLE}.csv"), "md": os.path.join(out_dir, f"{TABLE}.md")}
    frame.to_csv(paths["csv"], index=False)
    with open(paths["md"], "w") as fh:
        fh.write(markdown(frame, objectives, title))
    png, pdf = plot_front(frame, objectives, os.path.join(out_dir, f"{TABLE}.png"), title)
    paths.update(png=png, pdf=pdf)
    return paths


# ---- from MLflow --------------------------------------------------------------------------------

def rows_from_store(store, sweep: str, objectives: Sequence[str]) -> list[dict]:
    """The sweep's finished trial runs (no seed re-runs) as :func:`front_frame` rows."""
    from tuner.mlflow_schema import STATUS_TERMINATED

    df = store.runs(sweep=sweep)
    if "seed_rerun" in df:
        df = df[~df["seed_rerun"].fillna(False).astype(bool)]
    if "trial_status" in df:
        df = df[df["trial_status"] == STATUS_TERMINATED]
    missing = [o for o in objectives if o not in df]
    if missing:
        raise UserError(f"the runs of sweep {sweep!r} have no {', '.join(missing)} metric (a sweep run before "
                        f"latency was measured?)")
    cols = [c for c in (*ID_COLUMNS, *objectives) if c in df and c != "label"]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in df[cols].to_dict("records")]


def sweep_objectives(store, sweep: str) -> list[str] | None:
    """The objectives the sweep searched (its parent run's param), None when it recorded none."""
    from tuner.mlflow_schema import ROLE_SWEEP

    parents = store.all_runs(role=ROLE_SWEEP)
    if parents.empty or "sweep" not in parents or PARAM_OBJECTIVES not in parents:
        return None
    values = parents.loc[parents["sweep"] == sweep, PARAM_OBJECTIVES].dropna()
    values = [v for v in values if str(v) not in ("None", "")]
    return str(values[0]).split(",") if values else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.pareto", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", required=True, help="the sweep's name (its --name)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--objectives", default=None,
                   help=f"comma-separated, from {', '.join(OBJECTIVE_MODES)} (default: the sweep's own)")
    p.add_argument("--out", default=None, help="output folder (default reports/pareto/<sweep>)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, str]:
    from analysis.store import Store

    args = build_parser().parse_args(argv)
    store = Store(args.mlflow_uri, args.experiment)
    objectives = (args.objectives.split(",") if args.objectives else sweep_objectives(store, args.sweep)
                  or [SCORE, "student_params"])
    objectives = check_objectives(objectives)
    frame = front_frame(rows_from_store(store, args.sweep, objectives), objectives)
    out = args.out or os.path.join("reports", "pareto", args.sweep)
    paths = write_outputs(frame, objectives, out, f"Pareto front of sweep {args.sweep}")
    print(markdown(frame, objectives, f"Pareto front of sweep {args.sweep}"))
    print("wrote " + ", ".join(paths.values()))
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
