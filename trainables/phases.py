"""The labelled parts of a training step, and where a step's time goes.

Methods, the meta-gradient and the updaters mark the parts of a step with :func:`phase`: a
``torch.profiler.record_function`` range named ``distill/<part>`` (a few microseconds when no
profiler runs). The parts of one step do not nest, so their times add up to the step's.
:func:`profile_phases` runs steps under torch's profiler and returns each part's time per step;
``python -m trainables.bench --phases`` prints it for every entry, which shows what a method's step
is made of (e.g. MetaDistil's meta backward through the quiz pass, the student's backward graph
and the teacher) next to KD's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PREFIX = "distill/"


def phase(name: str):
    """A context manager labelling ``name`` as one part of the step."""
    import torch

    return torch.profiler.record_function(PREFIX + name)


def profile_phases(run: Callable[[], None], steps: int) -> dict[str, float]:
    """Run ``run`` (``steps`` training steps) under torch's CPU profiler: ms per step of each
    labelled part, in the order the parts first ran, and ``step`` (the whole step, profiler
    overhead included) and ``other`` (the step outside every labelled part). Host time: on CUDA
    it is the time to launch the work, not to do it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        total = 1000 * (time.perf_counter() - start) / steps
    parts: dict[str, float] = {}
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        if event.name.startswith(PREFIX):
            name = event.name[len(PREFIX):]
            outer = _labelled_ancestor(event)
            if outer is not None:  # its time would count twice
                raise RuntimeError(f"part {name!r} of the step runs inside part {outer!r}: parts must not nest")
            parts[name] = parts.get(name, 0.0) + event.cpu_time_total / 1000 / steps
    return {**parts, "other": total - sum(parts.values()), "step": total}


def _labelled_ancestor(event) -> str | None:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(PREFIX):
            return parent.name[len(PREFIX):]
        parent = parent.cpu_parent
    return None


def table(entries: dict[str, dict[str, float]]) -> str:
    """A markdown table per entry: part, ms per step, share of the step."""
    blocks = []
    for label, parts in entries.items():
        step = parts["step"]
        lines = [f"**{label}** ({step:.1f} ms/step under the profiler)", "",
                 "| part of the step | ms/step | share |", "|---|---:|---:|"]
        for name, ms in parts.items():
            if name != "step":
                lines.append(f"| {name} | {ms:.1f} | {100 * ms / step:.0f}% |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
