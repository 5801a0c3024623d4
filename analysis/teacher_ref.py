"""The fine-tuned teacher's dev score: the reference line of the score figures.

Where it is found, in order (the first source that has it wins):

1. the value given on the command line (``--teacher-score``);
2. the sweep (parent) run of the plotted trials: its metric ``teacher_eval_<metric>`` (else
   ``teacher_eval_score`` when ``metric`` is the primary one), where the sweep logged the teacher's
   score;
3. the fine-tuned teacher's own record: ``teacher_info.json`` (``dev_metrics``) in the folder the
   trials name in their ``teacher_id`` param, when that folder exists on this machine.

A trial's own step metric ``teacher_eval_<metric>`` (``eval_teacher=true``) is not used: the meta
methods' teacher learns, so it is not the fine-tuned teacher's score. No source: no line.
Several teachers with different scores (e.g. a sweep over teachers): one line per teacher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from trainables.teacher_cache import INFO_FILE, read_info

TEACHER_METRIC_PREFIX = "teacher_eval_"


@dataclass(frozen=True)
class TeacherScore:
    value: float
    label: str      # legend label: "teacher", or "teacher <name>" when several
    source: str     # where the value was read


def _sweep_scores(store, runs: pd.DataFrame, keys: list[str]) -> dict[str, tuple[float, str]]:
    """{teacher id: (value, source)} from the parent runs of ``runs``."""
    out: dict[str, tuple[float, str]] = {}
    if "parent_run_id" not in runs or store is None:
        return out
    for parent, group in runs.groupby("parent_run_id", sort=True):
        try:
            metrics = store.client.get_run(parent).data.metrics
        except Exception:  # a parent deleted or not readable: no reference from it
            continue
        value = next((metrics[k] for k in keys if k in metrics), None)
        if value is not None:
            teacher = _teacher_name(group) or str(parent)
            out.setdefault(teacher, (float(value), f"sweep run {parent}"))
    return out


def _teacher_name(group: pd.DataFrame) -> str | None:
    if "teacher_id" not in group:
        return None
    ids = group["teacher_id"].dropna().astype(str).unique()
    return ids[0] if len(ids) == 1 else None


def _info_scores(runs: pd.DataFrame, metric: str, primary: bool) -> dict[str, tuple[float, str]]:
    """{teacher id: (value, source)} from the teacher folders' ``teacher_info.json``."""
    out: dict[str, tuple[float, str]] = {}
    if "teacher_id" not in runs:
        return out
    for teacher in runs["teacher_id"].dropna().astype(str).unique():
        if "," in teacher:  # several teachers distilled at once: no single reference
            continue
        path = os.path.join(teacher, INFO_FILE)
        dev = read_info(teacher).get("dev_metrics", {})
        value = dev.get(f"eval_{metric}", dev.get("eval_score") if primary else None)
        if isinstance(value, (int, float)):
            out[teacher] = (float(value), path)
    return out


def teacher_scores(store, runs: pd.DataFrame | None, metric: str, *, primary: bool = True,
                   given: float | None = None) -> list[TeacherScore]:
    """The teacher reference(s) of the figure of ``runs`` on dev ``metric`` (see the module
    docstring); an empty list when none is known. ``primary``: ``metric`` is the task's primary
    metric (``*_score`` names count as it)."""
    if given is not None:
        return [TeacherScore(float(given), "teacher", "--teacher-score")]
    if runs is None or len(runs) == 0:
        return []
    keys = [f"{TEACHER_METRIC_PREFIX}{metric}"] + ([f"{TEACHER_METRIC_PREFIX}score"] if primary else [])
    found = _sweep_scores(store, runs, keys)
    for teacher, entry in _info_scores(runs, metric, primary).items():
        found.setdefault(teacher, entry)
    by_value: dict[float, tuple[str, str]] = {}
    for teacher, (value, source) in sorted(found.items()):
        by_value.setdefault(round(value, 9), (teacher, source))
    if len(by_value) == 1:
        (value, (_, source)), = by_value.items()
        return [TeacherScore(value, "teacher", source)]
    return [TeacherScore(value, f"teacher {os.path.basename(os.path.normpath(t))}", source)
            for value, (t, source) in by_value.items()]


def teacher_scores_of_points(store, points: pd.DataFrame, *, given: float | None = None) -> list[TeacherScore]:
    """:func:`teacher_scores` of the runs behind a figure's points (columns ``run_id`` and
    ``metric``, the primary metric's name)."""
    if given is not None or store is None or points.empty:
        return teacher_scores(store, None, "score", given=given)
    runs = store.all_runs()
    return teacher_scores(store, runs[runs["run_id"].isin(set(points["run_id"]))],
                          str(points["metric"].iloc[0]))
