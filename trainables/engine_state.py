"""The engine's checkpoint file (``engine_state.pt``): writing and reading a state dict, and the
RNG states it holds, as tensors and plain containers so that loading one runs no pickled code."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

CHECKPOINT_FILE = "engine_state.pt"


def rng_state() -> dict:
    """torch's, numpy's and Python's RNG states as tensors and plain containers (what
    ``torch.load(weights_only=True)`` reads)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": {"version": version, "internal": list(internal), "gauss": gauss}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_state(state: dict, directory: str) -> None:
    """Write an engine state into ``directory`` (made when missing)."""
    os.makedirs(directory, exist_ok=True)
    torch.save(state, os.path.join(directory, CHECKPOINT_FILE))


def load_state(directory: str, device: torch.device) -> dict:
    """Read the engine state in ``directory``; ``weights_only``: a checkpoint holds only tensors and
    plain containers, so loading one runs no pickled code."""
    return torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location=device, weights_only=True)
