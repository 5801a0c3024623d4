"""What the engine does not spend: quiz batches on steps that do not use them, host
synchronisation per step, near-duplicate evaluations."""

from __future__ import annotations

import itertools
import math
import os
import sys

import pytest
import torch
from meta_helpers import one_thread  # noqa: F401 (autouse fixture)

import trainables.engine
from trainables.config import DistillConfig
from trainables.experiment import prepare


def _cfg(data_dir, teacher, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=80, max_eval_samples=16,
                max_seq_length=24, batch_size=8, epochs=1, student_layers=1, device="cpu")
    base.update(kw)
    return DistillConfig(**base)


def test_quiz_batches_are_drawn_only_for_meta_steps(data_dir, tiny_bert):
    prep = prepare(_cfg(data_dir, tiny_bert, method="metadistil", meta_interval=4, num_quiz_batches=2),
                   teacher_paths=[tiny_bert])
    engine = prep.engine
    drawn = []
    prepare_batch = engine._prepare
    engine._quiz_batches = (lambda quiz, original=engine._quiz_batches: drawn.append(engine.step)
                            or original(quiz))
    engine._prepare = prepare_batch
    result = engine.fit()
    steps = engine.total_steps
    assert drawn == list(range(0, steps, 4))  # the meta steps, and only them
    assert ["quiz_loss" in log for log in result.logs] == [i % 4 == 0 for i in range(steps)]


@pytest.mark.parametrize("method,extra", [("kd", {}), ("pkd", {}), ("metadistil", {}),
                                          ("meta-adaptive-kd", {}),
                                          ("reptile-distil", {"student_layers": 2})])
def test_a_step_does_not_read_values_back_from_the_device(data_dir, tiny_bert, monkeypatch, method, extra):
    """Steps return device tensors; the engine reads them once per log interval (on CUDA a per-step
    .item() would stall the GPU)."""
    prep = prepare(_cfg(data_dir, tiny_bert, method=method, **extra), teacher_paths=[tiny_bert])
    engine = prep.engine
    quiz = itertools.cycle(engine.loaders.quiz) if engine.loaders.quiz is not None else None
    batches = iter(engine.loaders.train)

    project = os.path.dirname(os.path.abspath(trainables.engine.__file__))

    def guarded(original):
        def read(self, *args, **kwargs):  # torch's own internals (e.g. AdamW's CPU step count) may
            caller = sys._getframe(1).f_code.co_filename  # read host tensors; the project may not
            if os.path.abspath(caller).startswith(project):
                raise AssertionError(f"a host read inside a training step ({caller})")
            return original(self, *args, **kwargs)
        return read

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "item", guarded(torch.Tensor.item))
        m.setattr(torch.Tensor, "__float__", guarded(torch.Tensor.__float__))
        m.setattr(torch.Tensor, "__bool__", guarded(torch.Tensor.__bool__))
        for _ in range(2):
            logs = engine.train_step(next(batches), quiz)
            engine._unread.append((engine.step, logs))
            engine.step += 1
    assert all(torch.is_tensor(v) for v in logs.values())
    engine._flush()  # the one read: every value arrives as a float
    assert len(engine.result.losses) == 2 and all(isinstance(v, float) for v in engine.result.logs[-1].values())


def test_non_finite_loss_names_its_step_at_the_next_log_interval(data_dir, tiny_bert):
    from trainables.engine import NonFiniteLossError

    prep = prepare(_cfg(data_dir, tiny_bert, method="kd"), teacher_paths=[tiny_bert])
    engine = prep.engine
    engine._unread = [(0, {"loss": torch.tensor(0.5)}), (1, {"loss": torch.tensor(float("inf"))})]
    with pytest.raises(NonFiniteLossError, match="inf at step 1"):
        engine._flush()


def test_an_end_of_training_evaluation_right_after_a_scheduled_one_is_skipped(data_dir, tiny_bert):
    # 72 training rows / 8 = 9 steps; evaluations every 4 steps: 4, 8; the end (9) is 1 step later
    cfg = _cfg(data_dir, tiny_bert, method="finetune", eval_steps=4, max_train_samples=72)
    result = prepare(cfg, teacher_paths=[]).engine.fit()
    assert [h["step"] for h in result.history] == [4, 8]
    final = prepare(cfg.replace(select="final"), teacher_paths=[]).engine.fit()
    assert [h["step"] for h in final.history] == [4, 8, 9]  # the final student is always evaluated


