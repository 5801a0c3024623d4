"""The fine-tuned teacher cache: read-only caches and clear errors (no training: the cache entry
is written by hand or by a stub trainer)."""

from __future__ import annotations

import json
import os

import pytest

from trainables.config import DistillConfig
from trainables.errors import UserError
from trainables.teacher import INFO_FILE, finetune_teacher, teacher_cache_path


def test_a_cached_teacher_loads_without_a_lock(tmp_path):
    cfg = DistillConfig(task="sst2", cache_dir=str(tmp_path / "cache"))
    path = teacher_cache_path(cfg, 42)
    os.makedirs(path)
    with open(os.path.join(path, INFO_FILE), "w") as fh:
        json.dump({"dev_metrics": {}}, fh)
    os.makedirs(path + ".lock")  # no lock file can be created there (as in a read-only cache)

    def must_not_train(stage, out):
        raise AssertionError("a cached teacher was fine-tuned again")

    assert finetune_teacher(cfg, 42, trainer=must_not_train) == path


def test_an_empty_read_only_cache_names_the_folder_and_the_options(tmp_path):
    cfg = DistillConfig(task="sst2", cache_dir="/sys/distill-cache")  # read-only, even for root
    with pytest.raises(UserError) as info:
        finetune_teacher(cfg, 42, trainer=lambda stage, out: {})
    message = str(info.value)
    assert message.startswith("the teacher cache /sys/distill-cache/teachers has no fine-tuned teacher")
    assert "--cache-dir" in message and "TUNER_CACHE_DIR" in message


def test_a_missing_teacher_names_what_was_tried_and_the_packaged_default(tmp_path):
    from trainables.models import load_tokenizer, packaged_minilm_path

    missing = str(tmp_path / "no-such-teacher")
    with pytest.raises(UserError) as info:
        load_tokenizer(missing)
    message = str(info.value)
    assert f"tried the local folder {missing} (does not exist) and the Hugging Face hub/cache" in message
    assert f"'all-MiniLM-L6-v2' is packaged at {packaged_minilm_path()}" in message
