"""What party B keeps of its evaluation for the report's figures: aggregate curves, never a row's score.

:func:`curves_for` runs at evaluation (the services and the simulation) on the
scores and labels party B already holds, and keeps only aggregate points:
a thinned ROC, score bands, calibration bins and a score histogram, so the job
record never holds the score of any row. :mod:`vfl.report` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vfl.ml.metrics import roc_curve
from vfl.ml.multiclass import class_name

MAX_CURVE_POINTS = 400
HISTOGRAM_BINS = 20


def curves_for(model: str, labels: np.ndarray, predictions: np.ndarray, baseline: np.ndarray | None) -> dict[str, Any]:
    """What the report's figures need, as aggregates small enough to keep in a job record.

    Logistic: the ROC (thinned), the class counts, the point where KS is reached,
    positives per score band (deciles from 200 rows), calibration bins and a
    histogram of the scores of each class; ``baseline`` (party B alone, on the
    same rows) adds its ROC and positives per band of its own scores. Linear: up
    to :data:`MAX_CURVE_POINTS` sampled (actual, predicted) pairs.
    """
    labels = np.asarray(labels, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if model != "logistic":
        keep = np.random.default_rng(0).permutation(len(labels))[:MAX_CURVE_POINTS]
        return {"kind": "scatter", "actual": labels[keep].tolist(), "predicted": predictions[keep].tolist(),
                "rows": int(len(labels))}
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    fpr, tpr = roc_curve(labels, predictions)
    out: dict[str, Any] = {"kind": "roc", "fpr": _thin(fpr), "tpr": _thin(tpr), "positives": n_pos, "negatives": n_neg}
    if n_pos and n_neg:
        best = int(np.argmax(tpr - fpr))
        out["ks_point"] = {"depth": float((tpr[best] * n_pos + fpr[best] * n_neg) / len(labels)),
                           "tpr": float(tpr[best]), "fpr": float(fpr[best])}
    out["bands"] = {"rows": [], "positives": []}
    for group in _bands(predictions):
        out["bands"]["rows"].append(int(len(group)))
        out["bands"]["positives"].append(int(positive[group].sum()))
    out["calibration"] = _calibration_bins(labels, predictions)
    out["histogram"] = _histogram(positive, predictions)
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.float64)
        b_fpr, b_tpr = roc_curve(labels, baseline)
        out.update(baseline_fpr=_thin(b_fpr), baseline_tpr=_thin(b_tpr))
        out["bands"]["baseline_positives"] = [int(positive[g].sum()) for g in _bands(baseline)]
    return out


def one_vs_rest_curves(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[float]) -> dict[str, Any]:
    """A multi-class model's ROC per class, each class against the rest, on the (jointly normalised) probabilities.

    Aggregates only, as :func:`curves_for`: a thinned ROC and the class counts per class.
    """
    labels = np.asarray(labels, dtype=np.float64)
    out = []
    for k, value in enumerate(classes):
        positive = (labels == value).astype(np.float64)
        fpr, tpr = roc_curve(positive, np.asarray(probabilities, dtype=np.float64)[:, k])
        out.append({"class": class_name(value), "fpr": _thin(fpr), "tpr": _thin(tpr), "positives": int(positive.sum()),
                    "negatives": int(len(labels) - positive.sum())})
    return {"kind": "roc_per_class", "classes": out}


def _thin(values: np.ndarray) -> list[float]:
    if len(values) <= MAX_CURVE_POINTS:
        return [float(v) for v in values]
    index = np.unique(np.linspace(0, len(values) - 1, MAX_CURVE_POINTS).astype(int))
    return [float(v) for v in values[index]]


def _bands(scores: np.ndarray) -> list[np.ndarray]:
    """Rows split into equal score bands, highest scores first: deciles from 200 rows, fewer below."""
    n = len(scores)
    count = 10 if n >= 200 else 5 if n >= 25 else max(1, n // 5)
    return np.array_split(np.argsort(-scores, kind="mergesort"), count)


def _calibration_bins(labels: np.ndarray, predictions: np.ndarray) -> dict[str, list]:
    """Equal-count bins by predicted probability: mean prediction, observed rate of label 1, rows."""
    n = len(labels)
    count = max(1, min(10, n // 20, n))
    bins = np.array_split(np.argsort(predictions, kind="mergesort"), count)
    return {"predicted": [float(predictions[b].mean()) for b in bins if len(b)],
            "observed": [float((labels[b] == 1).mean()) for b in bins if len(b)],
            "rows": [int(len(b)) for b in bins if len(b)]}


def _histogram(positive: np.ndarray, predictions: np.ndarray) -> dict[str, list]:
    low, high = float(predictions.min()), float(predictions.max())
    if high - low < 1e-9:  # every row has the same score: one narrow bin around it
        low, high = low - 0.005, high + 0.005
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    return {"edges": edges.tolist(),
            "positives": np.histogram(predictions[positive], edges)[0].tolist(),
            "negatives": np.histogram(predictions[~positive], edges)[0].tolist()}
