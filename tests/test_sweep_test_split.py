"""A sweep on a task with a labelled test split (GAD): the selected student's test scores reach
the trial's MLflow run, the sweep summary and the parent run; so do the step time, peak memory
and device of the trial."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tuner import tracking
from tuner.sweep import grid_sweep

pytestmark = pytest.mark.slow


def test_test_scores_are_logged_for_every_finished_trial(ray_session, tiny_config, mlflow_uri, tmp_path):
    config = {**tiny_config, "task": "gad", "max_eval_samples": 24}
    summary = grid_sweep("kd", "alpha", [0.5], config=config, mlflow_uri=mlflow_uri, experiment="test-split",
                         storage_path=str(tmp_path / "store"), name="gad-test", evals_per_epoch=1, verbose=0)
    assert summary["counts"]["TERMINATED"] == 1
    trial = summary["trials"][0]
    assert {"test_f1", "test_accuracy", "test_score"} <= set(trial["metrics"])
    assert summary["best_test_metrics"]["test_score"] == trial["metrics"]["test_score"]

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("test-split")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`distill.sweep` = 'gad-test'")
    child = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == tracking.ROLE_TRIAL]
    parent = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == tracking.ROLE_SWEEP]
    assert len(child) == 1 and len(parent) == 1
    assert child[0].data.metrics["test_f1"] == pytest.approx(trial["metrics"]["test_f1"])
    assert parent[0].data.metrics["test_score"] == pytest.approx(trial["metrics"]["test_score"])
    # what the steps cost, beside the scores
    assert child[0].data.metrics["step_ms"] > 0 and child[0].data.metrics["peak_mem_mb"] > 0
    assert child[0].data.params["device_name"] == "cpu"
