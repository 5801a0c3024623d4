"""Measured (not assumed) costs: inference time of teacher and student (the speed-up column) and a
process's peak memory."""

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


def peak_rss_mb() -> float:
    """This process's peak resident set size. Linux: ``VmHWM`` of /proc/self/status, which starts
    afresh at exec (``ru_maxrss`` carries the parent's peak over a spawn on Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
