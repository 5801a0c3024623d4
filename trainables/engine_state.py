"""The engine's checkpoint file (``engine_state.pt``): writing and reading a state dict, and the
RNG states it holds, as tensors and plain containers so that loading one runs no pickled code."""

from __future__ import annotations

import contextlib
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


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read back (missing, truncated, not a torch file)."""

    def __init__(self, path: str, cause: BaseException | str):
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        self.path, self.reason = path, " ".join(str(reason).split())[:200]
        super().__init__(f"checkpoint file {path} is unreadable ({self.reason})")

    def __reduce__(self):  # picklable (Ray sends a trial's exception to the driver)
        return type(self), (self.path, self.reason)


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed over ``path``
    (``os.replace``, atomic): a process killed (or a disk filling up) mid-write leaves the
    previous file or none, never a truncated one. (No fsync: after a power cut the file may still
    be empty or short; :func:`read_checkpoint` detects that.)"""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def read_checkpoint(directory: str, map_location: str | torch.device = "cpu") -> dict:
    """The engine state saved in ``directory``, read with ``weights_only=True`` (tensors and plain
    containers only: loading runs no pickled code). A file that is missing, truncated or not an
    engine state raises :class:`CorruptCheckpointError` naming it."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise CorruptCheckpointError(path, "no such file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, I/O error: all mean "not usable"
        raise CorruptCheckpointError(path, err) from err
    missing = [k for k in ("step", "student", "student_opt", "result", "rng")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise CorruptCheckpointError(path, f"not an engine state: no {', '.join(missing)}")
    return state


def save_state(state: dict, directory: str) -> None:
    """Write an engine state into ``directory`` (made when missing), atomically."""
    os.makedirs(directory, exist_ok=True)
    atomic_save(state, os.path.join(directory, CHECKPOINT_FILE))


def load_state(directory: str, device: torch.device) -> dict:
    """Read the engine state in ``directory`` (:func:`read_checkpoint`)."""
    return read_checkpoint(directory, map_location=device)
