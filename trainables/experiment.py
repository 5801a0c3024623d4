"""One run from a :class:`DistillConfig`: its teachers resolved (fine-tuned once where needed), the
run assembled (:mod:`trainables.assembly`), trained, saved and summarised.

``python -m trainables.run`` and the Ray Tune trainable both call :func:`run`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from trainables.assembly import (PreparedRun, assemble, check_one_tokenizer, holds_out_quiz,  # noqa: F401
                                 load_task, save_model, train_and_save)
from trainables.config import DistillConfig
from trainables.engine import Reporter, TrainResult
from trainables.profiling import LATENCY_KEYS, measured_latency, measured_speedup
from trainables.teacher_cache import cache_root
from trainables.teacher import resolve_teachers


def prepare(cfg: DistillConfig, *, teacher_paths: list[str] | None = None,
            progress=False) -> PreparedRun:
    """Everything a run needs, built and checked before the first step; the teachers are
    fine-tuned (once, then cached) unless ``teacher_paths`` names them."""
    return assemble(cfg, teacher_paths, progress=progress, resolve_teachers=resolve_teachers)


def summarise(prep: PreparedRun, result: TrainResult, seconds: float) -> dict:
    """The run's final record: best dev metrics, sizes, measured speed-up, curves."""
    engine = prep.engine
    out = {"method": prep.cfg.method, "task": prep.task.name, **result.selected, "select": prep.cfg.select,
           "best_step": result.best.get("step"), "train_seconds": seconds, **engine.cost(),
           "student_params": prep.student_info.params, "student_layers": prep.student_info.layers,
           "final_train_loss": result.losses[-1] if result.losses else None,
           "history": result.history}
    if prep.teacher_info is not None:
        out.update(teacher_params=prep.teacher_info.params, teacher_layers=prep.teacher_info.layers,
                   param_ratio=prep.teacher_info.params / prep.student_info.params)
        out.update(speedup_of(prep))
    out.update(latency_of(prep))
    return out


def speedup_of(prep: PreparedRun) -> dict[str, float]:
    """The student's measured inference speed-up over the (first) teacher on two dev batches, from
    the table next to the fine-tuned teachers (measured once per teacher, student, device and
    batches: :func:`trainables.profiling.measured_speedup`); empty without a teacher."""
    if prep.teacher_info is None:
        return {}
    engine = prep.engine
    batches = [b for _, b in zip(range(2), engine.loaders.dev)]
    shapes = ",".join("x".join(map(str, b["input_ids"].shape)) for b in batches)
    key = "|".join([prep.teacher_paths[0], prep.student_info.source, engine.device_name(), shapes])
    return measured_speedup(engine.method.student, engine.method.teachers[0], batches, engine.device,
                            key=key, folder=cache_root(prep.cfg))


def latency_of(prep: PreparedRun) -> dict[str, float]:
    """The student's measured latency (ms) at batch 1 and 32 on the run's device
    (:data:`trainables.profiling.LATENCY_KEYS`), on real dev rows of typical length: the dev set is
    ordered by length, so batch 1 is its middle row (the median length) and batch 32 holds 32 rows
    evenly spaced over it (the shortest to the longest, padded together as a batch of mixed
    requests would be); measured once per student, device and inputs, in the table next to the
    fine-tuned teachers (:func:`trainables.profiling.measured_latency`)."""
    engine = prep.engine
    dev = engine.loaders.dev
    n = len(dev.dataset)
    picks = {1: [n // 2]}
    picks.update({size: [round(i * (n - 1) / (size - 1)) for i in range(size)] for size in LATENCY_KEYS if size > 1})
    batches = {size: dev.collate_fn([dev.dataset[i] for i in picks[size]]) for size in LATENCY_KEYS}
    shapes = ",".join("x".join(map(str, b["input_ids"].shape)) for b in batches.values())
    key = "|".join([prep.student_info.source, str(prep.student_info.layers), engine.device_name(), shapes])
    return measured_latency(engine.method.student, batches, engine.device, key=key, folder=cache_root(prep.cfg))


def run(cfg: DistillConfig, *, report: Reporter | None = None, resume_from: str | None = None,
        progress: bool = False, teacher_paths: list[str] | None = None,
        on_prepared: Callable[[PreparedRun], None] | None = None) -> dict:
    """Train one configuration; save the best student (and a meta-learned teacher) under
    ``cfg.output_dir`` when set; return the summary.

    ``on_prepared(prep)`` is called once the run is assembled, before training: a caller that
    needs more than the summary (model ids and sizes up front, the engine's per-step logs
    ``prep.engine.result.logs`` or its best student afterwards) keeps ``prep``."""
    prep = prepare(cfg, teacher_paths=teacher_paths, progress=progress)
    if on_prepared is not None:
        on_prepared(prep)
    start = time.perf_counter()
    result = prep.engine.fit(report=report, resume_from=resume_from)
    summary = summarise(prep, result, time.perf_counter() - start)
    summary.update(prep.engine.test_metrics())
    if cfg.output_dir:
        summary["student_path"] = save_model(prep.engine.selected_student_model(), prep.tokenizer,
                                             os.path.join(cfg.output_dir, "student"))
        if prep.engine.method.teacher_learns:  # the meta-learned teacher(s), for static teaching
            summary["teacher_paths"] = [
                save_model(t, prep.tokenizer, os.path.join(cfg.output_dir, "teacher" if i == 0 else f"teacher-{i + 1}"))
                for i, t in enumerate(prep.engine.method.teachers)]
            summary["teacher_path"] = summary["teacher_paths"][0]
        with open(os.path.join(cfg.output_dir, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, default=str)
    return summary
