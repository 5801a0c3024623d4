"""A small real sensitivity study: 2 temperatures × 1 method × 1 seed (each method's own grid
sweep is tests/test_study.py's) through Ray Tune grid sweeps on
real SST-2 rows with a tiny BERT teacher, logged to a SQLite MLflow store, then plotted."""

from __future__ import annotations

import itertools
import os

import pandas as pd
import pytest

from analysis import sensitivity
from analysis.store import Store
from store_template import empty_store

pytestmark = pytest.mark.slow


def test_small_real_temperature_study(ray_session, tiny_config, tmp_path, data_dir, capsys):
    # the session's Ray instance, and the tiny teacher the other sweeps fine-tune and cache (the
    # same teacher settings as ray_fixtures.TINY_RUN: fine-tuned once per test session)
    uri = empty_store(tmp_path / "mlflow.db")
    out = tmp_path / "out"
    result = sensitivity.main([
        "--study", "temperature", "--task", "sst2", "--methods", "kd", "--values", "1,4",
        "--seeds", "1", "--data-dir", data_dir, "--teacher", tiny_config["teacher"], "--teacher-epochs", "1",
        "--cache-dir", tiny_config["cache_dir"],
        "--max-train-samples", str(tiny_config["max_train_samples"]), "--max-eval-samples", "32",
        "--max-seq-length", str(tiny_config["max_seq_length"]),
        "--epochs", "1", "--batch-size", "8", "--set", "student_layers=1",
        "--mlflow-uri", uri, "--storage-path", str(tmp_path / "ray"), "--out", str(out),
        "--verbose", "0"])

    rows = pd.read_csv(result["csv"])
    assert len(rows) == 2 * 1 * 1
    assert set(zip(rows["method"], rows["value"], rows["seed"])) == set(
        itertools.product(["kd"], [1.0, 4.0], [42]))
    assert rows["score"].between(0, 1).all() and (rows["student_layers"] == 1).all()
    assert os.path.getsize(result["png"]) > 0 and os.path.getsize(result["summary"]) > 0
    assert len(result["sweeps"]) == 1

    store = Store(uri)
    runs = store.runs("sst2", study="temperature")
    assert sorted(runs["run_id"]) == sorted(rows["run_id"])
    assert set(runs["trial_status"]) == {"TERMINATED"}
    # the points are what the runs recorded
    merged = rows.merge(runs[["run_id", "best_eval_score", "temperature"]], on="run_id")
    assert (merged["score"] == merged["best_eval_score"]).all() and (merged["value"] == merged["temperature"]).all()
    # the study's files are artifacts of its MLflow run
    names = {a.path for a in store.client.list_artifacts(result["study_run_id"])}
    assert names == {os.path.basename(result[k]) for k in ("csv", "png", "pdf", "summary")}

    # re-plotting from MLflow gives the same points
    again = sensitivity.main(["--study", "temperature", "--task", "sst2", "--from-mlflow", "--mlflow-uri", uri,
                              "--out", str(tmp_path / "replot")])
    pd.testing.assert_frame_equal(again["plotted"], result["plotted"])
