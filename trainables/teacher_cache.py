"""Where a fine-tuned teacher is cached: ``<cache>/<task>-<hash>/``, the hash covering everything
that changes the fine-tuned teacher (see :mod:`trainables.teacher`, which fills the cache).
"""

from __future__ import annotations

import hashlib
import json
import os

from trainables.schema import Config

INFO_FILE = "teacher_info.json"


def read_info(path: str | None) -> dict:
    """The info file of the fine-tuned teacher at ``path`` (its settings, ``dev_metrics``,
    ``test_metrics``), or {} where there is none or it is unreadable."""
    try:
        with open(os.path.join(path or "", INFO_FILE)) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def cache_root(cfg: Config) -> str:
    root = cfg.cache_dir or os.environ.get("TUNER_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "distill-tune")
    return os.path.abspath(os.path.join(root, "teachers"))


def teacher_settings(cfg: Config, seed: int) -> dict:
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


def teacher_cache_path(cfg: Config, seed: int) -> str:
    settings = teacher_settings(cfg, seed)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    name = os.path.basename(os.path.normpath(cfg.task))
    return os.path.join(cache_root(cfg), f"{name}-{digest}")


def is_fine_tuned(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INFO_FILE))
