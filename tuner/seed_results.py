"""The per-seed results of :mod:`tuner.reproduce` as tidy rows (task, method, seed, metric, split,
value): the students' from each sweep's seed re-runs (its summary, plus the ``test_*`` metrics only
MLflow has), the teachers' from the fine-tuned teachers' ``teacher_info.json``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from trainables.trainable import is_number

#: metric keys that are not task metrics
_NOT_METRICS = ("score", "loss")


def task_metric_order(task: str, args: argparse.Namespace) -> list[str]:
    from trainables.tasks import get_task

    spec = get_task(task, args.text_columns, args.label_column)
    return [spec.primary_metric] + [m for m in spec.metrics if m != spec.primary_metric]


def split_metrics(metrics: dict[str, Any]) -> dict[tuple[str, str], float]:
    """{(split, metric): value} of a trial's final metrics: ``best_eval_<m>`` -> dev, ``test_<m>``
    (or ``best_test_<m>``) -> test, ``student_params`` (as ``params``) / ``speedup`` -> cost."""
    out: dict[tuple[str, str], float] = {}
    for key, value in metrics.items():
        if not is_number(value):
            continue
        for prefix, split in (("best_eval_", "dev"), ("test_", "test"), ("best_test_", "test")):
            if key.startswith(prefix):
                metric = key[len(prefix):]
                if metric not in _NOT_METRICS:
                    out.setdefault((split, metric), float(value))
        if key == "student_params":
            out[("cost", "params")] = float(value)
        elif key == "speedup":
            out[("cost", key)] = float(value)
    return out


def _ordered_rows(task: str, method: str, seed, values: dict[tuple[str, str], float],
                  order: list[str]) -> list[dict]:
    rank = {m: i for i, m in enumerate(order)}
    keys = sorted(values, key=lambda k: (("dev", "test", "cost").index(k[0]), rank.get(k[1], len(rank)), k[1]))
    return [{"task": task, "method": method, "seed": seed, "metric": m, "split": s, "value": values[(s, m)]}
            for s, m in keys]


def seed_runs(uri: str, experiment_id: str, sweep_name: str) -> dict[int, Any]:
    """The MLflow runs of a sweep's seed re-runs by seed."""
    from tuner import tracking

    out = {}
    for run in tracking.find_runs(uri, experiment_id, sweep_name):
        if run.data.tags.get(tracking.TAG_SEED_RERUN) == "true" and run.data.params.get("seed", "None") != "None":
            out[int(run.data.params["seed"])] = run
    return out


def student_rows(task: str, method: str, summary: dict, runs: dict[int, Any], order: list[str]) -> list[dict]:
    """Tidy rows of the finished seed re-runs of one sweep: the summary's final metrics, plus any
    ``test_*`` metric only MLflow has."""
    from tuner import tracking

    rows = []
    for trial in (summary.get("seeds") or {}).get("trials", []):
        if trial["status"] != tracking.STATUS_TERMINATED or "seed" not in trial["config"]:
            continue
        seed = int(trial["config"]["seed"])
        metrics = dict(trial["metrics"])
        run = runs.get(seed)
        if run is not None:
            for key, value in run.data.metrics.items():
                if key.startswith(("test_", "best_test_")):
                    metrics.setdefault(key, value)
        rows += _ordered_rows(task, method, seed, split_metrics(metrics), order)
    return rows


def teacher_info(path: str) -> dict | None:
    from trainables.teacher import INFO_FILE

    try:
        with open(os.path.join(path, INFO_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def teacher_values(info: dict) -> dict[tuple[str, str], float]:
    """{(split, metric): value} of a ``teacher_info.json``: ``dev_metrics`` and ``test_metrics``."""
    out = {}
    for split, key in (("dev", "dev_metrics"), ("test", "test_metrics")):
        for name, value in (info.get(key) or {}).items():
            if not is_number(value):
                continue
            for prefix in ("eval_", "test_"):
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            if name not in _NOT_METRICS:
                out[(split, name)] = float(value)
    return out


def teacher_rows(task: str, used: dict[str, set], order: list[str]) -> list[dict]:
    """The teacher row's tidy rows: one set per distinct fine-tuned teacher ``used`` ({path: seeds of
    the runs that distilled from it}); seed = that seed when it is one, else empty."""
    rows = []
    for path in sorted(used):
        info = teacher_info(path)
        if info is None:
            continue
        seeds = used[path]
        seed = next(iter(seeds)) if len(seeds) == 1 else None
        rows += _ordered_rows(task, "teacher", seed, teacher_values(info), order)
    return rows


def teachers_used(runs: dict[int, Any], record: dict) -> dict[str, set]:
    """{teacher path: seeds}: from the seed re-runs' ``teacher_id`` params, else the sweep record's
    ``teacher_paths`` (the search's teachers)."""
    used: dict[str, set] = {}
    for seed, run in runs.items():
        for path in str(run.data.params.get("teacher_id", "None")).split(","):
            if path and path != "None":
                used.setdefault(path, set()).add(seed)
    if not used:
        for path in record.get("teacher_paths") or []:
            used.setdefault(path, set()).add(None)
    return used


def teacher_param_count(summary: dict) -> float | None:
    for trial in (summary.get("seeds") or {}).get("trials", []):
        if trial["metrics"].get("teacher_params"):
            return float(trial["metrics"]["teacher_params"])
    return None
