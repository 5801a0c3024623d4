"""What ASHA compares trials at (``--budget``): equal training steps or equal training seconds.

* ``steps`` (default): ASHA's time attribute is ``evaluation`` (1, 2, ...). Evaluations come
  every ``eval_steps`` optimiser steps in every trial, so a rung compares trials after equal
  numbers of training steps; a meta step (MetaDistil's second-order teacher update) costs several
  KD steps' time, so a meta method reaches each rung later in wall time but is not penalised.
* ``time``: ASHA's time attribute is ``step_seconds``, the trial's *measured training seconds*
  (the wall seconds of its optimisation steps, device work included; evaluation, checkpoints,
  reports, start-up, model loading and tokenising excluded; it continues across a resume), which
  the trainable reports at every evaluation. A rung compares trials after equal training seconds:
  a method whose steps cost more has taken fewer of them. Ray's ``time_total_s`` is not used: it
  includes evaluation and start-up, which would charge a method for the dev set's size.
  ``--grace-period`` is then in training seconds (``grace_period`` seconds before a trial may be
  stopped; rungs at ``grace_period * reduction_factor^k`` seconds).

The budget matters only to ASHA (with ``--scheduler fifo`` or ``pbt`` asking for ``time`` is an
error). The summary's ``search.budget`` says which one a sweep used, and what
ASHA's time attribute was.
"""

from __future__ import annotations

from trainables.errors import choice_error

from trainables.trainable import EVALUATION

#: budget -> (ASHA's time attribute, its horizon: far beyond any run, so trials end by finishing)
BUDGETS = {"steps": (EVALUATION, 10_000), "time": ("step_seconds", 10_000_000)}
#: the budget's unit, for the summary and the help
UNITS = {"steps": "evaluations (equal training steps)", "time": "measured training seconds"}
DEFAULT = "steps"


def check(budget: str, scheduler: str) -> str:
    from trainables.errors import UserError

    if budget not in BUDGETS:
        raise choice_error("budget", budget, list(BUDGETS))
    if budget != DEFAULT and scheduler != "asha":
        raise UserError(f"--budget {budget} sets what ASHA compares trials at; --scheduler {scheduler} does not "
                        "compare trials by it (use --scheduler asha, or the default --budget steps)")
    return budget


def asha_axis(budget: str) -> tuple[str, int]:
    """ASHA's ``time_attr`` and ``max_t`` for ``budget``."""
    return BUDGETS[budget]


def describe(budget: str) -> dict[str, str]:
    """The summary's record of the budget: its name, ASHA's time attribute, its unit."""
    return {"budget": budget, "time_attr": BUDGETS[budget][0], "unit": UNITS[budget]}
