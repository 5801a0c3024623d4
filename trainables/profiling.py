"""Measured (not assumed) inference cost of teacher and student, for the speed-up column."""

from __future__ import annotations

import time

import torch

from trainables.methods.base import Batch, model_inputs


@torch.no_grad()
def forward_seconds(model: torch.nn.Module, batches: list[Batch], device: torch.device,
                    repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of one inference pass over ``batches``."""
    was_training = model.training
    model.eval()
    inputs = [{k: v.to(device) for k, v in model_inputs(b, model).items()} for b in batches]
    model(**inputs[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x in inputs:
            model(**x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    model.train(was_training)
    return best


def speedup(student: torch.nn.Module, teacher: torch.nn.Module, batches: list[Batch],
            device: torch.device) -> dict[str, float]:
    s = forward_seconds(student, batches, device)
    t = forward_seconds(teacher, batches, device)
    return {"student_infer_seconds": s, "teacher_infer_seconds": t, "speedup": t / s if s > 0 else float("nan")}
