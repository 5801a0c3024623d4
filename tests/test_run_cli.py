"""``python -m trainables.run``: a real single run, the teacher stage cache, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trainables.config import DistillConfig
from trainables.run import main
from trainables.teacher import resolve_teachers, teacher_cache_path

TINY = ["--max-train-samples", "48", "--max-eval-samples", "32", "--max-seq-length", "32",
        "--epochs", "1", "--batch-size", "16", "--quiet", "--device", "cpu"]


def test_run_writes_final_metrics_json(data_dir, tiny_bert, tmp_path):
    out = tmp_path / "m.json"
    main(["--method", "kd", "--task", "sst2", "--data-dir", data_dir, "--teacher-checkpoint", tiny_bert,
          "--teacher", tiny_bert, "--set", "alpha=0.7", "--set", "temperature=4", "--set", "student_layers=1",
          "--output-dir", str(tmp_path / "out"), "--output-json", str(out), *TINY])
    summary = json.loads(out.read_text())
    assert summary["eval_score"] == summary["eval_accuracy"]
    assert 0.0 <= summary["eval_score"] <= 1.0
    assert summary["student_layers"] == 1 and summary["teacher_layers"] == 2
    assert os.path.isfile(tmp_path / "out" / "student" / "config.json")
    assert os.path.isfile(tmp_path / "out" / "student" / "tokenizer_config.json")


def test_teacher_is_fine_tuned_once_and_cached(data_dir, tiny_bert, tmp_path):
    cfg = DistillConfig(task="sst2", data_dir=data_dir, teacher=tiny_bert, cache_dir=str(tmp_path),
                        max_train_samples=48, max_eval_samples=32, max_seq_length=32, teacher_epochs=1,
                        device="cpu")
    (path,) = resolve_teachers(cfg)
    assert path == teacher_cache_path(cfg, cfg.teacher_seed)
    info = json.loads(open(os.path.join(path, "teacher_info.json")).read())
    assert info["settings"]["teacher"] == tiny_bert and "eval_accuracy" in info["dev_metrics"]
    stamp = os.path.getmtime(os.path.join(path, "teacher_info.json"))
    assert resolve_teachers(cfg) == [path]  # cached: not trained again
    assert os.path.getmtime(os.path.join(path, "teacher_info.json")) == stamp
    # another seed or setting is another teacher
    two = resolve_teachers(cfg.replace(num_teachers=2))
    assert two[0] == path and two[1] != path and os.path.isdir(two[1])


def _bad(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.mark.parametrize("argv,needles", [
    (["--method", "distil"], ["'distil'", "finetune", "kd", "pkd"]),
    (["--task", "imdb"], ["'imdb'", "sst2", "cola", "mrpc", "stsb", "chemprot", "gad"]),
    (["--set", "alpah=0.5"], ["'alpah'", "alpha", "temperature"]),
    (["--set", "temperature=hot"], ["temperature='hot'", "float"]),
    (["--set", "kd_loss=l1"], ["'l1'", "kl, mse"]),
    (["--device", "tpu"], ["'tpu'", "auto, cpu, cuda"]),
])
def test_bad_input_is_one_clear_line_and_exit_2(capsys, data_dir, argv, needles):
    err = _bad(capsys, ["--data-dir", data_dir, *TINY, *argv])
    for needle in needles:
        assert needle in err, (needle, err)


def _byo(tmp_path, train: str, dev: str) -> str:
    folder = tmp_path / "byo"
    folder.mkdir(exist_ok=True)
    (folder / "train.tsv").write_text(train)
    (folder / "dev.tsv").write_text(dev)
    return str(folder)


@pytest.mark.parametrize("train,dev,args,needles", [
    ("txt\ty\na\t1\nb\t0\n", "txt\ty\na\t1\n", ["--text-columns", "text", "--label-column", "y"],
     ["'text'", "txt"]),
    ("txt\ty\na\tpos\nb\tneg\n", "txt\ty\na\tmaybe\n", ["--text-columns", "txt", "--label-column", "y"],
     ["'maybe'", "neg", "pos"]),
    ("txt\ty\na\t0.5\nb\t1.5\n", "txt\ty\na\tlots\n", ["--text-columns", "txt", "--label-column", "y"],
     ["'lots'"]),
    ("", "txt\ty\na\t1\n", ["--text-columns", "txt", "--label-column", "y"], ["train.tsv"]),
])
def test_bring_your_own_bad_files(capsys, tmp_path, train, dev, args, needles):
    folder = _byo(tmp_path, train, dev)
    err = _bad(capsys, ["--task", folder, *args, "--teacher-checkpoint", "x", *TINY])
    for needle in needles:
        assert needle in err, (needle, err)


def test_cli_exit_code_without_traceback(data_dir):
    proc = subprocess.run([sys.executable, "-m", "trainables.run", "--method", "nope", "--data-dir", data_dir],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown method 'nope'" in proc.stderr
