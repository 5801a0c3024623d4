"""Sweeps for real: Ray Tune + Optuna + ASHA on a local Ray instance, tracked in a SQLite MLflow
store and read back with MlflowClient; tiny models on a few rows of real SST-2.

* an end-to-end MetaDistil search through the CLI (2 trials + 2 seed re-runs);
* a grid sweep in which one trial's loss becomes NaN: it is recorded as errored, the others finish
  (``ray_fixtures.failing_gad_sweep``, also read by ``test_sweep_test_split``);
* a sweep whose driver is killed, then resumed: no trial lost, none re-run, no MLflow run twice.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from ray_fixtures import terminated_in_state, tiny_cli_args
from trainables.config import HPARAMS, DistillConfig
from tuner import launch, tracking

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runs_of(uri: str, experiment: str, sweep: str) -> tuple[object, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`distill.sweep` LIKE '{sweep}%'",
                              max_results=1000)
    parents = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == tracking.ROLE_SWEEP]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get(tracking.TAG_PARENT) == parents[0].info.run_id]
    return parents[0], children


def test_metadistil_sweep_end_to_end(ray_session, tiny_config, mlflow_uri, tmp_path):
    out = tmp_path / "summary.json"
    summary = launch.main([
        "--method", "metadistil", *tiny_cli_args(tiny_config), "--num-samples", "2",
        "--evals-per-epoch", "2", "--seeds", "2", "--tag", "distill.study=e2e",
        "--mlflow-uri", mlflow_uri, "--experiment", "test-e2e", "--storage-path", str(tmp_path / "store"),
        "--name", "meta-e2e", "--output-json", str(out), "--quiet"])
    written = json.loads(out.read_text())
    for key in ("best_config", "best_metric", "metric_name", "trials", "mlflow_experiment", "best_student_path"):
        assert key in written
    # the best student is an MLflow model that loads and classifies
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(mlflow_uri)
    predicted = mlflow.pyfunc.load_model(written["best_student_model"]).predict(pd.DataFrame({"text": ["fine"]}))
    assert predicted["label"][0] in ("negative", "positive")  # the task's label names
    assert written["metric_name"] == "accuracy" and written["mlflow_experiment"] == "test-e2e"
    # the artifacts sit next to the SQLite store, not in the working directory
    store_dir = os.path.dirname(mlflow_uri[len("sqlite:///"):])
    assert written["mlflow_artifacts"] == "file://" + os.path.join(store_dir, "mlartifacts")
    assert written["best_metric"] == summary["best_metric"]
    assert len(written["trials"]) == 2 and sum(written["counts"].values()) == 2
    assert written["counts"]["ERROR"] == 0
    # where the wall time went: the stages add up to at most the wall time; some of it trained
    t = written["time"]
    stages = ("ray_start", "teacher_stage", "trials", "seed_reruns", "other")
    assert all(t[f"{s}_seconds"] >= 0 for s in stages) and t["trials_seconds"] > 0
    assert sum(t[f"{s}_seconds"] for s in stages) <= t["wall_seconds"] + 1e-6
    assert 0 < t["training_seconds"] <= t["trial_seconds"] and 0 < t["training_fraction"] <= 1
    assert all(tr["gpu_ids"] == "none" for tr in written["trials"])

    client = MlflowClient(mlflow_uri)
    parent, children = runs_of(mlflow_uri, "test-e2e", "meta-e2e")
    assert parent.info.run_name == "meta-e2e" and parent.info.status == "FINISHED"
    # the model-training view, and the fine-tuned teacher's dev score as every trial's reference
    exp = client.get_experiment_by_name("test-e2e")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    reference = parent.data.metrics["teacher_eval_accuracy"]
    # provenance: the commit and the command, and the data read as MLflow dataset inputs
    assert len(parent.data.tags["mlflow.source.git.commit"]) >= 40 and "distill.command" in parent.data.tags
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in client.get_run(parent.info.run_id).inputs.dataset_inputs}
    assert {"train", "dev"} <= set(inputs) and inputs["train"].digest
    assert json.loads(inputs["dev"].profile)["num_rows"] == 872  # SST-2's dev file
    assert json.loads(inputs["train"].source)["uri"].endswith("sst2/train.tsv")
    assert 0 <= reference <= 1 and parent.data.metrics["teacher_eval_score"] == reference
    assert parent.data.tags[tracking.TAG_METHOD] == "metadistil" and parent.data.tags[tracking.TAG_TASK] == "sst2"
    reruns = [r for r in children if r.data.tags.get(tracking.TAG_SEED_RERUN) == "true"]
    trials = [r for r in children if tracking.TAG_SEED_RERUN not in r.data.tags]
    assert len(trials) == 2 and len(reruns) == 2

    by_id = {t["trial_id"]: t for t in written["trials"]}
    assert {r.data.tags[tracking.TAG_TRIAL_ID] for r in trials} == set(by_id)
    fields = set(DistillConfig().to_dict())
    speedups = set()
    for run in trials:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        entry = by_id[tags[tracking.TAG_TRIAL_ID]]
        assert tags[tracking.TAG_ROLE] == "trial" and tags[tracking.TAG_SWEEP] == "meta-e2e"
        assert tags[tracking.TAG_METHOD] == "metadistil" and tags[tracking.TAG_TASK] == "sst2"
        assert tags[tracking.TAG_STUDY] == "e2e"
        assert run.info.run_name.startswith("metadistil ") and "λ=" in run.info.run_name  # what the trial was
        assert metrics["teacher_eval_accuracy"] == reference
        assert tags[tracking.TAG_STATUS] == entry["status"] != "ERROR"
        # the params its method reads (no "None" strings: inner_lr is unset), and the model's
        from trainables.methods import get_method

        logged = {k for k, v in DistillConfig().to_dict().items() if v is not None} - {"inner_lr"}
        logged -= set(HPARAMS) - get_method("metadistil").hyperparameters()
        assert logged | set(tracking.MODEL_PARAMS) <= set(params) and "inner_lr" not in params
        assert not {"update_strategy", "pkd_layer_map", "adaptive_lr", "reptile_mu"} & set(params)
        assert params["method"] == "metadistil" and "None" not in params.values()
        for name, value in entry["config"].items():  # the sampled hyperparameters
            assert params[name] == str(value)
        assert {"teacher_lr", "pilot_update", "meta_interval"} <= set(entry["config"])
        assert int(params["student_layers"]) == 1 and int(params["teacher_layers"]) == 2
        history = client.get_metric_history(run.info.run_id, "eval_score")
        steps = [m.step for m in history]
        assert steps == sorted(steps) and len(set(steps)) == len(steps) >= 1  # one point per evaluation
        assert metrics["best_eval_score"] == entry["metrics"]["best_eval_score"] == max(m.value for m in history)
        last = max(history, key=lambda m: (m.step, m.timestamp))
        assert metrics["eval_score"] == last.value  # the last evaluation, not the best written over it
        assert "train_loss" in metrics and "eval_accuracy" in metrics and "best_eval_accuracy" in metrics
        assert metrics["student_params"] < metrics["teacher_params"] and "student_layers" in metrics
        # finished or stopped early, a trial has its final metrics; the speed-up is the models', so
        # trials of the same teacher and student report the same one
        for key in ("train_seconds", "param_ratio", "speedup", "student_infer_seconds"):
            assert key in metrics, (entry["status"], key)
        speedups.add(metrics["speedup"])
        if entry["status"] == "TERMINATED":
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"step_logs.csv", "summary.json"} <= artifacts
            local = client.download_artifacts(run.info.run_id, "step_logs.csv", str(tmp_path))
            header = open(local).readline().strip().split(",")
            assert header[0] == "step" and "loss" in header

    assert len(speedups) == 1, speedups

    defaults = DistillConfig()  # the first trial is the config defaults: a baseline for TPE/ASHA
    searched = ("student_lr", "teacher_lr", "alpha", "temperature", "pilot_update", "meta_interval")
    assert {k: getattr(defaults, k) for k in searched} in [
        {k: t["config"][k] for k in searched} for t in written["trials"]]

    terminated = [t for t in written["trials"] if t["status"] == "TERMINATED"]
    assert written["best_metric"] == max(t["metrics"]["best_eval_score"] for t in terminated)
    assert written["best_config"] == by_id[written["best_trial_id"]]["config"]

    # the deployable student: on disk under the storage dir, and on the parent run
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = written["best_student_path"]
    assert path.startswith(str(tmp_path / "store"))
    AutoModelForSequenceClassification.from_pretrained(path)
    AutoTokenizer.from_pretrained(path)
    # the parent run holds the best student as an MLflow model (loaded and used above)
    assert [m.name for m in client.search_logged_models(experiment_ids=[parent.info.experiment_id])
            if m.source_run_id == parent.info.run_id] == ["student_model"]

    # the bulky engine states of trials that will not train again are gone; final checkpoints stay
    assert not glob.glob(str(tmp_path / "store" / "**" / "engine_state.pt"), recursive=True)
    assert glob.glob(str(tmp_path / "store" / "meta-e2e" / "*" / "checkpoint_*" / "student" / "config.json"))

    seeds = written["seeds"]
    assert seeds["n"] == 2 and seeds["mean"] is not None and seeds["std"] >= 0
    assert sorted(int(r.data.params["seed"]) for r in reruns) == seeds["seeds"]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(failing_gad_sweep, mlflow_uri):
    # temperature=1e-45 underflows the soft targets: the first training loss is NaN, so the
    # engine raises NonFiniteLossError in that trial only (the sweep: ray_fixtures.failing_gad_sweep)
    summary = failing_gad_sweep
    assert summary["counts"] == {"TERMINATED": 2, "ERROR": 1, "EARLY_STOPPED": 0}
    failed = [t for t in summary["trials"] if t["status"] == "ERROR"]
    assert failed[0]["config"]["temperature"] == 1e-45
    assert "NonFiniteLossError" in failed[0]["error"]
    assert summary["best_config"]["temperature"] in (2.0, 4.0)

    _, children = runs_of(mlflow_uri, "test-fail", "fails")
    assert len(children) == 3
    by_status = {r.data.tags[tracking.TAG_STATUS]: r for r in children}
    bad = by_status["ERROR"]
    assert bad.info.status == "FAILED" and float(bad.data.params["temperature"]) == 1e-45
    assert "NonFiniteLossError" in bad.data.tags[tracking.TAG_ERROR]
    assert "nan" in bad.data.tags[tracking.TAG_ERROR]
    good = [r for r in children if r.data.tags[tracking.TAG_STATUS] == "TERMINATED"]
    assert len(good) == 2 and all(r.info.status == "FINISHED" for r in good)
    assert all(r.data.tags[tracking.TAG_STUDY] == "fail-test" for r in children)


def test_a_killed_sweep_resumes_without_losing_or_repeating_trials(ray_session, tiny_config, mlflow_uri,
                                                                   tmp_path):
    """kill -9 of the driver, then --resume: every trial once, finished ones not re-run, no step
    logged twice, no run left RUNNING. A trial the killed driver had started (and logged results
    of) that Ray's saved state does not hold is run again as a new sample; its old run is marked
    LOST and left out. Such a run is also made here on purpose (the ghost: created by the driver's
    logger with metrics better than any trial's), so the LOST path is checked whatever the timing."""
    from types import SimpleNamespace

    from analysis.store import Store, best_run

    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "tuner.launch", "--method", "kd", *tiny_cli_args(tiny_config),
           "--epochs", "2", "--evals-per-epoch", "2", "--num-samples", "3", "--max-concurrent", "1",
           "--scheduler", "fifo", "--address", ray_session, "--mlflow-uri", mlflow_uri,
           "--experiment", "test-resume", "--storage-path", str(store), "--name", "resumed", "--quiet"]
    driver = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": REPO})
    deadline = time.time() + 150
    done: set[str] = set()
    try:
        while time.time() < deadline and driver.poll() is None:
            done = terminated_in_state(str(store / "resumed"))
            if done:
                break
            time.sleep(0.3)
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver dies without any clean-up
        _, err = driver.communicate(timeout=30)
    assert done, f"no trial finished before the deadline: {err.decode()[-2000:]}"
    assert len(done) < 3, "the sweep finished before it could be interrupted"

    client = MlflowClient(mlflow_uri)
    parent, before = runs_of(mlflow_uri, "test-resume", "resumed")
    finished = {r.data.tags[tracking.TAG_TRIAL_ID]: r for r in before if r.data.tags[tracking.TAG_TRIAL_ID] in done}
    assert set(finished) == done
    history = {tid: len(client.get_metric_history(r.info.run_id, "eval_score")) for tid, r in finished.items()}
    # the ghost: a started trial the saved state lacks, its run made as the driver's logger makes it
    logger = tracking.MlflowTrialLogger(mlflow_uri, parent.info.experiment_id, parent.info.run_id, "resumed",
                                        "kd", "sst2", tiny_config)
    ghost = logger.run_id(SimpleNamespace(trial_id="ghost000", config={"alpha": 0.5, "temperature": 2.0}))
    tracking.log_metrics(logger.client, ghost, {"eval_score": 2.0, "best_eval_score": 2.0}, 2)

    out = tmp_path / "resumed.json"
    summary = launch.main(["--resume", "--name", "resumed", "--storage-path", str(store),
                           "--output-json", str(out), "--quiet"])
    assert summary["num_trials"] == 3 and summary["counts"]["TERMINATED"] == 3, (
        summary["counts"], [t["error"] for t in summary["trials"]], sorted(done), err.decode()[-2000:])
    assert json.loads(out.read_text())["counts"]["TERMINATED"] == 3
    trial_ids = {t["trial_id"] for t in summary["trials"]}
    assert done <= trial_ids and summary["best_metric"] <= 1

    parent, after = runs_of(mlflow_uri, "test-resume", "resumed")
    assert parent.data.metrics["num_trials"] == 3 and parent.data.metrics["num_terminated"] == 3
    assert parent.data.metrics["best_eval_score"] <= 1
    lost = [r for r in after if r.data.tags.get(tracking.TAG_STATUS) == tracking.STATUS_LOST]
    kept = [r for r in after if r not in lost]
    assert ghost in {r.info.run_id for r in lost}
    assert all(r.info.status == "KILLED" for r in lost)  # marked, none left RUNNING
    assert client.get_run(ghost).data.metrics["best_eval_score"] == 2.0  # kept, not deleted
    assert not {r.data.tags[tracking.TAG_TRIAL_ID] for r in lost} & trial_ids
    ids = [r.data.tags[tracking.TAG_TRIAL_ID] for r in kept]
    assert len(ids) == 3 and set(ids) == trial_ids  # one run per trial, none duplicated
    assert all(r.data.tags[tracking.TAG_STATUS] == "TERMINATED" and r.info.status == "FINISHED" for r in kept)
    for tid, run in finished.items():  # the trials that had finished were not run again
        same = [r for r in kept if r.data.tags[tracking.TAG_TRIAL_ID] == tid][0]
        assert same.info.run_id == run.info.run_id
        assert len(client.get_metric_history(run.info.run_id, "eval_score")) == history[tid]
    for run in kept:  # no evaluation step logged twice (a resumed trial continues its run)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")]
        assert len(steps) == len(set(steps))
    # analysis reads the three trials, and its best trial is one of them, not the ghost
    df = Store(mlflow_uri, "test-resume").runs(sweep="resumed")
    assert sorted(df["trial_id"]) == sorted(ids) and best_run(df)["run_id"] != ghost
