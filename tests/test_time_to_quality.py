"""The time-to-quality column of analysis.compare, from step metrics in a real SQLite store."""

from __future__ import annotations

import math

import pandas as pd

from analysis import compare
from analysis.time_to_quality import COLUMN, seconds_to_reach
from analysis_fill import Filler


def _curve(scores, seconds, every=10):
    steps = [every * (i + 1) for i in range(len(scores))]
    return {"eval_score": list(zip(steps, scores)), "step_seconds": list(zip(steps, seconds))}


def test_each_methods_best_trial_is_timed_to_kds_best(tmp_path, capsys):
    fill = Filler(str(tmp_path / "mlflow.db"))
    # KD's best is 0.85 (its best trial reaches it at its 2nd evaluation, after 10 s of steps)
    fill.trial("kd", 0.85, history=_curve([0.80, 0.85, 0.84], [5.0, 10.0, 15.0]), sweep="kd")
    fill.trial("kd", 0.70, history=_curve([0.70], [3.0]), sweep="kd", seed=2)
    # metadistil's best passes 0.85 at its 2nd evaluation (40 s); an earlier, lower peak does not count
    fill.trial("metadistil", 0.90, history=_curve([0.849, 0.86, 0.90], [20.0, 40.0, 60.0]), sweep="md")
    # pkd never gets there
    fill.trial("pkd", 0.84, history=_curve([0.80, 0.84], [4.0, 8.0]), sweep="pkd")
    table = compare.main(["--task", "sst2", "--mlflow-uri", fill.uri, "--out", str(tmp_path / "out")])
    got = dict(zip(table["method"], table[COLUMN]))
    assert got["kd"] == 10.0 and got["metadistil"] == 40.0 and math.isinf(got["pkd"])
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "To KD's best" in md and "| never |" in md and "40.0 s" in md


def test_without_step_seconds_or_a_kd_run_there_is_no_time():
    assert math.isnan(seconds_to_reach(pd.DataFrame({"step": [1], "eval_score": [0.9]}), 0.5))
    assert seconds_to_reach(pd.DataFrame({"step": [2, 1], "eval_score": [0.9, 0.6], "step_seconds": [8.0, 4.0]}),
                            0.5) == 4.0
