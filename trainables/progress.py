"""Progress as periodic labelled lines, for training that runs where a terminal bar cannot be
drawn: a Ray task whose output the driver's console shows line by line (the sweep's teacher
stage). :class:`LineProgress` stands in for the engine's tqdm bar (``update``, ``set_postfix``,
``write``, ``close``)::

    teacher: step 40/120 (33%), 12s elapsed, eta 24s, loss 0.6123
    teacher eval: step 60 epoch 1.00: {'eval_accuracy': 0.81, ...}
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _seconds(value: float) -> str:
    value = int(round(value))
    return f"{value // 60}m{value % 60:02d}s" if value >= 60 else f"{value}s"


class LineProgress:
    """A line ``<label>: step n/total (p%), elapsed, eta, loss`` at most every ``every`` seconds
    (and when the last step is done); evaluation lines labelled ``<label> eval``."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", *, label: str = "teacher",
                 every: float = 10.0, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.n, self.label, self.every = total, initial, label, every
        self.stream, self.clock = stream, clock
        self.started = self.last = clock()
        self._initial = initial
        self.postfix: dict[str, str] = {}
        self._shown_at = None  # the step of the last line

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def line(self) -> str:
        elapsed = self.clock() - self.started
        done = self.n - self._initial
        text = f"{self.label}: step {self.n}/{self.total}"
        if self.total:
            text += f" ({100 * self.n // self.total}%)"
        text += f", {_seconds(elapsed)} elapsed"
        if done and self.total:
            text += f", eta {_seconds(elapsed / done * max(0, self.total - self.n))}"
        text += "".join(f", {k} {v}" for k, v in self.postfix.items())
        return text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every or self.n >= self.total:
            self.last = now
            self._shown_at = self.n
            self._print(self.line())

    def set_postfix(self, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def write(self, text: str) -> None:
        self._print(f"{self.label} eval: {text}")

    def close(self) -> None:
        if self._shown_at != self.n:
            self._shown_at = self.n
            self._print(self.line())


def line_progress(label: str, every: float = 10.0) -> Callable[..., LineProgress]:
    """A progress factory for the engine (``Engine(progress=...)``): labelled lines."""
    def make(total: int, initial: int = 0, desc: str = "") -> LineProgress:
        return LineProgress(total, initial, desc, label=label, every=every)
    return make
