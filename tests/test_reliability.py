"""Reliability of sweeps for real (issue #9): Ctrl-C, killed trial workers, concurrent stores,
moved sweeps. Real Ray (each driver in its own process starts its own local instance unless the
test says otherwise), a real SQLite MLflow store, real signals."""

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

from ray_fixtures import tiny_cli_args
from store_template import empty_store
from tuner import launch, tracking

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_driver(args: list[str], cwd) -> subprocess.Popen:
    """``python -m tuner.launch ARGS`` in its own process (its own local Ray: no --address)."""
    return subprocess.Popen([sys.executable, "-m", "tuner.launch", *args], cwd=str(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})


def wait_for(predicate, driver: subprocess.Popen, what: str, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    driver.kill()
    out, err = driver.communicate(timeout=60)
    pytest.fail(f"{what} did not happen (driver rc {driver.returncode}): {err[-3000:]}")


def trial_runs(uri: str, experiment: str, sweep: str) -> tuple[object, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`distill.sweep` = '{sweep}'",
                              max_results=1000)
    parents = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_SWEEP]
    assert len(parents) == 1
    return parents[0], [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_TRIAL]


def evaluations_reported(trial_dir: str) -> list[int]:
    """The ``evaluation`` of every result Ray logged for a trial (its result.json, appended to
    across driver restarts)."""
    with open(os.path.join(trial_dir, "result.json")) as fh:
        return [json.loads(line)["evaluation"] for line in fh if '"evaluation"' in line]


