"""Classification metrics shared by evaluation, compression and the gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[int(t), int(p)] += 1
    return matrix


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 (zero where undefined).

    Returns:
        {"accuracy", "macro_f1", "precision_<label>", "recall_<label>", "f1_<label>",
         "confusion": nested list}. Scalar values are floats, ready for MLflow.
    """
    k = len(labels)
    cm = confusion(y_true, y_pred, k)
    total = cm.sum()
    out: dict[str, Any] = {"accuracy": float(np.trace(cm) / total) if total else 0.0}
    f1s = []
    for i, name in enumerate(labels):
        tp = cm[i, i]
        pred = cm[:, i].sum()
        true = cm[i, :].sum()
        precision = float(tp / pred) if pred else 0.0
        recall = float(tp / true) if true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"precision_{name}"] = precision
        out[f"recall_{name}"] = recall
        out[f"f1_{name}"] = f1
        f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    out["confusion"] = cm.tolist()
    return out


def majority_baseline(y_train: Sequence[int], y_test: Sequence[int]) -> float:
    """Accuracy on `y_test` of always predicting the most frequent training class."""
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    majority = values[np.argmax(counts)]
    return float(np.mean(np.asarray(y_test) == majority))
