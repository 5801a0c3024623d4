"""Population-based training (``--scheduler pbt``): an engine state restored under a perturbed
config trains with the new hyperparameters (no Ray), and one tiny real PBT sweep read by several
assertions (an exploit happened, MLflow has the schedule, the exploited trial continued from the
donor's state, the summary and the schedule figure)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from trainables.config import DistillConfig
from trainables.experiment import prepare
from trainables.losses import kd_loss
from trainables.methods.base import model_inputs
from trainables.optim import _linear_schedule


def _cfg(data_dir, teacher, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=48, max_eval_samples=16,
                max_seq_length=32, batch_size=16, epochs=2, student_layers=1, seed=3, device="cpu",
                lr_warmup_ratio=0.5, weight_decay=0.0, max_grad_norm=0.0)
    base.update(kw)
    return DistillConfig(**base)


# ---- the engine restored under a new config (what an exploit does) ------------------------------

def test_a_restored_state_trains_with_the_new_lr_alpha_and_temperature(data_dir, tiny_bert, tmp_path):
    old = _cfg(data_dir, tiny_bert, method="kd", student_lr=1e-3, alpha=0.2, temperature=2.0)
    first = prepare(old, teacher_paths=[tiny_bert]).engine
    saved = []

    def report(metrics, save_checkpoint):
        if not saved:
            save_checkpoint(str(tmp_path / "ckpt"))
            saved.append(metrics["step"])

    first.fit(report=report)
    step0 = saved[0]
    state = torch.load(str(tmp_path / "ckpt" / "engine_state.pt"), weights_only=True)

    new = dataclass_replace(old, student_lr=3e-4, alpha=0.9, temperature=3.0)
    engine = prepare(new, teacher_paths=[tiny_bert]).engine
    engine.load_checkpoint(str(tmp_path / "ckpt"))
    opt = engine.method.student_opt
    factor = _linear_schedule(int(new.lr_warmup_ratio * engine.total_steps), engine.total_steps)(step0)
    # the schedule keeps its position and takes the new base lr; weights and moments are the checkpoint's
    assert engine.step == step0 and opt.scheduler.last_epoch == step0
    assert opt.scheduler.base_lrs == [3e-4] * len(opt.optimizer.param_groups)
    assert all(math.isclose(g["lr"], 3e-4 * factor) for g in opt.optimizer.param_groups)
    saved_lr = state["student_opt"]["optimizer"]["param_groups"][0]["lr"]
    assert math.isclose(saved_lr, 1e-3 * factor)  # the checkpoint's own lr, which must not be used
    for name, p in engine.method.student.state_dict().items():
        assert torch.equal(p, state["student"][name]), name

    # the next step: loss with the new alpha and T, AdamW step at the new lr from the restored moments
    batch = engine._prepare(next(iter(engine.loaders.train)))
    teacher_logits = engine.method.mean_logits(engine.method.teacher_outputs(batch))
    clone = copy.deepcopy(engine.method.student)
    torch.manual_seed(11)
    logits = clone(**model_inputs(batch, clone)).logits
    expected = kd_loss(logits, teacher_logits, batch["labels"], alpha=0.9, temperature=3.0)
    with_old = kd_loss(logits, teacher_logits, batch["labels"], alpha=0.2, temperature=2.0)
    expected.backward()
    before = {n: p.detach().clone() for n, p in engine.method.student.named_parameters()}
    moments = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.optimizer.state.items()}
    torch.manual_seed(11)
    logs = engine.train_step(batch, None)
    assert torch.allclose(logs["loss"], expected.detach(), atol=1e-6)
    assert not torch.allclose(expected, with_old, atol=1e-3)
    lr = 3e-4 * factor
    grads = {n: p.grad for n, p in clone.named_parameters()}
    (beta1, beta2), eps = opt.optimizer.param_groups[0]["betas"], opt.optimizer.param_groups[0]["eps"]
    checked = 0
    for name, p in engine.method.student.named_parameters():
        g, s = grads[name], moments[p]
        t = float(s["step"]) + 1
        m = beta1 * s["exp_avg"] + (1 - beta1) * g
        v = beta2 * s["exp_avg_sq"] + (1 - beta2) * g * g
        want = before[name] - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        assert torch.allclose(p.detach(), want, atol=1e-8, rtol=1e-4), name
        checked += 1
    assert checked and float(opt.scheduler.last_epoch) == step0 + 1


def test_a_learning_teacher_takes_the_new_teacher_lr(data_dir, tiny_bert, tmp_path):
    old = _cfg(data_dir, tiny_bert, method="metadistil", teacher_lr=1e-5)
    prepare(old, teacher_paths=[tiny_bert]).engine.save_checkpoint(str(tmp_path / "ckpt"))
    engine = prepare(dataclass_replace(old, teacher_lr=4e-5), teacher_paths=[tiny_bert]).engine
    engine.load_checkpoint(str(tmp_path / "ckpt"))
    assert engine.method.teacher_opt.scheduler.base_lrs[0] == 4e-5
    assert engine.method.student_opt.scheduler.base_lrs[0] == old.student_lr


def dataclass_replace(cfg: DistillConfig, **changes) -> DistillConfig:
    return DistillConfig(**{**cfg.to_dict(), **changes})