def test_ctrl_c_leaves_a_resumable_sweep_with_no_run_left_running_that_resumes_into_its_moved_store(
        ray_session, tiny_config, tmp_path):
    """Ctrl-C, then the SQLite store (database and artifacts) moved before the resume: --resume
    --mlflow-uri NEW continues every trial in the new store, not in the URI Ray pickled with the
    Tuner's MLflow callback. (One interrupted sweep serves both guarantees.)"""
    store, name = tmp_path / "store", "interrupted"
    out = tmp_path / "summary.json"
    old, new = tmp_path / "old", tmp_path / "new"
    old_db = old / "mlflow.db"
    mlflow_uri = empty_store(old_db)  # an empty store: the driver adds the experiment
    # a trial takes every CPU of the driver's Ray instance: the second trial waits, PENDING
    driver = start_driver(["--method", "kd", *tiny_cli_args(tiny_config), "--epochs", "3",
                           "--evals-per-epoch", "2", "--num-samples", "3", "--max-concurrent", "2",
                           "--cpus-per-trial", str(os.cpu_count()), "--scheduler", "fifo",
                           "--mlflow-uri", mlflow_uri, "--experiment", "test-sigint",
                           "--storage-path", str(store), "--name", name, "--output-json", str(out),
                           "--quiet"], tmp_path)
    first = wait_for(lambda: glob.glob(str(store / name / "*" / "checkpoint_*")), driver, "a first report")
    driver.send_signal(signal.SIGINT)  # Ctrl-C
    stdout, stderr = driver.communicate(timeout=180)
    assert driver.returncode == launch.INTERRUPTED_EXIT, stderr[-3000:]
    assert f"python -m tuner.launch --resume --name {name} --storage-path {store}" in stderr
    # the project's --resume command replaces Ray Tune's hint; --quiet: no progress lines or tables
    assert "Tuner.restore" not in stdout + stderr
    assert "Trial status" not in stdout and "Configuration for experiment" not in stdout

    summary = json.loads(out.read_text())
    assert summary["interrupted"] is True
    # the running trial and the pending one are UNFINISHED; the third sample was never created
    assert [t["status"] for t in summary["trials"]] == ["UNFINISHED", "UNFINISHED"]
    assert summary["not_started"] == 1
    running_dir = os.path.dirname(first[0])
    # the cleanup at the end of the sweep kept the engine states Ray continues from
    assert glob.glob(os.path.join(running_dir, "checkpoint_*", "engine_state.pt"))
    assert_resumable_trials_keep_their_engine_states(summary, store / name)

    parent, runs = trial_runs(mlflow_uri, "test-sigint", name)
    assert parent.info.status == "KILLED"
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    killed = {r.data.tags[tracking.TAG_TRIAL_ID]: r for r in runs if r.info.status == "KILLED"}
    assert killed and all(r.data.tags[tracking.TAG_STATUS] == "UNFINISHED" for r in killed.values())
    before = {r.data.tags[tracking.TAG_TRIAL_ID]: r.info.run_id for r in runs}

    old.rename(new)  # the store moves
    mlflow_uri = f"sqlite:///{new / 'mlflow.db'}"
    resumed = launch.main(["--resume", "--name", name, "--storage-path", str(store),
                           "--mlflow-uri", mlflow_uri, "--quiet"])
    assert resumed["interrupted"] is False and resumed["counts"]["TERMINATED"] == 3, resumed["counts"]
    assert resumed["mlflow_uri"] == mlflow_uri
    assert not old_db.exists()  # nothing logged to (or created) the old store
    assert {t["trial_id"] for t in summary["trials"]} < {t["trial_id"] for t in resumed["trials"]}
    assert resumed["num_trials"] == 3 and resumed["not_started"] == 0
    parent, runs = trial_runs(mlflow_uri, "test-sigint", name)
    assert parent.info.status == "FINISHED" and len(runs) == 3
    assert all(r.info.status == "FINISHED" and r.data.tags[tracking.TAG_STATUS] == "TERMINATED" for r in runs)
    assert all("eval_score" in r.data.metrics for r in runs)
    record = json.loads((store / name / "distill_sweep.json").read_text())
    assert record["tracking_uri"] == mlflow_uri  # a later --resume needs no --mlflow-uri
    for tid, run_id in before.items():  # the same runs, continued
        assert [r.info.run_id for r in runs if r.data.tags[tracking.TAG_TRIAL_ID] == tid] == [run_id]
    # the interrupted trial continued from its checkpoint, not from scratch: Ray's own result log
    # starts again at most one evaluation back (a result whose checkpoint Ray had not yet recorded
    # in its saved state when the signal came is reported again) ...
    evaluations = evaluations_reported(running_dir)
    restarts = [i for i in range(1, len(evaluations)) if evaluations[i] <= evaluations[i - 1]]
    assert evaluations[0] == 1 and len(restarts) <= 1, evaluations
    if restarts:
        i = restarts[0]
        assert evaluations[i] > 1 and evaluations[i - 1] - evaluations[i] <= 1, evaluations
    # ... and MLflow records every evaluation of every trial once (train_loss: logged only there)
    for run in runs:
        steps = [m.step for m in MlflowClient(mlflow_uri).get_metric_history(run.info.run_id, "train_loss")]
        assert steps and steps == sorted(set(steps)), steps


