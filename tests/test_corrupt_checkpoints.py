"""A corrupt or truncated checkpoint (issue #9): engine states are written atomically; a trial
restarted from a checkpoint that does not read back continues from the newest older checkpoint
Ray kept, or starts from scratch, with a warning naming the file; the sweep never crashes.

Unit tests on checkpoint folders laid out as Ray lays out a trial's, and one real sweep (the
shared Ray instance and SQLite store) interrupted, truncated and resumed."""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal
import threading
import time

import pytest
import torch
from mlflow import MlflowClient
from ray import tune

from ray_fixtures import tiny_cli_args
from trainables.engine import CHECKPOINT_FILE, CorruptCheckpointError, atomic_save, read_checkpoint
from trainables.trainable import SKIPPED, STATE_FILE, usable_checkpoint
from tuner import launch, tracking
from tuner.sweep import grid_sweep


def engine_state(step: int) -> dict:
    return {"step": step, "student": {"w": torch.full((64,), float(step))}, "student_opt": {}, "result": {},
            "rng": {"torch": torch.get_rng_state()}}


def write_checkpoint(trial_dir, index: int, evaluation: int, final: dict | None = None):
    folder = trial_dir / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    if final is None:
        atomic_save(engine_state(evaluation * 3), str(folder / CHECKPOINT_FILE))
    (folder / STATE_FILE).write_text(json.dumps({"evaluation": evaluation, "best": None, "model": {},
                                                 "final": final}))
    return folder


def truncate(path) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])


