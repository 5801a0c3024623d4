"""Evaluation metrics, by name.

Every metric of :data:`METRICS` takes ``(predictions, references)`` as 1-D arrays and returns a
float. :func:`compute_metrics` turns model outputs into predictions and evaluates a task's metrics.

* ``f1`` is binary F1 of the positive class (id 1); ``micro_f1`` / ``macro_f1`` average over the
  classes present in predictions or references (scikit-learn's default). F1 is 0 where undefined.
* ``pearson`` / ``spearman`` are 0.0, not NaN, when either side is constant (or has fewer than two
  values): a constant prediction carries no correlation, and NaN would break model selection.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from trainables.tasks import TaskSpec

Metric = Callable[[np.ndarray, np.ndarray], float]


def _correlation(fn) -> Metric:
    def metric(predictions: np.ndarray, references: np.ndarray) -> float:
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        if len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(predictions, references)[0])
        return 0.0 if math.isnan(value) else value
    return metric


def _f1(average: str) -> Metric:
    def metric(predictions: np.ndarray, references: np.ndarray) -> float:
        return float(f1_score(references, predictions, average=average, zero_division=0))
    return metric


METRICS: dict[str, Metric] = {
    "accuracy": lambda p, r: float(accuracy_score(r, p)),
    "f1": lambda p, r: float(f1_score(r, p, pos_label=1, average="binary", zero_division=0)),
    "mcc": lambda p, r: float(matthews_corrcoef(r, p)),
    "micro_f1": _f1("micro"),
    "macro_f1": _f1("macro"),
    "pearson": _correlation(stats.pearsonr),
    "spearman": _correlation(stats.spearmanr),
}


def predictions_of(task: TaskSpec, logits_or_preds: np.ndarray) -> np.ndarray:
    """Class ids (argmax of logits, or ids as given) or regression values, as a 1-D array."""
    outputs = np.asarray(logits_or_preds)
    if task.is_regression:
        return outputs.reshape(-1).astype(np.float64)
    return outputs.argmax(axis=-1) if outputs.ndim == 2 else outputs.reshape(-1).astype(np.int64)


def compute_metrics(task: TaskSpec, logits_or_preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Each of ``task.metrics`` by name, plus ``score`` = the primary metric."""
    predictions = predictions_of(task, logits_or_preds)
    references = np.asarray(labels).reshape(-1)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} labels")
    results = {name: METRICS[name](predictions, references) for name in task.metrics}
    results["score"] = results[task.primary_metric]
    return results