def saved_statuses(experiment_dir) -> dict[str, str]:
    """Trial id -> status in Ray's saved experiment state (what a resume continues)."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.status for t in ExperimentAnalysis(str(experiment_dir)).trials}


def assert_resumable_trials_keep_their_engine_states(summary: dict, experiment_dir) -> None:
    """Every trial Ray's saved state would continue, and that has checkpoints (a pending one has
    none), still has an engine state to continue from."""
    saved = saved_statuses(experiment_dir)
    for trial in summary["trials"]:
        checkpoints = glob.glob(os.path.join(trial["path"], "checkpoint_*"))
        if saved[trial["trial_id"]] not in ("TERMINATED", "ERROR") and checkpoints:
            assert glob.glob(os.path.join(trial["path"], "checkpoint_*", "engine_state.pt")), trial["trial_id"]


def results_of(trial_dir: str) -> list[dict]:
    try:
        with open(os.path.join(trial_dir, "result.json")) as fh:
            return [json.loads(line) for line in fh if line.strip().endswith("}")]
    except OSError:
        return []


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_then_errored(ray_session, tiny_config, mlflow_uri,
                                                                            tmp_path):
    store, name = tmp_path / "store", "killed-worker"
    out = tmp_path / "summary.json"
    # the first trial is long enough (300 evaluations, never reached: it is killed twice) that it
    # and its retry are still training when the test, however slow a busy machine makes it, kills
    # them; the second (2 evaluations) shows the sweep going on. The driver joins the session's Ray
    # instance (its trial workers are that instance's worker processes)
    driver = start_driver(["--method", "kd", *tiny_cli_args(tiny_config), "--grid", "epochs=300,2",
                           "--num-samples", "1", "--evals-per-epoch", "1", "--max-concurrent", "1",
                           "--address", ray_session,
                           "--scheduler", "fifo", "--max-failures", "1", "--mlflow-uri", mlflow_uri,
                           "--experiment", "test-kill-worker", "--storage-path", str(store), "--name", name,
                           "--output-json", str(out)], tmp_path)

    def reported_pids(trial_dir: str) -> list[int]:
        return [r["pid"] for r in results_of(trial_dir) if "evaluation" in r]

    # any checkpoint of the first (long) trial: Ray keeps only the latest few
    first = wait_for(lambda: glob.glob(str(store / name / "*_00000" / "checkpoint_*")), driver, "a checkpoint")
    trial_dir = os.path.dirname(first[0])
    worker = wait_for(lambda: reported_pids(trial_dir) and reported_pids(trial_dir)[-1], driver, "a pid")
    os.kill(worker, signal.SIGKILL)  # the retry continues from the last checkpoint in a new worker
    retry = wait_for(lambda: [p for p in reported_pids(trial_dir) if p != worker], driver, "the retry")[0]
    os.kill(retry, signal.SIGKILL)  # the second failure is one more than --max-failures 1
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]

    summary = json.loads(out.read_text())
    assert summary["counts"] == {"TERMINATED": 1, "ERROR": 1, "EARLY_STOPPED": 0}, summary["trials"]
    failed = [t for t in summary["trials"] if t["status"] == "ERROR"][0]
    assert failed["path"] == trial_dir and "Died" in failed["error"]
    # the retry restored the checkpoint: it did not start again from the first evaluation (an
    # evaluation reported just before the kill, whose checkpoint Ray had not committed yet, may be
    # reported again by the retry in Ray's own log; MLflow records it once, checked below)
    evaluations = [r["evaluation"] for r in results_of(trial_dir) if "evaluation" in r]
    assert evaluations.count(1) == 1 and evaluations == sorted(evaluations), evaluations
    assert_resumable_trials_keep_their_engine_states(summary, store / name)

    parent, runs = trial_runs(mlflow_uri, "test-kill-worker", name)
    assert parent.info.status == "FINISHED" and len(runs) == 2
    bad = [r for r in runs if r.data.tags[tracking.TAG_STATUS] == "ERROR"]
    assert len(bad) == 1 and bad[0].info.status == "FAILED" and "Died" in bad[0].data.tags[tracking.TAG_ERROR]
    steps = [m.step for m in MlflowClient(mlflow_uri).get_metric_history(bad[0].info.run_id, "eval_score")]
    assert steps and len(set(steps)) == len(steps), steps  # every evaluation recorded once


_TOGETHER = """
import os, sys, time
from tuner import tracking
uri, folder, me = sys.argv[1:]
open(os.path.join(folder, "ready-" + me), "w").close()
while not os.path.exists(os.path.join(folder, "go")):
    time.sleep(0.002)
