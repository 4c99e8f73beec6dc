"""One-vs-rest multi-class logistic regression: K binary models, one per class, and what B makes of them.

FATE's HeteroLR trains a multi-class label the same way: one binary model per
class ("this class" against "every other class"), each over the unchanged
encrypted protocol. Here the K trainings share one alignment (one PSI), and each
is an ordinary binary job: party B relabels its aligned rows ``y == class_k``
for the k-th training, nothing else changes, and no feature party learns which
class a training is about beyond its position in the list.

Prediction: class k's binary model gives P_k(y = k | x) (its own decision
layer: Platt scaling by default). The K values do not sum to one, so they are
normalised: ``p_k = P_k / Σ_j P_j`` (scikit-learn's ``OneVsRestClassifier``
does the same). The predicted class is the one with the largest ``p_k``.

Metrics (:func:`multiclass_metrics`): accuracy of the predicted class, log-loss
of the normalised probabilities, macro AUC (the mean over classes of the AUC of
``p_k`` for "class k against the rest", as ``roc_auc_score(...,
multi_class="ovr", average="macro")``), and per class AUC, precision, recall
and support.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vfl.ml.metrics import LOG_LOSS_EPS, auc

#: What every multi-class model and result names its strategy.
STRATEGY = "ovr"
#: How the K per-class probabilities become one distribution, as the results and answers say it.
PROBABILITIES = "normalised one-vs-rest: p_k = P_k / sum_j P_j, P_k from class k's binary model"


def class_values(labels: np.ndarray) -> list[float]:
    """The distinct classes of a label column, in increasing order."""
    return [float(v) for v in np.unique(np.asarray(labels, dtype=np.float64))]


def is_multiclass(labels: np.ndarray | None, model: str) -> bool:
    """A logistic model on a label with three or more classes trains one-vs-rest."""
    return model == "logistic" and labels is not None and len(np.unique(labels)) >= 3


def one_vs_rest(labels: np.ndarray, value: float) -> np.ndarray:
    """The binary label of class ``value``'s training: 1 where the row is of that class, else 0."""
    return (np.asarray(labels, dtype=np.float64) == value).astype(np.float64)


def class_name(value: float) -> str:
    """A class as JSON keys and tables show it: ``3`` rather than ``3.0``."""
    return f"{value:g}"


def normalise(per_class: np.ndarray) -> np.ndarray:
    """n × K per-class probabilities → rows that sum to one (a row of zeros becomes uniform)."""
    p = np.clip(np.asarray(per_class, dtype=np.float64), 0.0, None)
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / max(1, p.shape[1]))
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def predicted_classes(probabilities: np.ndarray, classes: Sequence[float]) -> np.ndarray:
    """The class with the largest probability, per row."""
    return np.asarray(classes, dtype=np.float64)[np.argmax(probabilities, axis=1)]


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[float]) -> dict[str, Any]:
    """Accuracy, log-loss, macro AUC (one-vs-rest) and per-class AUC, precision, recall and support."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    predicted = predicted_classes(p, classes)
    per_class: dict[str, dict[str, Any]] = {}
    aucs: list[float] = []
    for k, value in enumerate(classes):
        actual, chosen = y == value, predicted == value
        tp = int(np.sum(actual & chosen))
        class_auc = auc(actual.astype(np.float64), p[:, k])
        if class_auc is not None:
            aucs.append(class_auc)
        per_class[class_name(value)] = {
            "auc": class_auc,
            "precision": tp / int(np.sum(chosen)) if np.any(chosen) else 0.0,
            "recall": tp / int(np.sum(actual)) if np.any(actual) else 0.0,
            "support": int(np.sum(actual)),
        }
    index = np.searchsorted(np.asarray(classes, dtype=np.float64), y)
    known = (index < len(classes)) & (np.asarray(classes, dtype=np.float64)[np.minimum(index, len(classes) - 1)] == y)
    chosen_p = np.where(known, p[np.arange(len(y)), np.minimum(index, len(classes) - 1)], 0.0)
    return {
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "accuracy": float(np.mean(predicted == y)) if len(y) else None,
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "log_loss": float(-np.mean(np.log(np.clip(chosen_p, LOG_LOSS_EPS, 1.0)))) if len(y) else None,
        "per_class": per_class,
        "rows": int(len(y)),
    }
