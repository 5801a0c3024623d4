"""A sweep on a task with a labelled test split (GAD): the selected student's test scores reach
the trial's MLflow run, the sweep summary and the parent run; so do the step time, peak memory
and device of the trial. The sweep (``ray_fixtures.failing_gad_sweep``: three trials, one of
which fails) is shared with ``test_sweep``'s failing-trial test."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tuner import tracking

pytestmark = pytest.mark.slow


def test_test_scores_are_logged_for_every_finished_trial(failing_gad_sweep, mlflow_uri):
    summary = failing_gad_sweep
    finished = [t for t in summary["trials"] if t["status"] == "TERMINATED"]
    assert summary["counts"]["TERMINATED"] == len(finished) == 2
    for trial in finished:
        assert {"test_f1", "test_accuracy", "test_score"} <= set(trial["metrics"])
    best = [t for t in finished if t["trial_id"] == summary["best_trial_id"]][0]
    assert summary["best_test_metrics"]["test_score"] == best["metrics"]["test_score"]

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("test-fail")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`distill.sweep` = 'fails'")
    child = {r.data.tags[tracking.TAG_TRIAL_ID]: r for r in runs
             if r.data.tags.get(tracking.TAG_ROLE) == tracking.ROLE_TRIAL}
    parent = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == tracking.ROLE_SWEEP]
    assert len(child) == 3 and len(parent) == 1
    for trial in finished:
        run = child[trial["trial_id"]]
        assert run.data.metrics["test_f1"] == pytest.approx(trial["metrics"]["test_f1"])
        # what the steps cost, beside the scores
        assert run.data.metrics["step_ms"] > 0 and run.data.metrics["peak_mem_mb"] > 0
        assert run.data.params["device_name"] == "cpu"
    assert parent[0].data.metrics["test_score"] == pytest.approx(best["metrics"]["test_score"])
