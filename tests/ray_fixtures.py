"""Fixtures for the sweep tests (imported by conftest.py): one Ray instance per test session, a
shared SQLite MLflow store and tiny-run settings, so a trial takes seconds."""

from __future__ import annotations

import os

import pytest

#: config of a seconds-long trial: a tiny random BERT teacher (2 layers, hidden 32) fine-tuned for
#: one epoch, a 1-layer student, a few rows of real SST-2, short sequences
TINY_RUN = {"task": "sst2", "teacher_epochs": 1, "max_train_samples": 48, "max_eval_samples": 64,
            "max_seq_length": 32, "batch_size": 16, "epochs": 1, "student_layers": 1}


@pytest.fixture(scope="session")
def ray_session():
    """A private local Ray instance (2 CPUs, no dashboard, loopback only; never another process's instance)
    shared by every test that sweeps; yields its address so subprocess drivers can join it."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # workers import the project from this checkout, also for drivers in other processes that join
    # this instance with --address (Ray adds only each driver's cwd; an editable install of another
    # checkout would win otherwise)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    from tuner.cluster import LOOPBACK, loopback_only

    started = not ray.is_initialized()
    if started:  # on loopback only, like a sweep's own instance (drivers join it at 127.0.0.1:PORT)
        with loopback_only():
            ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                     log_to_driver=False, _node_ip_address=LOOPBACK)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def sweep_root(tmp_path_factory):
    """One folder for the session's sweeps: storage, teacher cache and the MLflow database."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="session")
def mlflow_uri(sweep_root) -> str:
    """One SQLite store for the session (a copy of ``store_template``'s empty store); tests use
    their own experiments in it."""
    from store_template import empty_store

    return empty_store(sweep_root / "mlflow.db")


@pytest.fixture
def tiny_config(data_dir, tiny_bert, sweep_root) -> dict:
    """DistillConfig fields of a tiny run on the real data with conftest's ``tiny_bert`` (2 layers,
    hidden 32) as the teacher backbone; the fine-tuned teacher cache is shared by the session."""
    return {**TINY_RUN, "data_dir": data_dir, "teacher": tiny_bert,
            "cache_dir": str(sweep_root / "teacher-cache")}


def tiny_cli_args(cfg: dict) -> list[str]:
    """The launch options for :func:`tiny_config`."""
    return ["--task", cfg["task"], "--data-dir", cfg["data_dir"], "--teacher", cfg["teacher"],
            "--teacher-epochs", str(cfg["teacher_epochs"]), "--max-train-samples", str(cfg["max_train_samples"]),
            "--max-eval-samples", str(cfg["max_eval_samples"]), "--max-seq-length", str(cfg["max_seq_length"]),
            "--batch-size", str(cfg["batch_size"]), "--epochs", str(cfg["epochs"]),
            "--student-layers", str(cfg["student_layers"]), "--cache-dir", cfg["cache_dir"]]


@pytest.fixture(scope="session")
def failing_gad_sweep(ray_session, data_dir, tiny_bert, sweep_root, mlflow_uri) -> dict:
    """One real grid sweep read by several tests (``test_sweep``'s failing trial,
    ``test_sweep_test_split``'s test scores): kd on GAD (a task with a labelled test split) over
    temperature 2, 1e-45, 4 with the tiny teacher, in the session's store (experiment
    ``test-fail``, sweep ``fails``). temperature=1e-45 underflows the soft targets: that trial's
    first training loss is NaN, so the engine raises NonFiniteLossError in it only. The tiny
    backbone is the teacher as it is (``teacher_checkpoint``: no fine-tuning stage; what the
    tests read does not depend on the teacher's quality)."""
    from tuner import tracking
    from tuner.sweep import grid_sweep

    config = {**TINY_RUN, "task": "gad", "max_eval_samples": 24, "data_dir": data_dir, "teacher": tiny_bert,
              "teacher_checkpoint": tiny_bert, "cache_dir": str(sweep_root / "teacher-cache")}
    return grid_sweep("kd", "temperature", [2.0, 1e-45, 4.0], config=config,
                      tags={tracking.TAG_STUDY: "fail-test"}, mlflow_uri=mlflow_uri, experiment="test-fail",
                      storage_path=str(sweep_root / "fails-store"), name="fails", evals_per_epoch=2, verbose=0)


def terminated_in_state(experiment_dir: str) -> set[str]:
    """Trial ids Ray's saved experiment state has as TERMINATED (for tests that kill a driver once
    a trial has finished)."""
    import glob
    import json

    done = set()
    for path in glob.glob(os.path.join(experiment_dir, "experiment_state-*.json")):
        try:
            with open(path) as fh:
                state = json.load(fh)
        except (OSError, ValueError):  # being rewritten
            continue
        done |= {trial["trial_id"] for trial in map(json.loads, (item[0] for item in state["trial_data"]))
                 if trial["status"] == "TERMINATED"}
    return done
