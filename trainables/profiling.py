"""Measured (not assumed) costs: inference time of teacher and student (the speed-up column), the
student's latency at batch 1 and 32, and a process's peak memory.

The speed-up is a property of the teacher, the student and the device, not of a trial: it is
measured once per (teacher, student, device, evaluation batches) with several repeats (the median)
and kept in a small JSON table next to the fine-tuned teachers, so every trial with the same models
reports the same value, early-stopped ones included. The latency (``latency_ms``: one forward of
one row, ``latency_ms_b32``: of 32 rows; milliseconds, the fastest of :data:`LATENCY_REPEATS`
timed passes, the one least disturbed by other processes on the node) is kept the same way, per (student, device, inputs), in :data:`LATENCY_FILE`.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import torch

from trainables.methods.base import Batch, model_inputs


SPEEDUP_FILE = "speedups.json"
LATENCY_FILE = "latencies.json"
#: the batch sizes the latency is measured at, and the reported key of each
LATENCY_KEYS = {1: "latency_ms", 32: "latency_ms_b32"}
#: timed passes per batch size (after one warm-up); the fastest is reported
LATENCY_REPEATS = {1: 20, 32: 5}


@torch.no_grad()
def forward_seconds(model: torch.nn.Module, batches: list[Batch], device: torch.device,
                    repeats: int = 5, reduce=statistics.median) -> float:
    """``reduce`` (default the median) over ``repeats`` of the wall time of one inference pass over
    ``batches``."""
    was_training = model.training
    model.eval()
    inputs = [{k: v.to(device) for k, v in model_inputs(b, model).items()} for b in batches]
    model(**inputs[0])  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x in inputs:
            model(**x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    model.train(was_training)
    return reduce(times)


def speedup(student: torch.nn.Module, teacher: torch.nn.Module, batches: list[Batch],
            device: torch.device) -> dict[str, float]:
    s = forward_seconds(student, batches, device)
    t = forward_seconds(teacher, batches, device)
    return {"student_infer_seconds": s, "teacher_infer_seconds": t, "speedup": t / s if s > 0 else float("nan")}


def measured_speedup(student: torch.nn.Module, teacher: torch.nn.Module, batches: list[Batch],
                     device: torch.device, *, key: str, folder: str | None) -> dict[str, float]:
    """:func:`speedup` of ``key`` (teacher, student, device, batches) from the table in
    ``folder``, measured and added under a file lock when missing (so concurrent trials measure
    it once); measured afresh without a folder."""
    return measured_once(folder, SPEEDUP_FILE, key, lambda: speedup(student, teacher, batches, device))


def latency(student: torch.nn.Module, batches: dict[int, Batch], device: torch.device) -> dict[str, float]:
    """The student's inference latency in milliseconds at each batch size of ``batches``
    (``{1: one row, 32: 32 rows}``), reported under :data:`LATENCY_KEYS`."""
    return {LATENCY_KEYS[size]: 1000 * forward_seconds(student, [batch], device, repeats=LATENCY_REPEATS[size],
                                                      reduce=min)
            for size, batch in batches.items()}


def measured_latency(student: torch.nn.Module, batches: dict[int, Batch], device: torch.device, *,
                     key: str, folder: str | None) -> dict[str, float]:
    """:func:`latency` of ``key`` (student, device, inputs), measured once per key like the speed-up."""
    return measured_once(folder, LATENCY_FILE, key, lambda: latency(student, batches, device))


def measured_once(folder: str | None, filename: str, key: str, measure) -> dict[str, float]:
    """``measure()``'s value of ``key`` from the JSON table ``folder/filename``, measured and
    added under a file lock when missing (so concurrent trials measure it once); measured afresh
    without a folder."""
    if folder:
        from filelock import FileLock

        path = os.path.join(folder, filename)
        try:
            os.makedirs(folder, exist_ok=True)
            with FileLock(path + ".lock"):
                return dict(_recorded(path, key) or _record(path, key, measure()))
        except OSError:  # a read-only cache: the table as it is, else a measurement of our own
            recorded = _recorded(path, key)
            if recorded:
                return dict(recorded)
    return measure()


def _recorded(path: str, key: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh).get(key)
    except (OSError, ValueError):
        return None


def _record(path: str, key: str, value: dict) -> dict:
    try:
        with open(path) as fh:
            table = json.load(fh)
    except (OSError, ValueError):
        table = {}
    table[key] = value
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(table, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return value


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
