"""What a sweep prints while its trials run.

Ray Tune's default console engine (``ray.tune.experimental.output``, Ray >= 2.7) has no hook for its
lines: it prints an experiment configuration box and a TensorBoard hint at every verbosity, the
final trial table even at verbosity 0, and the "Current best trial" line with floats unrounded
(``eval_score=0.5918508041056858``). A sweep therefore runs Tune's classic reporting path
(``RAY_AIR_NEW_OUTPUT=0``, Ray's own switch), where ``RunConfig(progress_reporter=...)`` takes a
:class:`ray.tune.ProgressReporter` (public API) and verbosity 0 prints nothing from Tune:

* :class:`SweepReporter` (verbosity >= 1) prints, when a trial starts or ends and at least every
  30 s, the trial counts by status, the resources in use, the current best trial with its
  parameters and a one-row-per-trial table, every float to 4 significant digits;
* :func:`sweep_console` (every sweep) drops Ray Tune's "Resume experiment with: Tuner.restore(...)"
  hint after Ctrl-C (the sweep prints its own ``--resume`` command, :func:`tuner.record.resume_command`),
  and with ``quiet`` turns off MLflow's "View run ... / View experiment ..." lines (printed when a
  run ends on a tracking server; ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from ray import tune

#: significant digits of every float on the console
DIGITS = 4
#: at most this long between two progress reports while trials run (seconds)
HEARTBEAT_S = 30.0
#: the result columns of the trial table (shown where a trial has them)
COLUMNS = ("evaluation", "eval_score", "best_eval_score", "step", "train_loss")
#: at most this many rows in the trial table: the running trials, then the best others
MAX_ROWS = 20


def fmt(value: Any) -> str:
    """A value as the console shows it: floats to :data:`DIGITS` significant digits."""
    if isinstance(value, float):
        return f"{value:.{DIGITS}g}"
    return str(value)


def params_str(config: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={fmt(v)}" for k, v in config.items()) + "}"


def best_trial_line(trials: Sequence, metric: str, mode: str = "max") -> str | None:
    """``Current best trial: <id> with <metric>=<value> and params={...}``, or None before any
    trial reported ``metric``."""
    scored = [t for t in trials if isinstance((t.last_result or {}).get(metric), (int, float))]
    if not scored:
        return None
    sign = 1 if mode == "max" else -1
    best = max(scored, key=lambda t: sign * t.last_result[metric])
    return (f"Current best trial: {best.trial_id} with {metric}={fmt(best.last_result[metric])} "
            f"and params={params_str(best.config)}")


def shown_trials(trials: Sequence, metric: str = "eval_score", mode: str = "max",
                 max_rows: int = MAX_ROWS) -> list:
    """The trials of the table: all of them, or past ``max_rows`` the running ones and then the
    best of the others by ``metric``."""
    if len(trials) <= max_rows:
        return list(trials)
    sign = 1 if mode == "max" else -1

    def rank(t) -> tuple:
        value = (t.last_result or {}).get(metric)
        return (t.status != "RUNNING", not isinstance(value, (int, float)),
                -sign * value if isinstance(value, (int, float)) else 0)

    return sorted(trials, key=rank)[:max_rows]


def trial_table(trials: Sequence) -> list[str]:
    """One row per trial: id, status, the :data:`COLUMNS` it reported, its parameters."""
    params = list(dict.fromkeys(k for t in trials for k in t.config))
    columns = [c for c in COLUMNS if any(c in (t.last_result or {}) for t in trials)]
    rows = [["trial", "status", *columns, *params]]
    for t in trials:
        result = t.last_result or {}
        rows.append([t.trial_id, t.status, *(fmt(result[c]) if c in result else "" for c in columns),
                     *(fmt(t.config[p]) if p in t.config else "" for p in params)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


class SweepReporter(tune.ProgressReporter):
    """The sweep's progress on the console (see the module doc)."""

    def __init__(self, metric: str, mode: str = "max", heartbeat_s: float = HEARTBEAT_S):
        self.metric, self.mode, self.heartbeat_s = metric, mode, heartbeat_s
        self._last_time = float("-inf")
        self._last_state: tuple = ()
        self._last_results: tuple = ()
        self._start = time.time()

    @staticmethod
    def _state(trials: Sequence, results: bool = False) -> tuple:
        return tuple(sorted((t.trial_id, t.status, (t.last_result or {}).get("training_iteration") if results else 0)
                            for t in trials))

    def should_report(self, trials: Sequence, done: bool = False) -> bool:
        """When a trial starts or ends, every :attr:`heartbeat_s`, and at the end unless the last
        report showed the same."""
        if done:
            return self._state(trials, results=True) != self._last_results
        return self._state(trials) != self._last_state or time.time() - self._last_time >= self.heartbeat_s

    def report(self, trials: Sequence, done: bool, *sys_info: str) -> None:
        self._last_time, self._last_state = time.time(), self._state(trials)
        self._last_results = self._state(trials, results=True)
        counts = Counter(t.status for t in trials)
        elapsed = int(time.time() - self._start)
        lines = ["Trial status: " + " | ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                 + f" ({elapsed // 60}min {elapsed % 60}s)"]
        lines += [s for s in sys_info[-1:] if s]  # "Logical resource usage: ..."
        best = best_trial_line(trials, self.metric, self.mode)
        if best:
            lines.append(best)
        shown = shown_trials(trials, self.metric, self.mode)
        lines += trial_table(shown)
        if len(shown) < len(trials):
            lines.append(f"... and {len(trials) - len(shown)} more trials (all of them: MLflow, the summary)")
        print("\n".join(lines) + "\n", flush=True)


class _DropTuneRestoreHint(logging.Filter):
    """Ray Tune's "Resume experiment with: Tuner.restore(...)" after Ctrl-C: not this project's
    way to resume (the sweep prints its ``--resume`` command instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


@contextlib.contextmanager
def sweep_console(quiet: bool) -> Iterator[None]:
    """Around ``Tuner.fit``: Tune's classic reporting path, no ``Tuner.restore`` hint, and with
    ``quiet`` no MLflow "View run" lines (the environment is restored afterwards)."""
    settings = {"RAY_AIR_NEW_OUTPUT": "0"}
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_level = mlflow_logger.level
    if quiet:  # nor MLflow's artifact progress bars and INFO lines (its warnings stay)
        settings.update(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        mlflow_logger.setLevel(max(logging.WARNING, mlflow_level))
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    hint = _DropTuneRestoreHint()
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.addFilter(hint)
    try:
        yield
    finally:
        tune_logger.removeFilter(hint)
        mlflow_logger.setLevel(mlflow_level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.stdout.flush()
