"""Time to quality: how long each method's best trial trained before its dev score first reached
KD's best dev score (the ``analysis.compare`` column ``to_kd_best_s``).

Read from the trial's step metrics in MLflow: ``eval_score`` (the primary dev metric at each
evaluation) and ``step_seconds`` (seconds spent in optimisation steps so far, evaluation and
checkpoints excluded, so a slow evaluation or a busy store does not count against a method). A
trial that never reached KD's best gets NaN ("never" in the table); a method's row gets NaN also
when no KD run exists (nothing to reach) or its best trial recorded no ``step_seconds``.
"""

from __future__ import annotations

import math

import pandas as pd

REFERENCE_METHOD = "kd"
COLUMN = "to_kd_best_s"


def seconds_to_reach(history: pd.DataFrame, threshold: float) -> float:
    """Training seconds at the first evaluation whose ``eval_score`` is at least ``threshold``."""
    if history.empty or "eval_score" not in history or "step_seconds" not in history:
        return math.nan
    hit = history.dropna(subset=["eval_score", "step_seconds"])
    hit = hit[hit["eval_score"] >= threshold].sort_values("step")
    return float(hit["step_seconds"].iloc[0]) if not hit.empty else math.inf


def add_column(table: pd.DataFrame, store, primary: str) -> pd.DataFrame:
    """``table`` (one row per method, with ``best_run_id`` and ``<primary>_best``) with
    :data:`COLUMN`: seconds (inf = never reached) or NaN (no KD reference / nothing recorded)."""
    table = table.copy()
    kd = table[table["method"] == REFERENCE_METHOD]
    if kd.empty:
        table[COLUMN] = math.nan
        return table
    threshold = float(kd[f"{primary}_best"].iloc[0])
    table[COLUMN] = [seconds_to_reach(store.metric_history(run_id, ["eval_score", "step_seconds"]), threshold)
                     for run_id in table["best_run_id"]]
    return table


def format_seconds(value: float) -> str:
    if pd.isna(value):
        return "–"
    if math.isinf(value):
        return "never"
    return f"{value / 60:.1f} min" if value >= 600 else f"{value:.1f} s"
