"""A population-based training trial's hyperparameter schedule against the training step.

    python -m analysis.schedule --experiment NAME [--sweep NAME] [--method M] [--task T] [--out DIR]
    python -m analysis.schedule --run-id ID [--mlflow-uri URI] [--out DIR]

The trial is ``--run-id``, else the best trial (highest best dev score) among the runs that
recorded a schedule (a ``--scheduler pbt`` sweep's trials log each searched hyperparameter's
current value as the step metric ``hp/<name>`` at every evaluation), filtered by ``--sweep``,
``--method`` and ``--task``. The figure has one panel per PBT-perturbed hyperparameter the run
logged (λ ``student_lr`` and μ ``teacher_lr`` / ``reptile_mu`` on a log axis, α ``alpha``, T
``temperature``) and the dev score below them: a value logged at an evaluation is the one the
student trained with since the previous evaluation, so each is drawn as a step line up to that
evaluation; dotted vertical lines mark the exploits (the trial continued from another trial's
checkpoint with perturbed values; ``pbt_exploit``). Writes ``schedule-<method>-<run>.png`` /
``.pdf`` and the plotted data as ``.csv``.

Finding nothing to plot (no store, experiment or run with a schedule) is one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from analysis import figure_style as fs
from analysis.compare import add_store_args
from analysis.store import Store, best_run
from trainables.errors import UserError, exit_on_user_error

HP_PREFIX = "hp/"          # the trials' schedule metrics (trainables.trainable.HP_PREFIX)
EXPLOIT = "pbt_exploit"    # 1 at the first evaluation after an exploit (trainables.trainable.EXPLOIT)
#: the perturbed hyperparameters, in panel order: (name, axis label, log axis)
PANELS = (("student_lr", "λ (student lr)", True), ("teacher_lr", "μ (teacher lr)", True),
          ("reptile_mu", "μ (reptile)", True), ("alpha", "α (distillation weight)", False),
          ("temperature", "T (temperature)", False))
SCORE = "eval_score"


def schedule_curves(store: Store, run_id: str) -> pd.DataFrame:
    """``step``, one column per logged perturbed hyperparameter (``student_lr``, ``alpha``, ...),
    ``eval_score`` and ``exploit`` (1 at the first evaluation after an exploit) of a run."""
    keys = [f"{HP_PREFIX}{name}" for name, _, _ in PANELS]
    hist = store.metric_history(run_id, [*keys, SCORE, EXPLOIT])
    present = [k for k in keys if k in hist]
    if not present:
        raise UserError(f"run {run_id} has no hyperparameter schedule (no {', '.join(keys)} metrics): only the "
                        f"trials of a --scheduler pbt sweep log one")
    hist = hist[hist[present].notna().any(axis=1)]
    out = hist.rename(columns={k: k[len(HP_PREFIX):] for k in present})
    out["exploit"] = out[EXPLOIT].fillna(0).astype(int) if EXPLOIT in out else 0
    return out.drop(columns=[EXPLOIT], errors="ignore").reset_index(drop=True)


def exploit_steps(curves: pd.DataFrame) -> list[int]:
    """The steps at which the run's exploits took effect: the evaluation before each first
    evaluation after an exploit (the cloned checkpoint's step)."""
    steps = curves["step"].tolist()
    return [int(steps[i - 1]) for i in range(1, len(steps)) if curves["exploit"].iloc[i]]


def schedule_figure(curves: pd.DataFrame, *, title: str = ""):
    """Step lines of each perturbed hyperparameter (and the dev score) against the step."""
    panels = [(n, label, log) for n, label, log in PANELS if n in curves and curves[n].notna().any()]
    if SCORE in curves and curves[SCORE].notna().any():
        panels.append((SCORE, "dev score", False))
    fig, axes = fs.new_figure(6.4, 1.9 * len(panels) + 0.6, rows=len(panels), sharex=True)
    axes = axes if isinstance(axes, list) else [axes]
    exploits = exploit_steps(curves)
    start = pd.DataFrame({"step": [0]})
    for i, ((name, label, log), ax) in enumerate(zip(panels, axes)):
        d = curves[["step", name]].dropna()
        if name != SCORE:  # the first value holds from step 0
            d = pd.concat([start.assign(**{name: d[name].iloc[0]}), d], ignore_index=True)
        fs.plot_series(ax, d["step"], d[name], i, len(panels), label=label, dodged=False,
                       drawstyle="steps-pre" if name != SCORE else "default", markersize=4)
        if log:
            ax.set_yscale("log")
        for j, x in enumerate(exploits):
            ax.axvline(x, color="grey", linestyle=":", linewidth=1.2, label="exploit" if i == j == 0 else None)
        ax.grid(alpha=0.3)
        if name == SCORE:  # the figures' score-axis rule
            fs.set_score_axis(ax, d[name], label)
        else:
            ax.set_ylabel(label)
        fs.outside_legend(ax)
    axes[-1].set_xlabel("training step")
    axes[0].set_title(title)
    return fig


def plot_run(store: Store, run_id: str, out_dir: str) -> dict:
    """The schedule figure of ``run_id``: ``{"png", "pdf", "csv", "data", "exploits"}``."""
    row = store.run(run_id)
    method, task = row.get("method"), row.get("task")
    curves = schedule_curves(store, run_id)
    stem = os.path.join(out_dir, f"schedule-{method}-{run_id[:8]}")
    fig = schedule_figure(curves, title=f"{method} on {task}: PBT schedule of trial {row.get('trial_id')}")
    png, pdf = fs.save_figure(fig, stem + ".png")
    curves.to_csv(stem + ".csv", index=False)
    return {"png": png, "pdf": pdf, "csv": stem + ".csv", "data": curves, "exploits": exploit_steps(curves)}


def pick_run(store: Store, *, sweep: str | None = None, method: str | None = None, task: str | None = None) -> str:
    """The best trial with a schedule among the runs matching the filters."""
    runs = store.runs(task, method=method, sweep=sweep)
    cols = [f"{HP_PREFIX}{name}" for name, _, _ in PANELS if f"{HP_PREFIX}{name}" in runs]
    scheduled = runs[runs[cols].notna().any(axis=1)] if cols else runs.iloc[0:0]
    if scheduled.empty:
        raise UserError(f"no trial with a hyperparameter schedule in experiment {store.experiment!r} (filters: "
                        f"sweep={sweep}, method={method}, task={task}); run a sweep with --scheduler pbt")
    return best_run(scheduled)["run_id"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.schedule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", default=None, help="the trial run to plot")
    parser.add_argument("--sweep", default=None, help="the best scheduled trial of this sweep")
    parser.add_argument("--method", default=None, help="only trials of this method")
    parser.add_argument("--task", default=None, help="only trials of this task")
    add_store_args(parser)
    parser.add_argument("--out", default=None, help="output folder (default: reports/schedule)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    store = Store(args.mlflow_uri, args.experiment)
    run_id = args.run_id
    if run_id is None:
        run_id = pick_run(store, sweep=args.sweep, method=args.method, task=args.task)
        print(f"best trial with a PBT schedule in experiment {store.experiment!r}: run {run_id}")
    out = plot_run(store, run_id, args.out or os.path.join("reports", "schedule"))
    print(f"wrote {out['png']}, {out['pdf']}, {out['csv']} ({len(out['exploits'])} exploit(s))")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
