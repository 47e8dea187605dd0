"""Subtype classification metrics in numpy: confusion matrix, per-class P/R/F1, macro-F1, balanced accuracy, MCC.

Conventions follow scikit-learn with ``labels=range(num_classes)`` and ``zero_division=0``: a class
that is never predicted has precision 0, a class that never occurs has recall 0, and both count in
the macro average. Balanced accuracy averages the recall of the classes present in the reference.

A case without a prediction is given the label ``MISSING`` (-1): it counts as a miss of its true
class (lower recall and F1) and as a wrong answer in accuracy and MCC, never as a hit of another
class; scikit-learn gives the same numbers for a ``-1`` prediction with ``labels=range(num_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISSING = -1


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of predicted against true labels.

    ``confusion[i, j]``: true class i predicted as j; ``missing[i]``: true class i without a prediction.
    """

    confusion: np.ndarray
    missing: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    macro_f1: float
    balanced_accuracy: float
    mcc: float
    accuracy: float

    def as_dict(self) -> dict[str, object]:
        """Plain lists and floats for JSON."""
        return {
            "confusion_matrix": self.confusion.tolist(),
            "missing_predictions": self.missing.tolist(),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
            "f1": self.f1.tolist(),
            "macro_f1": self.macro_f1,
            "balanced_accuracy": self.balanced_accuracy,
            "mcc": self.mcc,
            "accuracy": self.accuracy,
            "support": (self.confusion.sum(axis=1) + self.missing).tolist(),
        }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes + 1)`` int64 counts; rows are true classes, columns predictions.

    The last column counts the cases predicted as ``MISSING``.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have one length, got {y_true.size} and {y_pred.size}")
    for name, y, low in (("y_true", y_true, 0), ("y_pred", y_pred, MISSING)):
        if y.size and (y.min() < low or y.max() >= num_classes):
            raise ValueError(
                f"{name} holds labels outside {low}..{num_classes - 1}: {sorted(set(y.tolist()))}"
            )
    cols = np.where(y_pred == MISSING, num_classes, y_pred)
    return np.bincount(y_true * (num_classes + 1) + cols, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1
    )


def matthews_corrcoef(confusion: np.ndarray) -> float:
    """Multiclass Matthews correlation coefficient (Gorodkin's R_K) of a square confusion matrix; 0 when undefined."""
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    c = confusion.astype(np.float64)
    t_sum, p_sum = c.sum(axis=1), c.sum(axis=0)
    n, correct = c.sum(), np.trace(c)
    cov_tp = correct * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 3
) -> ClassificationMetrics:
    """All metrics of integer labels ``(N,)``: ``y_true`` in ``0..num_classes-1``, ``y_pred`` also ``MISSING``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    full = confusion_matrix(y_true, y_pred, num_classes)
    if full.sum() == 0:
        raise ValueError("no cases to classify: y_true and y_pred are empty")
    cm, missing = full[:, :num_classes], full[:, num_classes]
    square = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)  # MISSING as one more class
    square[:num_classes] = full
    tp = np.diag(cm).astype(np.float64)
    support, predicted = full.sum(axis=1), cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)  # 2TP / (2TP + FP + FN)
    present = support > 0
    return ClassificationMetrics(
        confusion=cm,
        missing=missing,
        precision=precision,
        recall=recall,
        f1=f1,
        macro_f1=float(f1.mean()),
        balanced_accuracy=float(recall[present].mean()),
        mcc=matthews_corrcoef(square),
        accuracy=float(tp.sum() / full.sum()),
    )
