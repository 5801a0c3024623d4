"""analysis.importance on a real SQLite MLflow store whose scores depend on one hyperparameter."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from analysis import importance
from analysis_fill import Filler
from trainables.errors import UserError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """24 KD trials where the score follows alpha (peak at 0.7) and ignores temperature and the
    learning rate; 3 metadistil trials (too few to rank)."""
    path = tmp_path_factory.mktemp("importance") / "mlflow.db"
    fill = Filler(str(path))
    rng = np.random.default_rng(0)
    for _ in range(24):
        alpha, temperature, lr = rng.uniform(0, 1), rng.uniform(1, 10), 10 ** rng.uniform(-5, -4)
        score = 0.9 - 0.5 * (alpha - 0.7) ** 2 + rng.normal(0, 0.002)
        fill.trial("kd", score, alpha=alpha, temperature=temperature, student_lr=lr, sweep="kd-sweep")
    for a in (0.2, 0.5, 0.8):
        fill.trial("metadistil", 0.8, alpha=a, sweep="md-sweep")
    return fill


def test_the_hyperparameter_that_drives_the_score_ranks_first(store, tmp_path):
    out = tmp_path / "out"
    results = importance.main(["--mlflow-uri", store.uri, "--task", "sst2", "--out", str(out)])
    assert [r["method"] for r in results] == ["kd"]  # metadistil skipped: 3 trials
    kd = results[0]
    assert set(kd["importances"]) == {"alpha", "temperature", "student_lr"}
    assert max(kd["importances"], key=kd["importances"].get) == "alpha"
    assert kd["importances"]["alpha"] > 0.5
    # the recommendation: alpha's best region is around the planted optimum, from the top trials
    alpha = next(r for r in kd["recommendation"] if r["hyperparameter"] == "alpha")
    low, high = (float(x) for x in alpha["best_region"].strip("[]").split(","))
    assert low <= 0.7 <= high and high - low < 0.5
    assert alpha["top_trials"] == 6 and alpha["trials"] == 24
    assert kd["study"].trials[0].distributions["student_lr"].log  # the space's log scale
    for name in ("importance_kd", "slices_kd"):
        assert os.path.getsize(out / f"{name}.png") > 0
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    saved = json.loads((out / "importance.json").read_text())
    assert saved[0]["importances"]["alpha"] == pytest.approx(kd["importances"]["alpha"])
    assert "| alpha |" in (out / "importance.md").read_text()


def test_too_few_trials_is_a_clear_error(store, tmp_path, capsys):
    runs = importance.Store(store.uri).runs("sst2", method="metadistil")
    with pytest.raises(UserError, match="metadistil: 3 scored trial\\(s\\); importances need at least 4"):
        importance.analyse(runs, "metadistil")
    with pytest.raises(SystemExit) as exit_:
        importance.main(["--mlflow-uri", store.uri, "--method", "metadistil", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "importances need at least 4" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fanova", "mdi"])
def test_other_optuna_evaluators_agree_on_the_planted_effect(store, name):
    runs = importance.Store(store.uri).runs("sst2", method="kd")
    result = importance.analyse(runs, "kd", evaluator_name=name)
    assert max(result["importances"], key=result["importances"].get) == "alpha"
