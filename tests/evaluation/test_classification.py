"""Classification metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from fastpanc.evaluation.classification import (
    MISSING,
    classification_metrics,
    confusion_matrix,
    matthews_corrcoef,
)

LABELS = [0, 1, 2]


def _check_against_sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    m = classification_metrics(y_true, y_pred, 3)
    if (y_pred >= 0).all():
        np.testing.assert_array_equal(m.confusion, skm.confusion_matrix(y_true, y_pred, labels=LABELS))
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    np.testing.assert_allclose(m.precision, p)
    np.testing.assert_allclose(m.recall, r)
    np.testing.assert_allclose(m.f1, f)
    assert m.macro_f1 == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)
    )
    assert m.mcc == pytest.approx(skm.matthews_corrcoef(y_true, y_pred), abs=1e-12)
    assert m.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    if set(y_pred.tolist()) <= set(y_true.tolist()):  # sklearn warns and differs when pred has other classes
        assert m.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))


def test_known_example():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    m = classification_metrics(y_true, y_pred)
    assert m.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert m.recall.tolist() == pytest.approx([0.5, 1.0, 2 / 3])
    _check_against_sklearn(y_true, y_pred)


def test_absent_class_and_constant_prediction():
    _check_against_sklearn(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]))  # class 2 never seen
    y = np.array([0, 1, 2, 2])
    m = classification_metrics(y, np.zeros(4, int))  # constant prediction: MCC undefined -> 0
    assert m.mcc == 0.0 == skm.matthews_corrcoef(y, np.zeros(4, int))
    _check_against_sklearn(y, np.zeros(4, int))


def test_missing_predictions_count_as_misses():
    y_true = np.array([0, 0, 1, 2, 2])
    y_pred = np.array([0, MISSING, 1, 2, MISSING])
    m = classification_metrics(y_true, y_pred)
    assert m.missing.tolist() == [1, 0, 1]
    assert m.recall.tolist() == pytest.approx([0.5, 1.0, 0.5]) and m.precision.tolist() == [1.0, 1.0, 1.0]
    assert m.accuracy == pytest.approx(3 / 5)
    _check_against_sklearn(y_true, y_pred)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-1, 2)), min_size=1, max_size=40))
def test_random_against_sklearn(pairs):
    y_true = np.array([a for a, _ in pairs])
    y_pred = np.array([b for _, b in pairs])
    _check_against_sklearn(y_true, y_pred)


def test_errors():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([-1, 0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="outside -1..2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="one length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="no cases"):
        classification_metrics(np.array([], int), np.array([], int))
    assert matthews_corrcoef(np.eye(3, dtype=int)) == 1.0
