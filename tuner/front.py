"""The end of a multi-objective sweep (:mod:`tuner.objectives`): the Pareto front of its finished
trials (:mod:`analysis.pareto`), the front's students saved, the table and figure written and
logged on the sweep's parent run, and the sweep's *best* trial.

The front is computed here from the trials' final metrics, not read from Optuna's study (which
lives inside Ray's searcher): the trials that trained to the end and reported every objective.
The sweep's best trial (``best_*`` of the summary, ``best_student/``, the MLflow model) is the
front's highest ``eval_score`` (a tie goes to the lower trial id); as the trial with the highest
score overall is always on the front, this is the single-objective sweep's best too, unless a
trial with an equal score has lower costs.

Files, in ``<storage>/<sweep>/pareto/``: ``pareto.csv``, ``pareto.md``, ``pareto.png``,
``pareto.pdf`` (also artifacts ``pareto/`` of the parent run) and ``students/<trial_id>/``: each
front trial's selected student (``save_pretrained`` + tokenizer).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from tuner import summary as summaries, tracking

FRONT_DIR = "pareto"
STUDENTS_DIR = "students"


@dataclass
class Front:
    objectives: list[str]
    frame: Any                      # analysis.pareto.front_frame: every finished trial, on_front
    trials: dict[str, dict]         # trial id -> the trial (tuner.summary.collect_trials)

    @property
    def best(self) -> dict | None:
        """The front's highest eval_score (the frame is sorted front first, best score first)."""
        front = self.frame[self.frame["on_front"]]
        return self.trials[front.iloc[0]["trial_id"]] if len(front) else None


def _row(trial: dict, base: dict, objectives: list[str]) -> dict:
    metrics, config = trial["metrics"], trial["config"]
    layers = metrics.get("student_layers", config.get("student_layers", base.get("student_layers")))
    student = config.get("student", base.get("student"))
    return {"trial_id": trial["trial_id"], "method": config.get("method", base.get("method")),
            "student_id": student or f"{base.get('teacher')}[:{layers}]", "student_layers": layers,
            **{o: metrics.get(o) for o in objectives}}


def front_of(spec, prep, trials: list[dict]) -> Front | None:
    """The front of a multi-objective sweep's trials (None for a single-objective sweep)."""
    from analysis.pareto import front_frame

    if not spec.objectives:
        return None
    done = [t for t in trials if t["status"] == tracking.STATUS_TERMINATED]
    base = {**prep.base, "method": spec.method}
    frame = front_frame([_row(t, base, spec.objectives) for t in done], spec.objectives)
    return Front(list(spec.objectives), frame, {t["trial_id"]: t for t in done})


def save(front: Front, spec, tracking_uri: str, parent_run_id: str) -> dict[str, Any]:
    """Export the front's students, write and log the table and figure; returns the summary's
    ``pareto`` section."""
    from analysis.pareto import write_outputs
    from tuner.mlflow_schema import OBJECTIVE_MODES

    out = os.path.join(spec.experiment_dir, FRONT_DIR)
    paths = []
    for trial_id, on_front in zip(front.frame["trial_id"], front.frame["on_front"]):
        saved = (summaries.export_student(front.trials[trial_id], os.path.join(out, STUDENTS_DIR, trial_id))
                 if on_front else None)
        paths.append(saved)
    front.frame["student_path"] = paths
    files = write_outputs(front.frame, front.objectives, out, f"Pareto front of sweep {spec.name}")
    try:
        client = tracking.client(tracking_uri)
        for path in files.values():
            client.log_artifact(parent_run_id, path, FRONT_DIR)
    except Exception as err:  # the sweep's results never fail on tracking
        print(f"warning: could not log the Pareto files to MLflow: {err}", file=sys.stderr)
    rows = front.frame[front.frame["on_front"]].to_dict("records")
    best = front.best
    return {"objectives": front.objectives, "modes": [OBJECTIVE_MODES[o] for o in front.objectives],
            "best_rule": "the front's highest eval_score",
            "best_trial_id": best["trial_id"] if best else None,
            "num_trials": len(front.frame), "front": [_public(r, front.objectives) for r in rows],
            "files": files, "students_dir": os.path.join(out, STUDENTS_DIR)}


def _public(row: dict, objectives: list[str]) -> dict:
    keys = ("trial_id", "label", "method", "student_id", "student_layers", *objectives, "student_path")
    return {k: (row[k].item() if hasattr(row.get(k), "item") else row.get(k)) for k in keys}


def format_front(section: dict) -> str:
    """The front as console lines (for :func:`tuner.summary.format_summary`)."""
    objectives = section["objectives"]
    lines = [f"Pareto front ({', '.join(f'{o} {m}' for o, m in zip(objectives, section['modes']))}): "
             f"{len(section['front'])} of {section['num_trials']} finished trials; best = {section['best_rule']}"]
    for row in section["front"]:
        values = ", ".join(f"{o}={row[o]:.4g}" if isinstance(row[o], float) else f"{o}={row[o]}" for o in objectives)
        lines.append(f"  {row['trial_id']} {row['label']}: {values}"
                     + (f" -> {row['student_path']}" if row.get("student_path") else ""))
    lines.append(f"  table and figure: {section['files'].get('md')}, {section['files'].get('png')}")
    return "\n".join(lines)
