"""The measured speed-up is measured once per (teacher, student, device, batches) and reused."""

from __future__ import annotations

import json
import types

import torch

from trainables import profiling


class Scaled(torch.nn.Module):
    """A model whose forward costs ``work`` matrix products (so a teacher is slower than a student)."""

    def __init__(self, work: int):
        super().__init__()
        self.work = work
        self.config = types.SimpleNamespace()  # what the project reads of a Hugging Face model
        self.weight = torch.nn.Parameter(torch.randn(64, 64))

    def forward(self, input_ids, **_):
        x = input_ids.float()
        for _ in range(self.work):
            x = torch.tanh(x @ self.weight)
        return x


BATCHES = [{"input_ids": torch.randn(8, 64)}]


def test_the_speedup_is_measured_once_per_key_and_reused(tmp_path, monkeypatch):
    calls = []
    real = profiling.speedup

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(profiling, "speedup", counted)
    student, teacher = Scaled(1), Scaled(8)
    first = profiling.measured_speedup(student, teacher, BATCHES, torch.device("cpu"), key="t|s|cpu", folder=str(tmp_path))
    again = profiling.measured_speedup(Scaled(8), Scaled(1), BATCHES, torch.device("cpu"), key="t|s|cpu",
                                       folder=str(tmp_path))
    assert again == first and len(calls) == 1  # the table's value, not a new (here inverted) measurement
    assert first["speedup"] > 1 and set(first) == {"speedup", "student_infer_seconds", "teacher_infer_seconds"}
    other = profiling.measured_speedup(student, teacher, BATCHES, torch.device("cpu"), key="t|s2|cpu",
                                       folder=str(tmp_path))
    assert len(calls) == 2 and other["speedup"] > 1
    table = json.loads((tmp_path / profiling.SPEEDUP_FILE).read_text())
    assert set(table) == {"t|s|cpu", "t|s2|cpu"}


def test_an_unwritable_folder_still_gives_a_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = profiling.measured_speedup(Scaled(1), Scaled(4), BATCHES, torch.device("cpu"), key="k",
                                     folder=str(blocker / "cache"))
    assert out["speedup"] > 0


def test_latency_is_measured_per_batch_size_once_per_key(tmp_path):
    batches = {1: {"input_ids": torch.randn(1, 64)}, 32: {"input_ids": torch.randn(32, 64)}}
    first = profiling.measured_latency(Scaled(2), batches, torch.device("cpu"), key="s|cpu", folder=str(tmp_path))
    assert set(first) == {"latency_ms", "latency_ms_b32"} and min(first.values()) > 0
    again = profiling.measured_latency(Scaled(50), batches, torch.device("cpu"), key="s|cpu", folder=str(tmp_path))
    assert again == first   # the table's value for that student and device, not a new measurement
    assert json.loads((tmp_path / profiling.LATENCY_FILE).read_text()) == {"s|cpu": first}
