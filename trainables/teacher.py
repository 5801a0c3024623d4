"""The teacher fine-tuning stage and its cache.

A teacher is fine-tuned on the task once and saved (``save_pretrained`` + tokenizer) under
``<cache>/<task>-<hash>/`` where the hash covers everything that changes the result: task,
teacher id, teacher seed, the data seed (never the student's training seed: seed re-runs share
one teacher) and the fine-tuning settings. The teacher trains on the training rows left after
the quiz split, so the meta methods' quiz set is data the teacher never saw. A sweep calls :func:`resolve_teachers` on the
driver before its trials start; every trial then finds the cached copy. A file lock makes
concurrent callers wait for one fine-tuning instead of running several.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

from trainables.config import DistillConfig
from trainables.errors import UserError

INFO_FILE = "teacher_info.json"


def cache_root(cfg: DistillConfig) -> str:
    root = cfg.cache_dir or os.environ.get("TUNER_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "distill-tune")
    return os.path.abspath(os.path.join(root, "teachers"))


def teacher_settings(cfg: DistillConfig, seed: int) -> dict:
    """Everything the fine-tuned teacher depends on (its cache key)."""
    return {
        "task": cfg.task if not os.path.isdir(cfg.task) else os.path.abspath(cfg.task),
        "text_columns": cfg.text_columns, "label_column": cfg.label_column,
        "teacher": cfg.teacher, "seed": seed, "epochs": cfg.teacher_epochs,
        "lr": cfg.teacher_finetune_lr, "batch_size": cfg.teacher_batch_size,
        "max_train_samples": cfg.max_train_samples, "max_seq_length": cfg.max_seq_length,
        "quiz_fraction": cfg.quiz_fraction, "data_seed": cfg.data_seed,
        # only when given: the cache keys of teachers fine-tuned before the option existed stay valid
        **({"task_type": cfg.task_type} if cfg.task_type else {}),
    }


def teacher_cache_path(cfg: DistillConfig, seed: int) -> str:
    settings = teacher_settings(cfg, seed)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    name = os.path.basename(os.path.normpath(cfg.task))
    return os.path.join(cache_root(cfg), f"{name}-{digest}")


def is_fine_tuned(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INFO_FILE))


def finetune_teacher(cfg: DistillConfig, seed: int, *, progress: bool = False,
                     trainer: Callable[[DistillConfig, str], dict] | None = None) -> str:
    """Fine-tune ``cfg.teacher`` on the task (seed ``seed``) unless cached; return its path.
    A cached teacher is read without a lock, so a read-only (or shared) cache works."""
    from filelock import FileLock

    path = teacher_cache_path(cfg, seed)
    if is_fine_tuned(path):
        return path
    lock = FileLock(path + ".lock")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock.acquire()
    except OSError as err:
        raise UserError(f"the teacher cache {os.path.dirname(path)} has no fine-tuned teacher for these "
                        f"settings and is not writable ({err.strerror or err}); point --cache-dir (or "
                        f"TUNER_CACHE_DIR) at a writable folder") from None
    try:
        if not is_fine_tuned(path):  # another process may have fine-tuned it while we waited
            _fine_tune(cfg, seed, path, progress, trainer)
    finally:
        lock.release()
    return path


def _fine_tune(cfg: DistillConfig, seed: int, path: str, progress: bool,
               trainer: Callable[[DistillConfig, str], dict] | None) -> None:
    stage = cfg.replace(
        method="finetune", student=cfg.teacher, teacher_checkpoint=None, teachers=None,
        epochs=cfg.teacher_epochs, student_lr=cfg.teacher_finetune_lr, seed=seed,
        batch_size=cfg.teacher_batch_size, warmup_epochs=0, noise_prob=0.0, eval_steps=0,
        output_dir=None, eval_teacher=False, select="best-dev",
        # the teacher never sees a quiz row: the meta methods' quiz set stays unseen data
        quiz_policy="all-methods")
    if trainer is None:
        from trainables.experiment import train_and_save

        trainer = lambda c, out: train_and_save(c, out, progress=progress)  # noqa: E731
    metrics = trainer(stage, path)
    info = {"settings": teacher_settings(cfg, seed),
            "dev_metrics": {k: v for k, v in metrics.items() if not k.startswith("test_")},
            "test_metrics": {k: v for k, v in metrics.items() if k.startswith("test_")}}
    with open(os.path.join(path, INFO_FILE), "w") as fh:
        json.dump(info, fh, indent=2)


def resolve_teachers(cfg: DistillConfig, *, progress: bool = False) -> list[str]:
    """The fine-tuned teachers a run distils from, fine-tuning (once) where needed.

    ``teachers`` (comma-separated, already fine-tuned) > ``teacher_checkpoint`` > ``num_teachers``
    teachers fine-tuned from ``teacher`` with seeds ``teacher_seed + i``.
    """
    if cfg.teachers:
        paths = [p.strip() for p in cfg.teachers.split(",") if p.strip()]
        if not paths:
            raise UserError(f"--teachers {cfg.teachers!r} names no teacher")
        return paths
    if cfg.teacher_checkpoint:
        if not os.path.exists(cfg.teacher_checkpoint):
            raise UserError(f"--teacher-checkpoint {cfg.teacher_checkpoint!r} does not exist")
        return [cfg.teacher_checkpoint]
    return [finetune_teacher(cfg, cfg.teacher_seed + i, progress=progress) for i in range(cfg.num_teachers)]


def teacher_stage(config: dict, threads: int) -> list[str]:
    """A sweep's teacher stage (run as a Ray task): :func:`resolve_teachers` of ``config`` with
    ``threads`` torch threads. Where every teacher is already cached it returns their paths
    without importing torch."""
    cfg = DistillConfig.from_dict(config)
    if not (cfg.teachers or cfg.teacher_checkpoint) and all(
            is_fine_tuned(teacher_cache_path(cfg, cfg.teacher_seed + i)) for i in range(cfg.num_teachers)):
        return resolve_teachers(cfg)
    import torch

    from trainables.trainable import quiet_worker

    quiet_worker()
    torch.set_num_threads(max(1, threads))
    return resolve_teachers(cfg)
