"""Model quality metrics in plain numpy (no scikit-learn at run time).

Classification: AUC (ties count half, as in the Mann–Whitney statistic), KS
(max |TPR − FPR| over all thresholds), and accuracy, precision, recall and F1
at a probability threshold (0.5 unless the model picked another). Regression: MSE, RMSE, MAE and R².
The tests check each one against scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    y = np.asarray(y_true, dtype=np.float64)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ks(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Kolmogorov–Smirnov statistic: the largest gap between TPR and FPR."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int((y == 1).sum()), int((y != 1).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tpr = np.cumsum(y_sorted == 1) / n_pos
    fpr = np.cumsum(y_sorted != 1) / n_neg
    # Only thresholds between distinct scores count.
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    return float(np.max(np.abs(tpr - fpr)[last_of_run]))


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) points from (0, 0) to (1, 1), one per distinct threshold."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted == 1)[last_of_run]
    fp = np.cumsum(y_sorted != 1)[last_of_run]
    return np.r_[0.0, fp / max(1, fp[-1])], np.r_[0.0, tp / max(1, tp[-1])]


#: Probabilities are clipped this far from 0 and 1 before the log, so one confident miss is finite (as scikit-learn).
LOG_LOSS_EPS = 1e-15


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels: how well the probabilities, not just the ranking, fit."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    predicted = p >= threshold
    actual = y == 1
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "auc": auc(y, p),
        "ks": ks(y, p),
        "accuracy": float(np.mean(predicted == actual)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "log_loss": log_loss(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "rows": int(len(y)),
    }


def regression_metrics(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float | None]:
    y = np.asarray(y_true, dtype=np.float64)
    f = np.asarray(predictions, dtype=np.float64)
    err = f - y
    mse = float(np.mean(err**2))
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / total if total > 0 else None,
        "rows": int(len(y)),
    }


def model_metrics(
    model: str, y_true: np.ndarray, predictions: np.ndarray, *, threshold: float = 0.5,
) -> dict[str, float | None]:
    """Classification metrics for ``logistic`` (labels at ``threshold``), regression metrics for ``linear``."""
    if model == "logistic":
        return classification_metrics(y_true, predictions, threshold)
    return regression_metrics(y_true, predictions)
