"""Classification metrics without extra dependencies: accuracy, macro-F1, confusion matrix, EER."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[t, p] += 1
    return m


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Mean F1 over the classes that occur in ``y_true`` or ``y_pred``."""
    m = confusion(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(float)
    support, predicted = m.sum(1), m.sum(0)
    present = (support + predicted) > 0
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def eer(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Equal error rate: where the false acceptance and false rejection rates meet (scores: higher = positive)."""
    s, y = np.asarray(scores, float), np.asarray(positives, bool)
    if y.all() or (~y).all():
        raise ValueError("EER needs both positive and negative examples")
    thresholds = np.unique(s)
    far = np.array([((s >= t) & ~y).sum() / (~y).sum() for t in thresholds])
    frr = np.array([((s < t) & y).sum() / y.sum() for t in thresholds])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def summary(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """The metrics `python -m app eval` prints."""
    return {
        "n": len(y_true),
        "accuracy": round(accuracy(y_true, y_pred), 4),
        "macro_f1": round(macro_f1(y_true, y_pred, len(labels)), 4),
        "confusion": confusion(y_true, y_pred, len(labels)).tolist(),
    }
