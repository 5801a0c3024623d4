import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from trainables.metrics import METRICS, compute_metrics
from trainables.tasks import TASKS

PREDS = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1, 1])
REFS = np.array([0, 1, 0, 0, 1, 0, 1, 0, 1, 1])
MULTI_PREDS = np.array([0, 2, 1, 1, 2, 0, 2, 1, 0, 2, 2])
MULTI_REFS = np.array([0, 2, 1, 0, 2, 1, 2, 1, 0, 0, 1])
X = np.array([0.1, 0.4, 0.35, 0.8, 2.0, 1.5, 3.3])
Y = np.array([0.0, 0.5, 0.2, 1.0, 1.8, 1.9, 2.5])


@pytest.mark.parametrize("name, preds, refs, expected", [
    ("accuracy", PREDS, REFS, accuracy_score(REFS, PREDS)),
    ("f1", PREDS, REFS, f1_score(REFS, PREDS)),
    ("mcc", PREDS, REFS, matthews_corrcoef(REFS, PREDS)),
    ("micro_f1", MULTI_PREDS, MULTI_REFS, f1_score(MULTI_REFS, MULTI_PREDS, average="micro")),
    ("macro_f1", MULTI_PREDS, MULTI_REFS, f1_score(MULTI_REFS, MULTI_PREDS, average="macro")),
    ("pearson", X, Y, stats.pearsonr(X, Y)[0]),
    ("spearman", X, Y, stats.spearmanr(X, Y)[0]),
])
def test_metric_matches_reference_implementation(name, preds, refs, expected):
    value = METRICS[name](preds, refs)
    assert isinstance(value, float)
    assert value == pytest.approx(expected)


def test_reference_values_are_not_trivial():
    # the fixed vectors must tell the metrics apart, or the tests above could not fail
    assert METRICS["accuracy"](PREDS, REFS) == pytest.approx(0.7)
    assert METRICS["f1"](PREDS, REFS) == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    assert METRICS["macro_f1"](MULTI_PREDS, MULTI_REFS) != pytest.approx(METRICS["micro_f1"](MULTI_PREDS, MULTI_REFS))


def test_f1_is_of_the_positive_class():
    # all predicted 1: precision 4/6 and recall 1 for class 1
    assert METRICS["f1"](np.ones(6, int), np.array([1, 1, 1, 1, 0, 0])) == pytest.approx(0.8)
    assert METRICS["f1"](np.zeros(4, int), np.array([1, 0, 1, 0])) == 0.0


@pytest.mark.parametrize("name", ["pearson", "spearman"])
def test_constant_predictions_give_zero_correlation_not_nan(name):
    assert METRICS[name](np.full(5, 2.5), Y[:5]) == 0.0
    assert METRICS[name](X[:5], np.ones(5)) == 0.0
    assert METRICS[name](X[:1], Y[:1]) == 0.0


def test_every_task_uses_registered_metrics():
    for task in TASKS.values():
        assert set(task.metrics) <= set(METRICS), task.name
        assert task.primary_metric in task.metrics, task.name


def test_compute_metrics_takes_the_argmax_of_logits():
    task = TASKS["mrpc"]
    logits = np.stack([1 - PREDS, PREDS], axis=1) * 2.0 - 0.5  # argmax == PREDS
    results = compute_metrics(task, logits, REFS)
    assert results == {
        "f1": pytest.approx(f1_score(REFS, PREDS)),
        "accuracy": pytest.approx(0.7),
        "score": pytest.approx(f1_score(REFS, PREDS)),
    }
    assert compute_metrics(task, PREDS, REFS) == results  # class ids work too


def test_compute_metrics_multiclass_and_primary_score():
    task = TASKS["chemprot"]
    logits = np.eye(task.num_labels)[MULTI_PREDS]
    results = compute_metrics(task, logits, MULTI_REFS)
    assert set(results) == {"micro_f1", "macro_f1", "score"}
    assert results["score"] == results["micro_f1"] == pytest.approx(f1_score(MULTI_REFS, MULTI_PREDS, average="micro"))


def test_compute_metrics_regression_squeezes_outputs():
    task = TASKS["stsb"]
    results = compute_metrics(task, X.reshape(-1, 1), Y)
    assert results["pearson"] == pytest.approx(stats.pearsonr(X, Y)[0])
    assert results["spearman"] == pytest.approx(stats.spearmanr(X, Y)[0])
    assert results["score"] == results["pearson"]
    assert compute_metrics(task, np.full((7, 1), 3.0), Y)["score"] == 0.0


def test_compute_metrics_cola_primary_is_mcc():
    results = compute_metrics(TASKS["cola"], PREDS, REFS)
    assert results["score"] == pytest.approx(matthews_corrcoef(REFS, PREDS))
    assert results["accuracy"] == pytest.approx(0.7)


def test_compute_metrics_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        compute_metrics(TASKS["sst2"], PREDS[:3], REFS)
