"""Cached outputs of frozen teachers: equal to the live teacher's on the same rows, computed once
and reused, used only where the teacher's outputs cannot change."""

from __future__ import annotations

import pytest
import torch
from meta_helpers import one_thread  # noqa: F401 (autouse fixture)

from trainables import teacher_outputs
from trainables.config import DistillConfig
from trainables.experiment import prepare
from trainables.methods.base import model_inputs


def _cfg(data_dir, teacher, tmp_path, **kw) -> DistillConfig:
    base = dict(task="sst2", data_dir=data_dir, teacher=teacher, max_train_samples=64, max_eval_samples=16,
                max_seq_length=32, batch_size=8, epochs=1, student_layers=1, device="cpu",
                cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return DistillConfig(**base)


@pytest.mark.parametrize("method", ["kd", "pkd"])
def test_cached_soft_targets_equal_the_live_teachers(data_dir, tiny_bert4, tmp_path, method):
    prep = prepare(_cfg(data_dir, tiny_bert4, tmp_path, method=method, student_layers=2),
                   teacher_paths=[tiny_bert4, tiny_bert4])
    m = prep.engine.method
    assert m.cached_teacher_outputs is not None
    calls = []
    for t in m.teachers:
        t.register_forward_hook(lambda *a: calls.append(1))
    for batch in list(prep.engine.loaders.train)[:3]:  # shuffled batches, padded to their own length
        cached = m.teacher_outputs(batch, hidden=True)
        assert not calls  # read, not run
        with torch.no_grad():
            live = [t.eval()(**model_inputs(batch, t), output_hidden_states=True) for t in m.teachers]
        calls.clear()
        torch.testing.assert_close(m.mean_logits(cached), m.mean_logits(live), rtol=1e-5, atol=1e-5)
        for c, lv in zip(cached, live):
            for k in m.cached_layers():
                torch.testing.assert_close(c.hidden_states[k][:, 0], lv.hidden_states[k][:, 0], rtol=1e-5, atol=1e-5)
    logs = prep.engine.train_step(next(iter(prep.engine.loaders.train)), None)
    assert not calls and torch.isfinite(logs["loss"])  # a KD step runs no teacher


def test_outputs_are_computed_once_and_reused(data_dir, tiny_bert, tmp_path, monkeypatch):
    cfg = _cfg(data_dir, tiny_bert, tmp_path, method="kd")
    first = prepare(cfg, teacher_paths=[tiny_bert]).engine.method.cached_teacher_outputs

    def fail(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(teacher_outputs, "compute", fail)
    again = prepare(cfg.replace(seed=5, student_lr=1e-3), teacher_paths=[tiny_bert]).engine.method
    torch.testing.assert_close(again.cached_teacher_outputs.logits, first.logits, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="computed again"):  # other rows: other outputs
        prepare(cfg.replace(data_seed=3), teacher_paths=[tiny_bert])


@pytest.mark.parametrize("method,extra", [("metadistil", {}), ("reptile-distil", {}), ("kd", {"noise_prob": 0.1}),
                                          ("kd", {"teacher_dropout": True}), ("kd", {"teacher_output_cache": False})])
def test_no_cache_where_teacher_outputs_can_change(data_dir, tiny_bert, tmp_path, method, extra):
    prep = prepare(_cfg(data_dir, tiny_bert, tmp_path, method=method, **extra), teacher_paths=[tiny_bert])
    assert prep.engine.method.cached_teacher_outputs is None
    assert "row" not in next(iter(prep.engine.loaders.train))
