"""What a sweep spends besides training (issue 10, item 6 and item 7's checkpoints): checkpoints
written only every ``--checkpoint-every`` evaluations, the teacher stage's resources and progress,
the driver counting rows without tokenising, trials reusing the tokenised splits, and the
summary's wall-time breakdown."""

from __future__ import annotations

import json
import os
import re

import pytest

from trainables import trainable as trainable_module

EVALS = 6  # tiny finetune run below: 2 epochs of 3 steps, an evaluation every step


class FakeTune:
    """What the trainable sees of Ray inside a trial: ``tune.report`` records each report and
    whether it carried a checkpoint (with an engine state in it)."""

    def __init__(self, monkeypatch):
        import ray
        from ray import tune

        self.reports: list[tuple[dict, bool, bool]] = []

        def report(metrics, checkpoint=None):
            state = checkpoint is not None and os.path.isfile(
                os.path.join(checkpoint.path, "engine_state.pt"))
            self.reports.append((dict(metrics), checkpoint is not None, state))

        class Context:
            def get_node_id(self):
                return "node-1"

        monkeypatch.setattr(tune, "report", report)
        monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
        monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])

    def checkpointed_evaluations(self) -> list[int]:
        return [m[trainable_module.EVALUATION] for m, ckpt, state in self.reports
                if ckpt and state and trainable_module.EVALUATION in m]


def tiny_finetune(tiny_config) -> dict:
    return {**tiny_config, "epochs": 2, "eval_steps": 1, "max_train_samples": 48, "batch_size": 16}


@pytest.mark.parametrize("every, expected", [(1, [1, 2, 3, 4, 5, 6]), (2, [2, 4, 6]), (4, [4])])
def test_checkpoints_follow_checkpoint_every(every, expected, tiny_config, monkeypatch):
    fake = FakeTune(monkeypatch)
    run = trainable_module.make_trainable("finetune", tiny_finetune(tiny_config), threads=1,
                                          checkpoint_every=every)
    run({"student_lr": 1e-4})
    evaluations = [m for m, _, _ in fake.reports if trainable_module.EVALUATION in m]
    assert len(evaluations) == EVALS
    assert fake.checkpointed_evaluations() == expected
    final = fake.reports[-1]
    assert final[0][trainable_module.FINAL] == 1 and final[1]  # the final checkpoint is always written


# ---- the teacher stage ------------------------------------------------------------------------

def stage_spec(**kw):
    from tuner.spec import SweepSpec

    return SweepSpec(method="kd", **kw)


@pytest.mark.parametrize("settings, resources, expected", [
    ({}, {"max_node_CPU": 8.0}, (8.0, 0.0)),    # private local instance: every core of the machine
    ({"address": "head:6379"}, {"max_node_CPU": 8.0}, (2.0, 0.0)),   # a cluster: the trials' cores
    ({"address": "head:6379", "cpus_per_trial": 2, "max_concurrent": 8, "gpus_per_trial": 0.25},
     {"max_node_CPU": 6.0, "max_node_GPU": 4.0}, (6.0, 1.0)),
])
def test_the_teacher_task_gets_the_cores_the_trials_wait_with(settings, resources, expected, tiny_config,
                                                             monkeypatch, tmp_path):
    from tuner import cluster, teacher_stage

    calls = []
    monkeypatch.setattr(cluster, "run_remote", lambda fn, args, **res: calls.append((fn, args, res)) or [["t"]])
    config = {**tiny_config, "cache_dir": str(tmp_path)}  # nothing cached: the task runs
    assert teacher_stage.fine_tune_teachers([config], stage_spec(verbose=0, **settings), resources) == [["t"]]
    (fn, args, res), = calls
    assert (res["num_cpus"], res["num_gpus"]) == expected
    assert fn is teacher_stage.run_stage and args[0][1] == int(expected[0])  # torch threads = its CPUs


def test_a_cached_teacher_needs_no_ray_task(tiny_config, monkeypatch, capsys):
    from trainables.config import DistillConfig
    from trainables.teacher import resolve_teachers
    from tuner import cluster, teacher_stage

    cached = resolve_teachers(DistillConfig.from_dict({**tiny_config, "method": "kd"}))
    monkeypatch.setattr(cluster, "run_remote", lambda *a, **k: pytest.fail("a Ray task for a cached teacher"))
    assert teacher_stage.fine_tune_teachers([tiny_config], stage_spec(), {"max_node_CPU": 2.0}) == [cached]
    assert "already fine-tuned" in capsys.readouterr().out


