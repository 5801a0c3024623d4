"""glibc malloc settings for training processes.

By default glibc serves large blocks (the embedding-sized buffers of every step) with ``mmap`` and
gives freed memory back to the kernel, so each step maps, faults in and unmaps the same hundreds
of MB again: 7–10% of a MetaDistil step on CPU went to page faults. Keeping freed memory in the
process (``M_MMAP_MAX=0``: no mmap for large blocks; a large ``M_TRIM_THRESHOLD``: no trimming)
removes that for about 2% more peak RSS. :func:`tune` applies it once per process where training
runs (the engine calls it); ``TUNER_MALLOC_TUNING=0`` opts out; it does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # bytes of free memory kept before trimming

_applied: bool | None = None


def tune() -> bool:
    """Apply the settings (once per process); True when they are in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("TUNER_MALLOC_TUNING", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
