"""The shared engine and the first three methods, on tiny random-init BERTs and on real SST-2 rows."""

from __future__ import annotations

import math
import os

import pytest
import torch

from trainables.config import DistillConfig
from trainables.engine import NonFiniteLossError
from trainables.engine_state import CHECKPOINT_FILE
from trainables.experiment import prepare, run
from trainables.methods import METHODS
from trainables.methods.kd import KD
from trainables.models import build_student, load_classifier, packaged_minilm_path
from trainables.tasks import TASKS


def _cfg(data_dir, teacher, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=72, max_eval_samples=48,
                max_seq_length=32, batch_size=16, epochs=4, student_layers=1, seed=3,
                lr_warmup_ratio=0.0, device="cpu")
    base.update(kw)
    return DistillConfig(**base)


def _epoch_means(losses: list[float], epochs: int) -> list[float]:
    per = len(losses) // epochs
    return [sum(losses[i * per:(i + 1) * per]) / per for i in range(epochs)]


# ---- student truncation ----------------------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
def test_default_student_is_the_first_k_teacher_layers(layers):
    task = TASKS["sst2"]
    source = packaged_minilm_path()
    teacher = load_classifier(source, task)
    student = build_student(source, None, layers, task)
    assert student.config.num_hidden_layers == layers
    assert len(student.bert.encoder.layer) == layers
    t_params = dict(teacher.bert.named_parameters())
    for name, p in student.bert.named_parameters():
        if name.startswith("encoder.layer.") or name.startswith("embeddings."):
            assert torch.equal(p, t_params[name]), name
    assert not any(n.startswith(f"encoder.layer.{layers}.") for n, _ in student.bert.named_parameters())


def test_student_layers_out_of_range_is_a_clear_error(tiny_bert):
    from trainables.errors import UserError

    with pytest.raises(UserError, match=r"student_layers=5 .*\(valid: 1\.\.2\)"):
        build_student(tiny_bert, None, 5, TASKS["sst2"])


# ---- each method learns ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["finetune", "kd", "pkd"])
def test_method_loss_goes_down_on_tiny_bert(method, data_dir, tiny_bert4):
    cfg = _cfg(data_dir, tiny_bert4, method=method, student_lr=2e-3, student_layers=2, beta=10.0)
    summary = run(cfg, teacher_paths=[tiny_bert4])
    losses = [h["train_loss"] for h in summary["history"]]
    assert len(losses) == cfg.epochs
    assert losses[-1] < losses[0], losses
    if method == "pkd":
        assert all("train_patient_loss" in h for h in summary["history"])


# on the real MiniLM (6 layers) with real SST-2 rows: kd and pkd learn
# (tests/test_meta_training.py::test_loss_decreases_on_real_sst2_rows), a run's summary has the
# sizes and a positive measured speed-up (test_cli_metadistil_then_static_teaching_from_the_saved_teacher)


# ---- engine mechanics ------------------------------------------------------------------------

