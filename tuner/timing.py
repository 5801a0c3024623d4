"""Where a sweep's wall time went, for its summary (``time`` in ``summary.json``).

The driver times its stages with a :class:`Stopwatch`: ``ray_start`` (starting or joining Ray),
``teacher_stage`` (fine-tuning or finding the teachers), ``trials`` (Ray Tune running the trials,
from the Tuner's start to its return) and ``seed_reruns`` (the re-runs of ``--seeds``, teacher
stage included); ``other`` is the rest of the wall time (checking the spec, the tracking store,
exporting the best student, the summary).

Training: each trial reports ``step_seconds``, the wall seconds its optimisation steps took
(device work included; evaluation, checkpoints, reports, start-up, model loading and tokenising
excluded), and Ray reports ``time_total_s``, the trial's own wall time. ``training_fraction`` =
Σ step_seconds / Σ time_total_s over the trials: the share of the trials' time that trained.
``slot_fraction`` = Σ step_seconds / (trials' wall time × trials at once): the share of the
sweep's trial slots that trained (also charged for slots waiting for a trial to start).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from trainables.trainable import is_number

STAGES = ("ray_start", "teacher_stage", "trials", "seed_reruns")


class Stopwatch:
    """Wall seconds of named driver stages (a stage timed twice adds up)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def mark(self, name: str, since: float) -> None:
        """Record a stage that started at ``time.perf_counter()`` value ``since`` and ends now."""
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - since

    def elapsed(self) -> float:
        return time.time() - self.started


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def breakdown(watch: Stopwatch, trials: list[dict[str, Any]], at_once: int) -> dict[str, Any]:
    """The summary's ``time``: ``wall_seconds``, ``<stage>_seconds`` for :data:`STAGES`,
    ``other_seconds``, ``trial_seconds`` (Σ trials' wall), ``training_seconds`` (Σ their step
    seconds), ``training_fraction`` and ``slot_fraction`` (None when undefined)."""
    wall = watch.elapsed()
    out: dict[str, Any] = {"wall_seconds": wall}
    for name in STAGES:
        out[f"{name}_seconds"] = watch.seconds.get(name, 0.0)
    out["other_seconds"] = max(0.0, wall - sum(out[f"{n}_seconds"] for n in STAGES))
    trial_seconds = sum(t.get("_trial_seconds") or 0.0 for t in trials)
    training = sum(t.get("_training_seconds") or 0.0 for t in trials)
    out["trial_seconds"] = trial_seconds
    out["training_seconds"] = training
    out["training_fraction"] = training / trial_seconds if trial_seconds > 0 else None
    slots = out["trials_seconds"] * max(1, at_once)
    out["slot_fraction"] = training / slots if slots > 0 else None
    return out


def trial_times(result: dict[str, Any]) -> dict[str, float | None]:
    """A trial's wall seconds and training seconds from its last result (hidden summary keys)."""
    return {"_trial_seconds": _number(result.get("time_total_s")),
            "_training_seconds": _number(result.get("step_seconds"))}


def format_breakdown(t: dict[str, Any]) -> str:
    """One console line: where the wall time went and how much of the trials' time trained."""
    parts = [f"Ray start {t['ray_start_seconds']:.0f}s", f"teacher stage {t['teacher_stage_seconds']:.0f}s",
             f"trials {t['trials_seconds']:.0f}s"]
    if t["seed_reruns_seconds"]:
        parts.append(f"seed re-runs {t['seed_reruns_seconds']:.0f}s")
    parts.append(f"tracking and other {t['other_seconds']:.0f}s")
    line = f"time: {t['wall_seconds']:.0f}s wall = " + ", ".join(parts)
    if t["training_fraction"] is not None:
        line += (f"; training {100 * t['training_fraction']:.0f}% of the trials' time "
                 f"({t['training_seconds']:.0f}s of steps in {t['trial_seconds']:.0f}s)")
    return line