def test_an_engine_state_is_written_atomically(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    atomic_save(engine_state(1), path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")  # the write fails half-way through

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({**engine_state(2), "late": Unpicklable()}, path)
    assert read_checkpoint(str(tmp_path))["step"] == 1  # the previous state, whole
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing", "not an engine state"])
def test_an_unreadable_engine_state_names_its_file(tmp_path, damage):
    path = tmp_path / CHECKPOINT_FILE
    atomic_save(engine_state(1), str(path))
    if damage == "truncated":
        truncate(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "missing":
        path.unlink()
    else:
        torch.save({"weights": torch.ones(2)}, str(path))
    with pytest.raises(CorruptCheckpointError) as info:
        read_checkpoint(str(tmp_path))
    assert str(path) in str(info.value) and info.value.path == str(path)
    again = pickle.loads(pickle.dumps(info.value))  # Ray sends a trial's exception to the driver
    assert str(again) == str(info.value) and again.path == str(path)


def test_a_restarted_trial_skips_unreadable_checkpoints_to_the_newest_good_one(tmp_path, capsys):
    trial = tmp_path / "kd_00000"
    write_checkpoint(trial, 0, 1)
    good = write_checkpoint(trial, 1, 2)
    bad_state = write_checkpoint(trial, 2, 3)
    (bad_state / STATE_FILE).write_text('{"evaluation": 3, "be')  # a torn JSON file
    latest = write_checkpoint(trial, 3, 4)
    truncate(latest / CHECKPOINT_FILE)
    with usable_checkpoint(tune.Checkpoint.from_directory(str(latest))) as (directory, state, skipped):
        assert directory == str(good) and state.evaluation == 2 and skipped == 2
        assert read_checkpoint(directory)["step"] == 6  # engine and wrapper state of one checkpoint
    err = capsys.readouterr().err
    assert f"checkpoint file {latest / CHECKPOINT_FILE} is unreadable" in err
    assert f"checkpoint file {bad_state / STATE_FILE} is unreadable" in err
    assert f"continues from the older checkpoint {good}" in err

    # a readable latest checkpoint is used as it is, silently; a final one needs no engine state
    with usable_checkpoint(tune.Checkpoint.from_directory(str(good))) as (directory, state, skipped):
        assert directory == str(good) and skipped == 0
    final = write_checkpoint(trial, 4, 5, final={"eval_score": 0.5, "final_report": 1})
    with usable_checkpoint(tune.Checkpoint.from_directory(str(final))) as (directory, state, skipped):
        assert directory == str(final) and state.final["eval_score"] == 0.5 and skipped == 0
    assert capsys.readouterr().err == ""


def test_with_no_usable_checkpoint_the_trial_starts_from_scratch(tmp_path, capsys):
    trial = tmp_path / "kd_00000"
    first = write_checkpoint(trial, 5, 1)
    (first / CHECKPOINT_FILE).unlink()  # deleted (e.g. by an old end-of-sweep cleanup)
    latest = write_checkpoint(trial, 6, 2)
    truncate(latest / CHECKPOINT_FILE)
    with usable_checkpoint(tune.Checkpoint.from_directory(str(latest))) as (directory, state, skipped):
        assert directory is None and state.evaluation == 0 and state.best is None and skipped == 2
    err = capsys.readouterr().err
    assert str(first / CHECKPOINT_FILE) in err and str(latest / CHECKPOINT_FILE) in err
    assert "no usable checkpoint of this trial (skipped 2); it starts again from scratch" in err


def evaluations_reported(trial_dir: str) -> list[dict]:
    with open(os.path.join(trial_dir, "result.json")) as fh:
        return [json.loads(line) for line in fh if '"evaluation"' in line]


@pytest.mark.slow
def test_a_resumed_sweep_continues_from_the_last_good_checkpoint(ray_session, tiny_config, mlflow_uri, tmp_path):
    """A real sweep stopped mid-trial, every checkpoint but the oldest truncated, then resumed:
    the trial continues from the oldest (not from scratch, not from a truncated one) and ends."""
    store, name = tmp_path / "store", "corrupt"

    def interrupt_after_three_checkpoints():
        # SIGUSR1 stops Ray Tune as Ctrl-C does; Tune's handler for it stays installed after the
        # run, so (unlike SIGINT) it can never end up as a KeyboardInterrupt in pytest
        deadline = time.time() + 240
        while time.time() < deadline and not glob.glob(str(store / name / "*" / "checkpoint_000002")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    watcher = threading.Thread(target=interrupt_after_three_checkpoints, daemon=True)
    watcher.start()
    first = grid_sweep("kd", "alpha", [0.5], config={**tiny_config, "epochs": 10}, mlflow_uri=mlflow_uri,
                       experiment="test-corrupt", storage_path=str(store), name=name, evals_per_epoch=1,
                       verbose=0)
    watcher.join(timeout=5)
    assert first["interrupted"] is True and [t["status"] for t in first["trials"]] == ["UNFINISHED"]
    trial_dir = first["trials"][0]["path"]
    checkpoints = sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*")))
    assert len(checkpoints) >= 2, checkpoints
    for folder in checkpoints[1:]:  # a kill mid-write or a full disk, as it would look
        if os.path.exists(os.path.join(folder, CHECKPOINT_FILE)):
            truncate(os.path.join(folder, CHECKPOINT_FILE))
    with open(os.path.join(checkpoints[0], STATE_FILE)) as fh:
        good = json.load(fh)["evaluation"]
    before = len(evaluations_reported(trial_dir))

    resumed = launch.main(["--resume", "--name", name, "--storage-path", str(store), "--quiet"])
    assert resumed["interrupted"] is False and resumed["counts"]["TERMINATED"] == 1, resumed["trials"]
    after = evaluations_reported(trial_dir)[before:]
    # continued right after the good checkpoint, and said how many it skipped (Ray may have
    # recorded the newest truncated one or the one before it as the trial's latest)
    assert after[0]["evaluation"] == good + 1, [r["evaluation"] for r in after]
    assert [r["evaluation"] for r in after] == list(range(good + 1, 11))
    assert all(1 <= r[SKIPPED] <= len(checkpoints) - 1 for r in after)

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("test-corrupt").experiment_id],
        filter_string=f"tags.`{tracking.TAG_SWEEP}` = '{name}' and tags.`{tracking.TAG_ROLE}` = 'trial'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")]
    assert steps == sorted(set(steps)) and len(steps) == 10  # every evaluation once, none mixed in twice
    assert runs[0].data.metrics[SKIPPED] >= 1

    # the worker's warning names the truncated file (Ray keeps each worker's stderr in its logs)
    import ray

    logs = ray._private.worker._global_node.get_logs_dir_path()
    text = "".join(open(p, errors="replace").read() for p in glob.glob(os.path.join(logs, "worker-*.err")))
    assert any(f"checkpoint file {os.path.join(c, CHECKPOINT_FILE)} is unreadable" in text
               for c in checkpoints[1:])
    assert f"continues from the older checkpoint {checkpoints[0]}" in text
