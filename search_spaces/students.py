"""The student as part of a search: a method's space function with a ``student`` choice and the
truncated student's ``student_layers`` joined to it (a multi-objective sweep trades score against
the student's size and latency, :mod:`tuner.objectives`).

``StudentChoice(fn, students, layers)`` first calls the method's space function ``fn``, then

* with ``students`` (``--students A,B,C``): ``s("student", [A, B, C])``, a categorical over model
  names/paths; the entry :data:`TRUNCATED` stands for the default student (the teacher's first
  ``student_layers`` layers) and becomes ``student=None`` in the trial's config;
* when the trial's student is the truncated one and ``layers`` is a range: ``s("student_layers",
  layers)``. So ``student_layers`` is sampled only by the trials that use it (define-by-run), and
  a named student's trial does not carry a meaningless layer count.
"""

from __future__ import annotations

from typing import Any

from search_spaces.ranges import Choice
from search_spaces.space import SearchSpace, SpaceFn, Suggest

#: the ``--students`` entry of the default truncated student
TRUNCATED = "truncated"


class StudentChoice:
    """A space function: ``fn``'s hyperparameters, then the student (see the module docstring).
    Picklable, as Ray saves the searcher."""

    def __init__(self, fn: SpaceFn, students: list[str] | None, layers: Any = None):
        self.fn, self.students, self.layers = fn, list(students or []), layers

    def __call__(self, s: Suggest) -> dict[str, Any]:
        out = dict(self.fn(s) or {})
        truncated = True
        if self.students:
            student = s("student", Choice(*self.students))
            truncated = student == TRUNCATED
            out["student"] = None if truncated else student
        if truncated and self.layers is not None:
            s("student_layers", self.layers)
        return out

    def __repr__(self) -> str:
        return f"StudentChoice({self.fn!r}, students={self.students!r}, layers={self.layers!r})"


def with_students(space: SearchSpace, students: list[str] | None, layers: Any = None) -> SearchSpace:
    """``space`` searching the student too: a ``student`` choice over ``students`` and the
    truncated student's ``student_layers`` over ``layers`` (None: not searched). ``space`` itself
    when there is nothing to add."""
    if not students and layers is None:
        return space
    ranges = {k: v for k, v in space.ranges.items() if k != "student_layers"}  # searched by StudentChoice
    return SearchSpace(space.method, StudentChoice(space.fn, students, layers), space.method_cls,
                       ranges=ranges, fixed=space.fixed, defaults=space.defaults)