def test_resume_from_checkpoint_reproduces_an_uninterrupted_run(data_dir, tiny_bert, tmp_path):
    cfg = _cfg(data_dir, tiny_bert, method="kd", epochs=2, student_lr=1e-3)
    straight = prepare(cfg, teacher_paths=[tiny_bert]).engine
    straight.fit()

    first = prepare(cfg, teacher_paths=[tiny_bert]).engine
    saved = []

    def report(metrics, save_checkpoint):
        if metrics["epoch"] == 1.0:
            save_checkpoint(str(tmp_path / "ckpt"))
            saved.append(metrics["step"])

    first.fit(report=report)
    assert saved
    # tensors and plain containers only: loading runs no pickled code
    state = torch.load(str(tmp_path / "ckpt" / CHECKPOINT_FILE), weights_only=True)
    assert state["step"] == saved[0] and isinstance(state["result"], dict)
    resumed = prepare(cfg, teacher_paths=[tiny_bert]).engine
    result = resumed.fit(resume_from=str(tmp_path / "ckpt"))
    assert len(result.losses) == straight.total_steps
    for (name, a), b in zip(straight.method.student.named_parameters(), resumed.method.student.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert [h["step"] for h in result.history] == [h["step"] for h in straight.result.history]


def test_eval_steps_and_best_model_selection(data_dir, tiny_bert):
    cfg = _cfg(data_dir, tiny_bert, method="finetune", epochs=1, eval_steps=2, max_train_samples=90)
    prep = prepare(cfg, teacher_paths=[])
    result = prep.engine.fit()
    steps = [h["step"] for h in result.history]
    n = prep.engine.total_steps
    assert n >= 3
    assert steps == list(range(2, n + 1, 2)) + ([n] if n % 2 else [])  # every 2 steps + the end
    best = max(result.history, key=lambda h: h["eval_score"])
    assert result.best["eval_score"] == best["eval_score"]
    model = prep.engine.best_student_model()
    from trainables.evaluation import evaluate

    again = evaluate(model, prep.engine.loaders.dev, prep.task, torch.device("cpu"))
    assert again["eval_score"] == pytest.approx(best["eval_score"])


class _Exploding(KD):
    name = "exploding"

    def step(self, batch, quiz_batches=None):
        logs = super().step(batch)  # steps 0 and 1 are fine, step 2 reports NaN
        return {"loss": math.nan} if self.student_opt.scheduler.last_epoch > 2 else logs


def test_non_finite_loss_fails_the_run(data_dir, tiny_bert, monkeypatch):
    from trainables import methods

    monkeypatch.setitem(methods.METHODS, "exploding", _Exploding)
    cfg = _cfg(data_dir, tiny_bert, method="exploding", epochs=1)
    with pytest.raises(NonFiniteLossError, match="nan at step 2"):
        run(cfg, teacher_paths=[tiny_bert])


def test_warmup_epochs_use_no_teacher(data_dir, tiny_bert, monkeypatch):
    calls = []
    original = KD.teacher_outputs

    def spy(self, batch, **kw):
        calls.append(int(self.student_opt.scheduler.last_epoch))
        return original(self, batch, **kw)

    monkeypatch.setattr(KD, "teacher_outputs", spy)
    cfg = _cfg(data_dir, tiny_bert, method="kd", epochs=1, warmup_epochs=1)
    prep = prepare(cfg, teacher_paths=[tiny_bert])
    prep.engine.fit()
    per_epoch = prep.engine.steps_per_epoch
    assert calls and min(calls) == per_epoch  # the first epoch (warm-up) never asked the teacher
    assert len(prep.engine.result.losses) == 2 * per_epoch


def test_multi_teacher_soft_targets_are_the_mean_of_logits(data_dir, tiny_bert, tiny_bert4):
    cfg = _cfg(data_dir, tiny_bert, method="kd", epochs=1)
    prep = prepare(cfg, teacher_paths=[tiny_bert, tiny_bert4])
    method = prep.engine.method
    batch = next(iter(prep.engine.loaders.train))
    outs = method.teacher_outputs(batch)
    expected = (outs[0].logits + outs[1].logits) / 2
    assert len(method.teachers) == 2
    assert torch.allclose(method.mean_logits(outs), expected)


def test_bf16_autocast_runs(data_dir, tiny_bert):
    cfg = _cfg(data_dir, tiny_bert, method="kd", epochs=1, bf16=True)
    summary = run(cfg, teacher_paths=[tiny_bert])
    assert math.isfinite(summary["final_train_loss"])


def test_meta_run_saves_every_meta_learned_teacher(data_dir, tiny_bert, tiny_bert4, tmp_path):
    cfg = _cfg(data_dir, tiny_bert, method="metadistil", epochs=1, teacher_lr=1e-3,
               output_dir=str(tmp_path / "out"))
    summary = run(cfg, teacher_paths=[tiny_bert, tiny_bert4])
    assert [os.path.basename(p) for p in summary["teacher_paths"]] == ["teacher", "teacher-2"]
    task = TASKS["sst2"]
    for saved, original in zip(summary["teacher_paths"], [tiny_bert, tiny_bert4], strict=True):
        before = load_classifier(original, task).bert.embeddings.word_embeddings.weight
        after = load_classifier(saved, task).bert.embeddings.word_embeddings.weight
        assert before.shape == after.shape and not torch.equal(before, after)  # meta-updated


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_checkpoints_tensors_and_plain_containers_only(method, data_dir, tiny_bert, tmp_path):
    """Each method's engine state (its own state, optimisers, RNGs, result, pending logs) loads
    with ``weights_only=True`` and restores the step and the results so far."""
    cfg = _cfg(data_dir, tiny_bert, method=method, epochs=1, max_train_samples=32, eval_steps=1)
    engine = prepare(cfg, teacher_paths=[tiny_bert]).engine
    saved = []

    def report(metrics, save_checkpoint):
        if not saved:
            save_checkpoint(str(tmp_path / "ckpt"))
            saved.append(metrics["step"])

    engine.fit(report=report)
    state = torch.load(str(tmp_path / "ckpt" / CHECKPOINT_FILE), weights_only=True)
    again = prepare(cfg, teacher_paths=[tiny_bert]).engine
    again.load_state_dict(state)
    assert again.step == saved[0] and len(again.result.history) == 1
