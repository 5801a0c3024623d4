"""What a sweep prints (``tuner.console``) and ``--system-metrics``: one launch CLI sweep in its own
process joining the session's Ray (console as the user sees it, with system metrics) and one
``--quiet`` sweep in this process (without), read back with the MLflow client."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from ray_fixtures import TINY_RUN, tiny_cli_args
from tuner import console, launch, tracking

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "test-console"


def test_floats_are_shown_to_four_significant_digits():
    trials = [SimpleNamespace(trial_id="a1", status="TERMINATED", config={"student_lr": 3.5379e-05, "alpha": 0.71523},
                              last_result={"eval_score": 0.5918508041056858}),
              SimpleNamespace(trial_id="b2", status="RUNNING", config={"student_lr": 1e-4, "alpha": 0.5},
                              last_result={"eval_score": 0.25}),
              SimpleNamespace(trial_id="c3", status="PENDING", config={}, last_result={})]
    assert console.best_trial_line(trials, "eval_score") == (
        "Current best trial: a1 with eval_score=0.5919 and params={student_lr=3.538e-05, alpha=0.7152}")
    assert console.best_trial_line(trials, "eval_score", mode="min").startswith("Current best trial: b2 with eval_score=0.25")
    assert console.best_trial_line(trials[2:], "eval_score") is None
    header, *rows = console.trial_table(trials)
    assert header.split() == ["trial", "status", "eval_score", "student_lr", "alpha"]
    assert rows[0].split() == ["a1", "TERMINATED", "0.5919", "3.538e-05", "0.7152"]


def test_a_long_table_keeps_the_running_trials_then_the_best():
    trials = [SimpleNamespace(trial_id=f"t{i}", status="TERMINATED", config={}, last_result={"eval_score": i / 100})
              for i in range(30)]
    trials[3].status = "RUNNING"
    shown = console.shown_trials(trials, max_rows=5)
    assert [t.trial_id for t in shown] == ["t3", "t29", "t28", "t27", "t26"]
    assert console.shown_trials(trials[:5], max_rows=5) == trials[:5]


def test_ray_tunes_restore_hint_is_dropped_only_inside_a_sweep(caplog):
    hint = 'Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: ' \
           'Tuner.restore(path="/x", trainable=...)'
    tune_logger = logging.getLogger("ray.tune.tune")
    before = os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
    with caplog.at_level(logging.WARNING):
        with console.sweep_console(quiet=True):
            assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
            assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
            assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
            assert not logging.getLogger("mlflow").isEnabledFor(logging.INFO)  # its warnings only
            tune_logger.warning(hint)
            tune_logger.warning("another warning")
        tune_logger.warning(hint)
    assert [r.getMessage() for r in caplog.records] == ["another warning", hint]
    assert os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT") == before  # restored
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ


@pytest.fixture(scope="module")
def console_sweeps(ray_session, data_dir, tiny_bert, sweep_root, mlflow_uri, tmp_path_factory) -> dict:
    """A sweep of one trial (3 evaluations) with ``--system-metrics 0.2`` through ``python -m
    tuner.launch`` in its own process, and the same with ``--quiet`` and no system metrics in this
    process; both join the session's Ray instance."""
    cfg = {**TINY_RUN, "data_dir": data_dir, "teacher": tiny_bert, "cache_dir": str(sweep_root / "teacher-cache")}
    store = tmp_path_factory.mktemp("console-store")
    common = ["--method", "kd", *tiny_cli_args(cfg), "--num-samples", "1", "--evals-per-epoch", "2",
              "--address", ray_session, "--storage-path", str(store), "--mlflow-uri", mlflow_uri,
              "--experiment", EXPERIMENT]
    shown = subprocess.run([sys.executable, "-m", "tuner.launch", *common, "--name", "shown", "--system-metrics", "0.2"],
                           capture_output=True, text=True, timeout=600, cwd=str(store),
                           env={**os.environ, "PYTHONPATH": REPO})
    assert shown.returncode == 0, shown.stderr[-3000:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        quiet = launch.main([*common, "--name", "quiet", "--quiet"])
    return {"shown": shown, "quiet_out": out.getvalue(), "quiet": quiet}


def trial_run(uri: str, sweep: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = tracking.search_all_runs(client, [experiment], f"tags.`{tracking.TAG_SWEEP}` = '{sweep}'")
    trials = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_TRIAL]
    parents = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_SWEEP]
    assert len(trials) == 1 and len(parents) == 1
    return trials[0], parents[0]


def test_the_console_rounds_and_leaves_out_tunes_boxes_and_hints(console_sweeps):
    shown = console_sweeps["shown"]
    text = shown.stdout + shown.stderr
    best = re.findall(r"^Current best trial: (\w+) with eval_score=(\S+) and params=\{(.*)\}$", shown.stdout, re.M)
    assert best, shown.stdout[-3000:]
    numbers = [best[-1][1]] + [v for v in re.findall(r"=([^,]+)", best[-1][2])]
    for number in numbers:  # 4 significant digits at most
        digits = re.sub(r"e[-+]\d+$", "", number).replace(".", "").lstrip("0-")
        assert len(digits) <= 4, (number, best[-1])
    assert "Trial status: 1 TERMINATED" in shown.stdout
    for noise in ("Configuration for experiment", "tensorboard", "TensorBoard", "View detailed results",
                  "Tuner.restore", "View run"):
        assert noise not in text, noise


def test_quiet_prints_only_the_summary_line(console_sweeps):
    lines = [line for line in console_sweeps["quiet_out"].splitlines() if line.strip()]
    assert len(lines) == 1, lines[:20]
    assert json.loads(lines[0])["counts"]["TERMINATED"] == 1
    assert console_sweeps["quiet"]["counts"]["TERMINATED"] == 1


def test_system_metrics_are_logged_per_evaluation_only_when_asked(console_sweeps, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    run, parent = trial_run(mlflow_uri, "shown")
    system = sorted(k for k in run.data.metrics if k.startswith("system/"))
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/disk_usage_percentage", "system/network_receive_megabytes"} <= set(system), system
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    evals = client.get_metric_history(run.info.run_id, "eval_score")
    assert sorted(m.step for m in cpu) == sorted(m.step for m in evals) and len(cpu) == 3
    assert all(0 <= m.value <= 100 for m in cpu)
    memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
    assert all(m.value > 0 for m in memory)
    assert not [k for k in parent.data.metrics if k.startswith("system/")]
    quiet_run, _ = trial_run(mlflow_uri, "quiet")
    assert "eval_score" in quiet_run.data.metrics
    assert not [k for k in quiet_run.data.metrics if k.startswith("system/")]
