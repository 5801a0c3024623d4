"""Sensitivity studies (MetaDistil Fig. 2-4): what each study varies, its recorded runs as points, and
its figure. Reads the store only; :mod:`tuner.study` runs a study (``python -m tuner.study``, or
its alias ``python -m analysis.sensitivity``) and ``--from-mlflow`` re-plots one with this module.

=============  ==================  ==========================================================
study          varied field        default values
=============  ==================  ==========================================================
loss-weight    ``alpha``           0.1, 0.3, 0.5, 0.7, 0.9
temperature    ``temperature``     1, 2, 5, 10
student-size   ``student_layers``  1, 2, 3, 4, 6 (clipped to the teacher's depth)
=============  ==================  ==========================================================

Files written by :func:`plot_study` into the output folder:

* ``sensitivity-<study>.csv``: one row per run (value × method × seed): method, value, seed, score
  (the task's primary dev metric, named in ``metric``), student parameters and layers, run id;
* ``sensitivity-<study>.png`` / ``.pdf``: one line per method, mean over seeds with ±1 std error
  bars (ddof=1) where a point has several seeds, the fine-tuned teacher's dev score as a dashed
  line where it is known (``--teacher-score`` gives it); the student-size study is plotted against
  the student's parameter count;
* ``sensitivity-<study>-summary.csv``: the plotted points (method, x, mean, std, n).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from analysis import plots
from analysis.figure_style import figure_paths
from analysis.compare import format_count, split_list
from analysis.store import Store, score_column, task_metrics
from trainables.config import parse_assignments
from trainables.errors import UserError, choice_error


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