experiment = tracking.ensure_experiment(uri, "together")
tracking.start_parent_run(uri, experiment, "sweep-" + me, "kd", "sst2")
print(experiment)
"""


def test_sweeps_started_together_create_one_new_store_safely(tmp_path):
    """What two or more drivers do first on a new SQLite store (create it, its experiment, their
    parent runs), released at the same instant in separate processes."""
    uri = "sqlite:///" + str(tmp_path / "new" / "mlflow.db")
    (tmp_path / "new").mkdir()
    n = 3
    procs = [subprocess.Popen([sys.executable, "-c", _TOGETHER, uri, str(tmp_path), str(i)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": REPO})
             for i in range(n)]
    deadline = time.time() + 120
    while len(glob.glob(str(tmp_path / "ready-*"))) < n and time.time() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    done = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-1500:] for _, err in done]
    assert len({out.strip() for out, _ in done}) == 1  # one experiment
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"sweep-{i}" for i in range(n)]


def test_runs_of_trials_ray_did_not_restore_are_marked_lost_and_left_out(tmp_path):
    """A driver killed after a trial started (its run created, results logged) but before Ray
    saved the trial leaves a run Ray's restored state does not know. The resumed sweep's logger
    marks it, empty or not, KILLED + LOST before any trial starts (metrics kept, nothing deleted);
    the runs of the seed re-runs (another Ray experiment of the same sweep) are not touched; a new
    sample given a lost trial's id (a grid sweep) gets a new run; analysis leaves LOST runs out."""
    from types import SimpleNamespace

    from analysis.store import Store, best_run

    uri = empty_store(tmp_path / "mlflow.db")
    exp = tracking.ensure_experiment(uri, "lost")
    parent = tracking.start_parent_run(uri, exp, "sw", "kd", "sst2")
    first = tracking.MlflowTrialLogger(uri, exp, parent, "sw", "kd", "sst2", {})
    seeds = tracking.MlflowTrialLogger(uri, exp, parent, "sw", "kd", "sst2", {},
                                       tags={tracking.TAG_SEED_RERUN: "true"}, ray_experiment="sw-seeds")
    trial = {t: SimpleNamespace(trial_id=t, config={"alpha": 0.5}) for t in ("kept", "empty", "reported", "seed")}
    ids = {t: (seeds if t == "seed" else first).run_id(trial[t]) for t in trial}
    for t, score in (("kept", 0.6), ("reported", 0.9), ("seed", 0.7)):
        tracking.log_metrics(first.client, ids[t], {"eval_score": score, "best_eval_score": score}, 2)
        first.client.set_tag(ids[t], tracking.TAG_STATUS, tracking.STATUS_TERMINATED)
        first.client.set_terminated(ids[t])

    resumed = tracking.MlflowTrialLogger(uri, exp, parent, "sw", "kd", "sst2", {})  # a new driver
    resumed.on_step_begin(0, [trial["kept"]])  # Ray restored only "kept"
    resumed.on_step_begin(1, [trial["kept"]])  # checked once
    client = MlflowClient(uri)
    runs = {t: client.get_run(i) for t, i in ids.items()}
    for t in ("empty", "reported"):
        assert runs[t].info.status == "KILLED" and runs[t].data.tags[tracking.TAG_STATUS] == "LOST"
        assert runs[t].info.lifecycle_stage == "active"
    assert runs["reported"].data.metrics["best_eval_score"] == 0.9  # kept
    for t in ("kept", "seed"):
        assert runs[t].info.status == "FINISHED" and runs[t].data.tags[tracking.TAG_STATUS] == "TERMINATED"
    assert sorted(r.data.tags[tracking.TAG_TRIAL_ID] for r in tracking.find_runs(uri, exp, "sw")) == ["kept", "seed"]
    # a grid sample that gets the id of a lost trial again: a new run, the LOST one stays as it was
    again = resumed.run_id(trial["reported"])
    assert again != ids["reported"] and client.get_run(ids["reported"]).info.status == "KILLED"
    assert resumed.run_id(trial["kept"]) == ids["kept"]

    # a restored sweep with nothing left to run has no step: its experiment end checks
    late = tracking.MlflowTrialLogger(uri, exp, parent, "sw", "kd", "sst2", {})
    late.on_experiment_end([trial["kept"]])
    assert client.get_run(again).data.tags[tracking.TAG_STATUS] == "LOST"
    new = resumed.run_id(SimpleNamespace(trial_id="new", config={"alpha": 0.5}))
    tracking.log_metrics(first.client, new, {"eval_score": 0.5, "best_eval_score": 0.5}, 2)

    df = Store(uri, "lost").runs(sweep="sw")
    assert set(df["run_id"]) == {ids["kept"], ids["seed"], new}
    assert best_run(df)["run_id"] == ids["seed"]  # not the LOST run's 0.9
