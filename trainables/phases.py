"""The labelled parts of a training step, and where a step's time goes.

Methods, the meta-gradient and the updaters mark the parts of a step with :func:`phase`. The parts
of one step do not nest (a part inside another is refused: its time would count twice), so their
times add up to the step's. :func:`profile_phases` times the parts of some steps with the wall
clock (on CUDA it synchronises the device at every boundary, so a part's time is the device's
work, not the launches); ``python -m trainables.bench --phases`` prints it for every entry, which
shows what a method's step is made of (e.g. MetaDistil's meta backward through the quiz pass, the
student's backward graph and the teacher) next to KD's. Outside :func:`profile_phases` a part is a
``torch.profiler.record_function`` range named ``distill/<part>``, so it also labels the traces of
torch's own profiler (a few microseconds when no profiler runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PREFIX = "distill/"


class _Clock:
    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.seconds: dict[str, float] = {}  # part -> seconds, in the order the parts first ran
        self.current: str | None = None


_clock: _Clock | None = None  # set while profile_phases runs


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Label the enclosed code as the part ``name`` of the step."""
    clock = _clock
    if clock is None:
        import torch

        with torch.profiler.record_function(PREFIX + name):
            yield
        return
    if clock.current is not None:
        raise RuntimeError(f"part {name!r} of the step runs inside part {clock.current!r}: parts must not nest")
    clock.sync()
    clock.current, start = name, time.perf_counter()
    try:
        yield
    finally:
        clock.sync()
        clock.seconds[name] = clock.seconds.get(name, 0.0) + time.perf_counter() - start
        clock.current = None


def profile_phases(run: Callable[[], None], steps: int, sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Run ``run`` (``steps`` training steps) timing each labelled part: ms per step of every part,
    then ``other`` (the step outside every part) and ``step`` (the whole step). ``sync`` waits for
    the device (e.g. ``torch.cuda.synchronize``); it is called at every part's start and end."""
    global _clock
    sync = sync or (lambda: None)
    _clock = clock = _Clock(sync)
    try:
        sync()
        start = time.perf_counter()
        run()
        sync()
        total = 1000 * (time.perf_counter() - start) / steps
    finally:
        _clock = None
    parts = {name: 1000 * s / steps for name, s in clock.seconds.items()}
    return {**parts, "other": total - sum(parts.values()), "step": total}


def table(entries: dict[str, dict[str, float]]) -> str:
    """A markdown table per entry: part, ms per step, share of the step."""
    blocks = []
    for label, parts in entries.items():
        step = parts["step"]
        lines = [f"**{label}** ({step:.1f} ms/step while its parts were timed)", "",
                 "| part of the step | ms/step | share |", "|---|---:|---:|"]
        for name, ms in parts.items():
            if name != "step":
                lines.append(f"| {name} | {ms:.1f} | {100 * ms / step:.0f}% |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
