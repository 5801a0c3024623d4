"""Sensitivity studies (``python -m analysis.sensitivity`` = ``python -m tuner.study``): study definitions
(analysis.studies), --from-mlflow re-plotting from a real SQLite MLflow store filled with known
numbers, and the fixed configuration of a study (tuner.study)."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import pytest

from analysis import sensitivity
from analysis.studies import STUDIES, clip_layers, get_study, parse_values
from analysis.store import Store
from analysis_fill import Filler
from trainables.errors import UserError
from tuner.study import study_config

# (method, temperature) -> score per seed 42, 43
TEMPERATURE = {("kd", 1.0): (0.80, 0.82), ("kd", 2.0): (0.84, 0.86),
               ("metadistil", 1.0): (0.85, 0.87), ("metadistil", 2.0): (0.88, 0.91)}
SIZES = {1: (4_000_000, {"kd": 0.70, "metadistil": 0.72}), 2: (7_000_000, {"kd": 0.75, "metadistil": 0.78})}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    f = Filler(str(tmp_path_factory.mktemp("mlflow") / "mlflow.db"))
    for (method, t), scores in TEMPERATURE.items():
        for seed, score in zip((42, 43), scores):
            f.trial(method, score, study="temperature", temperature=t, seed=seed, sweep=f"st-{method}")
    for layers, (params, scores) in SIZES.items():
        for method, score in scores.items():
            f.trial(method, score, study="student-size", student_layers=layers, student_params=params)
    f.trial("kd", 0.90, alpha=0.3, temperature=8.0, student_lr=7e-5, epochs=5)   # best kd trial
    f.trial("kd", 0.85, alpha=0.9, temperature=3.0)
    return f


def test_study_registry_and_values():
    assert {n: s.param for n, s in STUDIES.items()} == {
        "loss-weight": "alpha", "temperature": "temperature", "student-size": "student_layers"}
    assert STUDIES["loss-weight"].values == (0.1, 0.3, 0.5, 0.7, 0.9)
    assert STUDIES["temperature"].values == (1.0, 2.0, 5.0, 10.0)
    assert parse_values(get_study("temperature"), "10,1, 2") == [1.0, 2.0, 10.0]
    assert parse_values(get_study("student-size"), "1,2") == [1, 2]
    assert clip_layers([1, 2, 3, 4, 6], 2) == [1, 2] and clip_layers([1, 2, 3, 4, 6], 6) == [1, 2, 3, 4, 6]
    with pytest.raises(UserError, match=r"unknown study 'depth'; valid: loss-weight, temperature, student-size"):
        get_study("depth")
    with pytest.raises(UserError, match=r"student_layers='two' is not a valid int"):
        parse_values(get_study("student-size"), "1,two")


def test_from_mlflow_replots_the_recorded_study(filled, tmp_path, capsys):
    out = sensitivity.main(["--study", "temperature", "--task", "sst2", "--from-mlflow",
                            "--mlflow-uri", filled.uri, "--out", str(tmp_path)])
    for key in ("csv", "png", "summary"):
        assert os.path.getsize(out[key]) > 0
    rows = pd.read_csv(out["csv"])
    assert len(rows) == 2 * 2 * 2  # value × method × seed
    got = {(r.method, r.value, r.seed): r.score for r in rows.itertuples()}
    assert got == {(m, t, seed): s for (m, t), scores in TEMPERATURE.items() for seed, s in zip((42, 43), scores)}
    assert set(rows["metric"]) == {"accuracy"} and set(rows["study"]) == {"temperature"}
    plotted = out["plotted"]
    for (method, t), scores in TEMPERATURE.items():
        p = plotted[(plotted["method"] == method) & (plotted["x"] == t)].iloc[0]
        assert p["mean"] == pytest.approx(np.mean(scores), abs=1e-12)
        assert p["std"] == pytest.approx(np.std(scores, ddof=1), abs=1e-12) and p["n"] == 2
    pd.testing.assert_frame_equal(pd.read_csv(out["summary"]), plotted, check_dtype=False)
    assert "metadistil" in capsys.readouterr().out


def test_student_size_is_plotted_against_parameters(filled, tmp_path):
    out = sensitivity.main(["--study", "student-size", "--task", "sst2", "--from-mlflow", "--methods", "kd",
                            "--mlflow-uri", filled.uri, "--out", str(tmp_path)])
    plotted = out["plotted"]
    assert set(plotted["x_column"]) == {"student_params"}
    assert plotted[["method", "x", "mean", "n"]].to_dict("list") == {
        "method": ["kd", "kd"], "x": [4e6, 7e6], "mean": [0.70, 0.75], "n": [1, 1]}
    assert list(pd.read_csv(out["csv"])["student_layers"]) == [1, 2]


@pytest.mark.parametrize("argv,message", [
    (["--study", "loss-weight"], r"no runs of study 'loss-weight' for task 'sst2'.*studies with runs: student-size, temperature"),
    (["--study", "temperature", "--task", "cola"], r"no runs for task 'cola'"),
    (["--study", "temperature", "--methods", "pkd"], r"no runs of method pkd"),
    (["--study", "temperature", "--values", "5"], r"no runs of study 'temperature' .* at temperature in \[5.0\]"),
    (["--study", "width"], r"unknown study 'width'"),
])
def test_nothing_recorded_is_a_clear_error(filled, tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        sensitivity.main(argv + ["--from-mlflow", "--mlflow-uri", filled.uri, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    import re
    assert re.search(message, err), err
    assert not list(tmp_path.glob("*.png"))


def _args(*argv):
    return sensitivity.build_parser().parse_args(["--study", "temperature", *argv])


def test_study_config_takes_the_best_recorded_trial_then_cli(filled):
    store = Store(filled.uri)
    study = get_study("temperature")
    cfg, source = study_config(_args("--task", "sst2"), "kd", store, study)
    assert source.startswith("best recorded trial")
    assert (cfg.alpha, cfg.student_lr, cfg.epochs) == (0.3, 7e-5, 5)
    assert cfg.temperature == 2.0 and cfg.seed == 42  # the studied field and the seed are not copied
    cfg, _ = study_config(_args("--epochs", "1", "--set", "alpha=0.6", "--set", "seed=7"), "kd", store, study)
    assert (cfg.alpha, cfg.student_lr, cfg.epochs, cfg.seed) == (0.6, 7e-5, 1, 7)
    cfg, source = study_config(_args(), "metadistil", store, study)  # only study runs: defaults
    assert source == "defaults" and cfg.alpha == 0.5 and cfg.method == "metadistil"


@pytest.mark.parametrize("extra, message", [
    (["--from-mlflow", "--mlflow-uri", "foo://bar"], "unsupported MLflow tracking URI 'foo://bar'"),
    (["--mlflow-uri", "http://127.0.0.1:1"], "MLflow tracking server http://127.0.0.1:1 is unreachable"),
    (["--from-mlflow", "--out", "/proc/distill-out"], "--out /proc/distill-out is not a writable folder"),
])
def test_bad_store_or_out_is_one_line_before_anything_runs(extra, message, tmp_path, capsys):
    argv = ["--study", "temperature", "--out", str(tmp_path / "out"), *extra]
    with pytest.raises(SystemExit) as exc:
        sensitivity.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
