"""The sweep's teacher stage: every teacher its trials distil from, fine-tuned once before the
trials start (they wait for it), into the teacher cache where every trial finds it.

* A teacher already in the cache (or given with ``--teachers`` / ``--teacher-checkpoint``) is
  resolved on the driver: no Ray task, no worker to start.
* Otherwise one Ray task per teacher setting fine-tunes it, with the cores it was given: on a
  private local instance every CPU of the machine, on a cluster the CPUs the sweep's trials would
  use at once (``--cpus-per-trial`` × ``--max-concurrent``, at most a node's), and torch's threads
  set to match; one GPU when the trials use GPUs.
* Its progress reaches the driver's console as lines labelled ``teacher`` (steps, elapsed, eta,
  loss) and ``teacher eval`` (its dev metrics at each epoch end).
"""

from __future__ import annotations

import time
from typing import Any

from trainables.config import DistillConfig

from tuner import cluster

#: seconds between the teacher's progress lines
PROGRESS_EVERY = 10.0


def stage_resources(spec, resources: dict[str, float]) -> tuple[float, float]:
    """(CPUs, GPUs) of a teacher task. The trials wait for it, so it takes the cores they would:
    the whole node of a private local instance, else ``cpus_per_trial * max_concurrent`` capped by
    the largest node (never less than a trial's)."""
    node_cpus = resources.get("max_node_CPU", 1.0)
    if spec.address in (None, "local"):
        cpus = max(spec.cpus_per_trial, node_cpus)
    else:
        cpus = max(spec.cpus_per_trial, min(node_cpus, spec.cpus_per_trial * spec.max_concurrent))
    gpus = min(1.0, resources.get("max_node_GPU", 0.0)) if spec.gpus_per_trial > 0 else 0.0
    return cpus, gpus


def run_stage(config: dict[str, Any], threads: int, progress: bool = True) -> list[str]:
    """Runs as a Ray task: fine-tune (or find cached) the teachers of ``config`` with ``threads``
    torch threads, printing labelled progress lines."""
    import torch

    from trainables.progress import line_progress
    from trainables.teacher import resolve_teachers
    from trainables.trainable import quiet_worker

    quiet_worker()
    torch.set_num_threads(max(1, threads))
    return resolve_teachers(DistillConfig.from_dict(config),
                            progress=line_progress("teacher", PROGRESS_EVERY) if progress else False)


def fine_tune_teachers(configs: list[dict[str, Any]], spec, resources: dict[str, float]) -> list[list[str]]:
    """The teacher stage of every config (distinct settings fine-tuned once)."""
    from trainables.methods import get_method
    from trainables.teacher import resolve_teachers, teachers_ready

    if not any(get_method(m).uses_teacher for m in spec.methods or [spec.method]):  # methods: multi-method
        return [[] for _ in configs]
    started = time.time()
    if all(teachers_ready(DistillConfig.from_dict(c)) for c in configs):
        paths = [resolve_teachers(DistillConfig.from_dict(c)) for c in configs]
        if spec.verbose:
            print(f"teacher stage: {len(configs)} teacher setting(s), already fine-tuned", flush=True)
    else:
        cpus, gpus = stage_resources(spec, resources)
        if spec.verbose:
            print(f"teacher stage: {len(configs)} teacher setting(s), fine-tuned once ({cpus:g} CPUs"
                  f"{f', {gpus:g} GPU' if gpus else ''} each) and cached under {configs[0].get('cache_dir')} ...",
                  flush=True)
        paths = cluster.run_remote(run_stage, [(c, int(cpus), bool(spec.verbose)) for c in configs],
                                   num_cpus=cpus, num_gpus=gpus)
    if spec.verbose:
        for teacher in (p for group in paths for p in group):
            print(f"teacher ready ({time.time() - started:.0f}s): {teacher} {teacher_metrics(teacher)}", flush=True)
    return paths


def teacher_metrics(path: str) -> str:
    from trainables.teacher_cache import read_info

    metrics = read_info(path).get("dev_metrics", {})
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