@pytest.mark.parametrize("method,expected", [("metadistil", "eager"), ("reptile-distil", "sdpa"), ("kd", "sdpa")])
def test_only_double_backward_methods_give_up_the_fast_attention_kernels(data_dir, tiny_bert, method, expected):
    prep = prepare(_cfg(data_dir, tiny_bert, method=method), teacher_paths=[tiny_bert])
    m = prep.engine.method
    assert m.student.config._attn_implementation == expected
    for teacher in m.teachers:  # a teacher's graph is differentiated once at most
        assert teacher.config._attn_implementation == "sdpa"


def test_malloc_tuning_applies_once_and_can_be_turned_off(monkeypatch):
    import subprocess

    code = "from trainables import allocator; print(allocator.tune(), allocator.tune())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TUNER_MALLOC_TUNING": "0"})
    import platform

    assert on.stdout.split() == (["True", "True"] if platform.libc_ver()[0] == "glibc" else ["False", "False"])
    assert off.stdout.split() == ["False", "False"]


def test_every_run_records_its_step_time_peak_memory_and_device(data_dir, tiny_bert):
    from trainables.experiment import run

    summary = run(_cfg(data_dir, tiny_bert, method="kd", eval_steps=3), teacher_paths=[tiny_bert])
    assert summary["device"] == "cpu"
    assert 0 < summary["step_ms"] < 1000 * summary["train_seconds"]
    assert summary["peak_mem_mb"] > 50  # this process's peak RSS


def test_length_grouped_batches_pad_less_and_cover_every_row_once(data_dir, tiny_bert):
    def epoch(cfg, seed_epoch):
        loader = prepare(cfg, teacher_paths=[tiny_bert]).engine.loaders.train
        loader.generator.manual_seed(seed_epoch)
        rows, padding = [], 0
        for b in loader:
            rows += b["row"].tolist() if "row" in b else []
            padding += int((b["attention_mask"] == 0).sum())
        return rows, padding

    cfg = _cfg(data_dir, tiny_bert, method="kd", max_train_samples=400, max_seq_length=64)
    grouped, grouped_pad = epoch(cfg, 1)
    plain, plain_pad = epoch(cfg.replace(group_by_length=False), 1)
    assert sorted(grouped) == sorted(plain) == list(range(400))  # every row once per epoch
    assert grouped_pad < 0.5 * plain_pad
    assert epoch(cfg, 1)[0] == grouped and epoch(cfg, 2)[0] != grouped  # seeded per epoch: resumable


def test_dev_sorted_by_length_gives_the_same_metrics(data_dir, tiny_bert):
    from trainables.data import make_loader, tokenize_split
    from trainables.evaluation import evaluate

    prep = prepare(_cfg(data_dir, tiny_bert, method="finetune", max_eval_samples=100), teacher_paths=[])
    unsorted = make_loader(tokenize_split(prep.data.dev, prep.tokenizer, prep.task, 24), prep.tokenizer, 16,
                           shuffle=False)
    student = prep.engine.method.student
    lengths = [int(b["attention_mask"].sum(1).max()) for b in prep.engine.loaders.dev]
    assert lengths == sorted(lengths)
    a = evaluate(student, prep.engine.loaders.dev, prep.task, torch.device("cpu"))
    b = evaluate(student, unsorted, prep.task, torch.device("cpu"))
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-9) for k in a)


@pytest.mark.parametrize("method,extra", [("kd", {}), ("pkd", {}), ("metadistil", {}),
                                          ("metadistil", {"inner_update": "adam"}), ("meta-adaptive-kd", {}),
                                          ("reptile-distil", {})])
def test_bf16_autocast_trains_every_method_double_backward_included(data_dir, tiny_bert, method, extra):
    prep = prepare(_cfg(data_dir, tiny_bert, method=method, bf16=True, **extra), teacher_paths=[tiny_bert])
    teacher_before = [p.detach().clone() for p in prep.engine.method.teachers[0].parameters()]
    result = prep.engine.fit()
    assert all(math.isfinite(x) for x in result.losses)
    assert all(p.dtype == torch.float32 for p in prep.engine.method.student.parameters())  # fp32 master weights
    if prep.engine.method.teacher_learns:  # the meta-update went through the bf16 graph
        assert any(not torch.equal(a, b) for a, b in zip(teacher_before, prep.engine.method.teachers[0].parameters()))