def test_the_teacher_task_sets_its_threads_and_prints_labelled_progress(tiny_config, monkeypatch, tmp_path,
                                                                         capsys):
    import torch

    from trainables import teacher
    from tuner import teacher_stage

    seen = {}

    def fine_tune(cfg, *, progress):
        seen["threads"] = torch.get_num_threads()
        # the real fine-tuning, with the stage's progress lines
        seen["paths"] = teacher.finetune_teacher(cfg, cfg.teacher_seed, progress=progress)
        return [seen["paths"]]

    monkeypatch.setattr(teacher, "resolve_teachers", fine_tune)
    monkeypatch.setattr(teacher_stage, "PROGRESS_EVERY", 0.0)
    before = torch.get_num_threads()
    try:
        config = {**tiny_config, "cache_dir": str(tmp_path), "teacher_epochs": 2}
        assert teacher_stage.run_stage(config, 2) == [seen["paths"]]
    finally:
        torch.set_num_threads(before)
    assert seen["threads"] == 2
    out = capsys.readouterr().out.splitlines()
    steps = [line for line in out if line.startswith("teacher: step ")]
    assert steps and re.match(r"teacher: step (\d+)/\1 \(100%\), \d+s elapsed, eta 0s", steps[-1]), steps
    assert "loss" in steps[-1]
    evals = [line for line in out if line.startswith("teacher eval: step ")]
    assert len(evals) == 2 and "'eval_accuracy'" in evals[0]   # one per epoch end
    assert not [line for line in out if line.strip() and not line.startswith("teacher")]


def test_line_progress_paces_its_lines():
    import io

    from trainables.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(100, label="teacher", every=10, stream=out, clock=lambda: now[0])
    for _ in range(50):
        now[0] += 0.5
        bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.write("step 50 epoch 0.50: {}")
    for _ in range(50):
        now[0] += 0.5
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "teacher: step 20/100 (20%), 10s elapsed, eta 40s"
    assert "teacher eval: step 50 epoch 0.50: {}" in lines
    assert lines[-1] == "teacher: step 100/100 (100%), 50s elapsed, eta 0s, loss 0.5"
    assert len(lines) == 6  # every 10 s: steps 20, 40, 60, 80, 100, and the eval line


# ---- data on the driver and in the trials ----------------------------------------------------

def count_tokenizer_calls(monkeypatch) -> list[int]:
    from transformers import PreTrainedTokenizerBase

    calls = [0]
    original = PreTrainedTokenizerBase.__call__

    def counted(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counted)
    return calls


@pytest.mark.parametrize("method, rows", [("kd", 48), ("metadistil", 43)])  # metadistil holds out the quiz
def test_the_driver_counts_rows_without_tokenising(method, rows, tiny_config, monkeypatch, tmp_path):
    from trainables import assembly, data
    from tuner import spec as sweep_spec

    calls = count_tokenizer_calls(monkeypatch)
    for module in (data, assembly):
        monkeypatch.setattr(module, "tokenize_split", lambda *a, **k: pytest.fail("the driver tokenised"))
    spec = sweep_spec.normalise(sweep_spec.SweepSpec(method=method, config=dict(tiny_config),
                                                     storage_path=str(tmp_path), evals_per_epoch=2))
    prep = sweep_spec.prepare_sweep(spec)
    assert calls[0] == 0
    assert prep.train_rows == rows and prep.eval_steps == max(1, -(-rows // 16) // 2)


def test_a_trial_reuses_the_tokenised_splits(tiny_config, monkeypatch, tmp_path):
    """The first run on a node tokenises; a later run (another process, another config of the
    same data, tokenizer and max_seq_length) reads the tokenised splits from the datasets cache."""
    import subprocess
    import sys

    from trainables.config import DistillConfig
    from trainables.experiment import prepare

    cfg = {**tiny_config, "method": "finetune", "max_seq_length": 24}
    prepare(DistillConfig.from_dict(cfg), teacher_paths=[])
    code = ("import json, sys\n"
            "from transformers import PreTrainedTokenizerBase\n"
            "calls = [0]\n"
            "original = PreTrainedTokenizerBase.__call__\n"
            "def counted(self, *a, **k):\n"
            "    calls[0] += isinstance(a[0], list)  # rows in batches (not the tokenizer check's probes)\n"
            "    return original(self, *a, **k)\n"
            "PreTrainedTokenizerBase.__call__ = counted\n"
            "from trainables.config import DistillConfig\n"
            "from trainables.experiment import prepare\n"
            "prep = prepare(DistillConfig.from_dict(json.loads(sys.argv[1])), teacher_paths=[])\n"
            "print('calls', calls[0], len(prep.engine.loaders.train.dataset))\n")
    trial = {**cfg, "seed": 7, "student_lr": 3e-5, "batch_size": 8}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(trial)], capture_output=True, text=True,
                          timeout=120, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["calls", "0", "48"], done.stdout
