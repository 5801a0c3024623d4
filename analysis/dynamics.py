"""Training dynamics of one run against the training step.

    python -m analysis.dynamics --run-id ID [--mlflow-uri URI] [--out DIR]
    python -m analysis.dynamics --experiment NAME --method M [--task T] [--mlflow-uri URI] [--out DIR]

With ``--method`` the run is the best successful trial of that method that has curves (on
``--task`` if given): for meta-adaptive-kd any trial, for other methods a trial run with
``eval_teacher=true``; sensitivity-study runs only when the method has no other such trial.
Writes, for each figure the run has data for, a PNG, a PDF and the CSV of its plotted data:

* ``dynamics-<method>-<run>-alpha-beta.png``: meta-adaptive-kd's loss weights α and β against the
  step (per step from the ``step_logs.csv`` artifact; else the per-evaluation means
  ``train_alpha``/``train_beta``);
* ``dynamics-<method>-<run>-teacher-student.png``: the teacher's and the student's dev primary
  metric against the step on one figure (runs with ``eval_teacher=true``: the meta methods'
  teacher learns, and its own accuracy may fall while the student's rises), with the fine-tuned
  teacher's dev score as a dashed reference line where it is known (:mod:`analysis.teacher_ref`;
  ``--teacher-score`` gives it).

Finding nothing to plot (no store, experiment, run or curves) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from analysis import plots
from analysis.compare import add_store_args, add_teacher_score_arg
from analysis.figure_style import figure_paths
from analysis.store import ARTIFACT_STEP_LOGS, Store, best_run, task_metrics
from analysis.teacher_ref import teacher_scores
from trainables.errors import UserError, exit_on_user_error

ALPHA_BETA_METHOD = "meta-adaptive-kd"
ALPHA_BETA_METRICS = {"train_alpha": "alpha", "train_beta": "beta"}
STUDENT_SCORE, TEACHER_SCORE = "eval_score", "teacher_eval_score"
TEACHER_PREFIX = "teacher_eval_"


def alpha_beta_curves(store: Store, run_id: str) -> pd.DataFrame | None:
    """``step, alpha, beta`` of a run (None when it logged neither)."""
    logs = store.artifact_csv(run_id, ARTIFACT_STEP_LOGS)
    if logs is not None and "step" in logs and {"alpha", "beta"} & set(logs.columns):
        cols = ["step"] + [c for c in ("alpha", "beta") if c in logs.columns]
        return logs[cols].dropna(how="all", subset=cols[1:]).reset_index(drop=True)
    hist = store.metric_history(run_id, ALPHA_BETA_METRICS)
    if len(hist.columns) == 1:
        return None
    return hist.rename(columns=ALPHA_BETA_METRICS)


def teacher_student_curves(store: Store, run_id: str, primary: str = "score") -> pd.DataFrame | None:
    """``step, student, teacher``: the dev ``primary`` metric of both at each evaluation
    (``eval_<primary>`` / ``teacher_eval_<primary>``, else the ``*_score`` keys); None when the
    teacher was not evaluated."""
    for student, teacher in ((f"eval_{primary}", f"{TEACHER_PREFIX}{primary}"), (STUDENT_SCORE, TEACHER_SCORE)):
        hist = store.metric_history(run_id, [student, teacher])
        if teacher in hist and student in hist:
            return hist.rename(columns={student: "student", teacher: "teacher"})
    return None


def _files(prefix: str, figure: str) -> dict[str, str]:
    files = {os.path.splitext(p)[1][1:]: p for p in figure_paths(f"{prefix}-{figure}")}
    return {**files, "csv": f"{prefix}-{figure}.csv"}


def plot_run(store: Store, run_id: str, out_dir: str, teacher_score: float | None = None) -> dict[str, dict]:
    """Every dynamics figure ``run_id`` has data for: ``{figure: {"png", "pdf", "csv", "data"}}``
    (the teacher-student figure also ``"teachers"``: its reference lines)."""
    row = store.run(run_id)
    method, task = row.get("method"), row.get("task")
    primary, _ = task_metrics(task, pd.DataFrame())
    prefix = os.path.join(out_dir, f"dynamics-{method}-{run_id[:8]}")
    out = {}
    ab = alpha_beta_curves(store, run_id)
    if ab is not None:
        files = _files(prefix, "alpha-beta")
        data = plots.step_curves(ab, files["png"], columns={"alpha": "α (distillation weight)",
                                                            "beta": "β (task-loss weight)"},
                                 ylabel="loss weight", title=f"{method} on {task}: α and β", panels=True)
        out["alpha-beta"] = {**files, "data": data}
    ts = teacher_student_curves(store, run_id, primary)
    if ts is not None:
        files = _files(prefix, "teacher-student")
        teachers = teacher_scores(store, row.to_frame().T, primary, given=teacher_score)
        data = plots.step_curves(ts, files["png"], columns={"teacher": "teacher (during training)",
                                                            "student": "student"},
                                 ylabel=f"dev {primary}", title=f"{method} on {task}: teacher and student",
                                 score=True, teachers=[(f"fine-tuned {t.label}", t.value) for t in teachers])
        out["teacher-student"] = {**files, "data": data, "teachers": teachers}
    if not out:
        raise UserError(f"run {run_id} ({method} on {task}) has no training dynamics to plot: α/β curves "
                        f"come from meta-adaptive-kd runs ({ARTIFACT_STEP_LOGS} or train_alpha/train_beta), "
                        f"teacher/student curves from runs with eval_teacher=true ({TEACHER_SCORE})")
    for fig in out.values():
        fig["data"].to_csv(fig["csv"], index=False)
    return out


def pick_run(store: Store, method: str, task: str | None = None) -> str:
    """The best trial of ``method`` that has curves to plot: any meta-adaptive-kd trial (α/β),
    else one run with ``eval_teacher=true``; sweep trials before sensitivity-study runs."""
    runs = store.runs(task, method=method)
    if method != ALPHA_BETA_METHOD:
        evaluated = runs["eval_teacher"].fillna(False).astype(bool) if "eval_teacher" in runs else False
        runs = runs[evaluated]
        if runs.empty:
            raise UserError(f"no {method} trial evaluated its teacher (eval_teacher=true), so there are no "
                            f"teacher/student curves; run it with --eval-teacher (python -m trainables.run or "
                            f"python -m analysis.sensitivity), or pass --run-id of such a run")
    swept = runs[runs["study"].isna()]
    return best_run(swept if len(swept) else runs)["run_id"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.dynamics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", default=None, help="the run to plot")
    parser.add_argument("--method", default=None, help="plot the best trial of this method")
    parser.add_argument("--task", default=None, help="with --method: only runs of this task")
    add_store_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default: reports/dynamics)")
    add_teacher_score_arg(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if bool(args.run_id) == bool(args.method):
        raise UserError("give either --run-id ID, or --method M (with --experiment NAME) to plot the "
                        "method's best trial")
    store = Store(args.mlflow_uri, args.experiment)
    run_id = args.run_id
    if run_id is None:
        run_id = pick_run(store, args.method, args.task)
        print(f"best {args.method} trial with curves in experiment {store.experiment!r}: run {run_id}")
    out = plot_run(store, run_id, args.out or os.path.join("reports", "dynamics"), args.teacher_score)
    for fig in out.values():
        print("wrote " + ", ".join(fig[k] for k in ("png", "pdf", "csv")))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
