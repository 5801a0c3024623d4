"""The launch CLI: ``--list``, and bad input -> one line on stderr, exit code 2, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ray_fixtures import tiny_cli_args
from trainables.methods import METHODS
from trainables.tasks import TASKS
from tuner import launch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fails(argv, capsys) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one ``error:`` line on stderr."""
    with pytest.raises(SystemExit) as info:
        launch.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_list_shows_methods_tasks_and_spaces(capsys):
    launch.main(["--list"])
    out = capsys.readouterr().out
    for name in list(METHODS) + list(TASKS):
        assert f"  {name}" in out
    assert "update_strategy  {first, last, skip, both}" in out
    assert "teacher_lr       [1e-06, 0.0001] log" in out


def test_help_states_the_embedded_defaults(capsys):
    with pytest.raises(SystemExit):
        launch.main(["--help"])
    out = capsys.readouterr().out
    for text in ("--num-samples", "--gpus-per-trial", "--resume", "--space", "default 8", "default 2"):
        assert text in out


def test_bad_method_in_a_real_process():
    done = subprocess.run([sys.executable, "-m", "tuner.launch", "--method", "nope", "--task", "sst2"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: unknown method 'nope'; valid: {', '.join(sorted(METHODS))}"]


@pytest.fixture
def base_args(tiny_config, tmp_path) -> list[str]:
    return ["--method", "kd", *tiny_cli_args(tiny_config), "--storage-path", str(tmp_path / "store"),
            "--mlflow-uri", "sqlite:///" + str(tmp_path / "mlflow.db"), "--name", "bad", "--quiet"]


def space_file(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--set", "nope=1"], "unknown hyperparameter 'nope'"),
    (["--set", "alpha"], "expects key=value"),
    (["--set", "alpha=much"], "alpha='much' is not a valid float"),
    (["--set", "update_strategy=middle"], "not one of: first, last, skip, both"),
    (["--set", "temperature=0"], "temperature must be > 0"),
    (["--num-samples", "0"], "--num-samples must be >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1 (evaluations between checkpoints), got 0"),
    (["--system-metrics", "-1"], "--system-metrics must be > 0 seconds between samples, got -1"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5 is neither a fraction of one GPU"),
    (["--grid", "nope=1,2"], "unknown hyperparameter 'nope' in the grid"),
    (["--space", "SPACE:alpha: {low: 0.5, high: 0.5}"], "empty range"),
    (["--space", "SPACE:alpha: {low: 0.9, high: 0.1}"], "inverted range"),
    (["--space", "SPACE:nope: [1, 2]"], "unknown hyperparameter 'nope'"),
    (["--space", "SPACE:meta_interval: {low: a, high: 3}"], "low must be a number"),
    (["--space", "MISSING"], "does not exist"),
    (["--teacher", "/no/such/model"], "cannot load model"),
    (["--task-type", "both"], "task_type='both' is not one of: classification, regression"),
    (["--resume"], "--resume needs --name"),
])
def test_bad_input_exits_2_before_anything_starts(extra, message, base_args, tmp_path, capsys):
    extra = [space_file(tmp_path, e[len("SPACE:"):]) if e.startswith("SPACE:")
             else str(tmp_path / "missing.yaml") if e == "MISSING" else e for e in extra]
    argv = ["--resume"] if extra == ["--resume"] else base_args + extra
    assert message in fails(argv, capsys)
    assert not (tmp_path / "store" / "bad").exists()  # no sweep was started


def test_more_gpus_than_the_cluster_has(ray_session, base_args, tmp_path, capsys):
    line = fails(base_args + ["--gpus-per-trial", "0.5"], capsys)
    assert "--gpus-per-trial 0.5" in line and "no GPU" in line
    assert not (tmp_path / "store" / "bad").exists()


def test_unreachable_cluster_address(base_args, capsys):
    line = fails(base_args + ["--address", "127.0.0.1:1"], capsys)
    assert "no Ray cluster answers at --address 127.0.0.1:1" in line


def test_unreachable_tracking_server(base_args, capsys):
    args = [a for a in base_args]
    args[args.index("--mlflow-uri") + 1] = "http://127.0.0.1:1"
    line = fails(args, capsys)
    assert "MLflow tracking server http://127.0.0.1:1 is unreachable" in line


def test_resume_of_an_unknown_sweep(tmp_path, capsys):
    line = fails(["--resume", "--name", "ghost", "--storage-path", str(tmp_path)], capsys)
    assert "no sweep 'ghost' to resume" in line


def test_a_name_in_use_needs_resume(base_args, tmp_path, capsys):
    (tmp_path / "store" / "bad").mkdir(parents=True)
    (tmp_path / "store" / "bad" / "distill_sweep.json").write_text("{}")
    assert "already exists" in fails(base_args, capsys)


@pytest.mark.parametrize("where", ["/proc/distill-store", "FILE/store", "/sys/distill-store"])
def test_an_unwritable_storage_path(where, base_args, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    where = where.replace("FILE", str(tmp_path / "file"))
    args = list(base_args)
    args[args.index("--storage-path") + 1] = where
    line = fails(args, capsys)
    assert line.startswith(f"error: --storage-path {where} is not a writable folder")


@pytest.mark.parametrize("text", ['{"spec": {"method": "kd", "con', "[]", '{"parent_run_id": "x"}'])
def test_resume_with_a_corrupt_record(text, tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "distill_sweep.json").write_text(text)
    line = fails(["--resume", "--name", "broken", "--storage-path", str(tmp_path)], capsys)
    assert f"cannot resume from {tmp_path / 'broken' / 'distill_sweep.json'}: the sweep record is corrupt" in line


@pytest.mark.parametrize("extra, message", [
    (["--set", "alpha=1.5"], "alpha must be in [0, 1], got 1.5"),
    (["--set", "beta=-1"], "beta must be >= 0, got -1.0"),
    (["--set", "weight_decay=-0.01"], "weight_decay must be >= 0"),
    (["--set", "max_grad_norm=-1"], "max_grad_norm must be >= 0"),
    (["--set", "lr_warmup_ratio=2"], "lr_warmup_ratio must be in [0, 1]"),
    (["--set", "inner_lr=0"], "inner_lr must be in (0, 1], got 0.0"),
    (["--set", "teacher_lr=5"], "teacher_lr must be in (0, 1], got 5.0"),
    (["--space", "SPACE:alpha: {low: 0.5, high: 2.0}"], "alpha must be in [0, 1], got 2.0"),
    (["--space", "SPACE:student_lr: {low: 1.0e-5, high: 3.0, log: true}"], "student_lr must be in (0, 1], got 3.0"),
    (["--student-layers", "3"], "student_layers=3 is more than the 2 layers of the teacher"),
    (["--grid", "student_layers=1,5"], "student_layers=5 is more than the 2 layers of the teacher"),
    (["--space", "SPACE:student_layers: {low: 1, high: 4}"], "student_layers=4 is more than the 2 layers"),
])
def test_hyperparameters_out_of_range_exit_2_before_ray_starts(extra, message, base_args, tmp_path, capsys,
                                                                monkeypatch):
    from tuner import cluster

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the hyperparameters were checked")

    monkeypatch.setattr(cluster, "connect", no_ray)
    args = list(base_args)
    if "student_layers" in " ".join(extra):  # not fixed by the tiny run's --student-layers 1
        del args[args.index("--student-layers"):args.index("--student-layers") + 2]
    extra = [space_file(tmp_path, e[len("SPACE:"):]) if e.startswith("SPACE:") else e for e in extra]
    assert message in fails(args + extra, capsys)
    assert not (tmp_path / "store" / "bad").exists()
