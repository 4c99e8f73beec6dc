"""Party B's decision layer: a calibration map for the scores and the decision threshold.

The Taylor-approximated training of logistic regression ranks rows well, but
its weights are shrunk towards the least-squares solution of the
approximation, so σ(u) is a poorly scaled probability. After training, party B
fits Platt scaling, p = σ(a·u + b), on the linear predictor u of rows it
already scores for evaluation (the validation rows, or the training rows when
there is no validation split) and applies it at prediction time. The map is
monotone, so ranking metrics (AUC, KS) do not change; accuracy, log-loss and
the Brier score do.

Both steps use only what B already holds after evaluation: its own labels and
the joint model's scores on its own rows. Nothing new moves between parties.

Then the decision threshold: a fixed probability, or one picked on the same
rows by maximising F1, maximising KS (TPR − FPR), or reaching a target
precision with the most recall. The model part stores both, and predictions
return the calibrated score, the label and the threshold used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vfl.ml.config import ThresholdRule, TrainingConfig
from vfl.errors import DataError

ThresholdPick = Literal["max_f1", "max_ks", "precision"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


@dataclass(frozen=True)
class Platt:
    """p = σ(a·u + b) on the linear predictor u. a > 0 keeps the ranking of the raw scores."""

    a: float
    b: float

    def apply(self, u: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * np.asarray(u, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Platt | None:
        if not data:
            return None
        if data.get("method") != "platt":
            raise DataError(f"unknown calibration method {data.get('method')!r} in the model; expected 'platt'")
        return cls(float(data["a"]), float(data["b"]))


def fit_platt(u: np.ndarray, y: np.ndarray, *, iterations: int = 100) -> Platt:
    """Platt scaling by Newton's method on the log-loss, with Platt's smoothed targets.

    The targets are (N₊ + 1)/(N₊ + 2) for positives and 1/(N₋ + 2) for negatives
    (Platt 1999), which keeps a and b finite when the rows are separable. A tiny
    ridge on the Hessian keeps each step defined.
    """
    u = np.asarray(u, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if u.shape != y.shape or u.ndim != 1:
        raise DataError(f"calibration needs one score per label, got {u.shape} scores and {y.shape} labels")
    positives = float(np.sum(y == 1))
    negatives = float(len(y) - positives)
    if positives == 0 or negatives == 0:
        raise DataError("calibration needs rows of both classes; use a larger validation split or calibration 'none'")
    target = np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    # Start from the identity map: σ(u) is what the model predicted without calibration.
    a, b = 1.0, 0.0
    design = np.column_stack([u, np.ones_like(u)])
    for _ in range(iterations):
        p = _sigmoid(a * u + b)
        gradient = design.T @ (p - target)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    if not (np.isfinite(a) and np.isfinite(b)):
        raise DataError("calibration did not converge (scores not finite); retrain, or set calibration 'none'")
    return Platt(float(a), float(b))


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold in force and how it was chosen."""

    value: float
    rule: str  # "fixed", "max_f1", "max_ks" or "precision"
    target: float | None = None
    reached: bool = True  # for a target precision: was it reached on the rows?

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule, "target": self.target, "reached": self.reached}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdChoice:
        return cls(float(data["value"]), str(data["rule"]), data.get("target"), bool(data.get("reached", True)))


def _cuts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut "p ≥ t": the thresholds, and the true and false positives at each."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    last_of_run = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = np.cumsum(y_sorted == 1)[last_of_run]
    fp = np.cumsum(y_sorted != 1)[last_of_run]
    values = p_sorted[last_of_run]
    # Each cut sits halfway to the next lower distinct score, so a new row with a score between
    # the two falls on the side the rows did not decide; the lowest cut keeps its own score.
    thresholds = np.r_[(values[:-1] + values[1:]) / 2, values[-1]]
    return thresholds, tp.astype(np.float64), fp.astype(np.float64)


def pick_threshold(y: np.ndarray, p: np.ndarray, rule: ThresholdPick, target: float | None = None) -> ThresholdChoice:
    """The threshold on probabilities ``p`` that the rule picks for labels ``y``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    positives = float(np.sum(y == 1))
    negatives = float(len(y) - positives)
    if positives == 0 or negatives == 0:
        raise DataError(f"picking a threshold by {rule} needs rows of both classes; fix the threshold instead")
    thresholds, tp, fp = _cuts(y, p)
    if rule == "max_f1":
        f1 = 2 * tp / (tp + fp + positives)
        return ThresholdChoice(float(thresholds[int(np.argmax(f1))]), rule)
    if rule == "max_ks":
        gap = tp / positives - fp / negatives
        return ThresholdChoice(float(thresholds[int(np.argmax(gap))]), rule)
    if rule == "precision":
        if target is None or not 0 < target < 1:
            raise DataError("a target precision between 0 and 1 (exclusive) is needed, e.g. 0.9")
        precision = tp / (tp + fp)
        meets = np.flatnonzero(precision >= target)
        if meets.size:  # the lowest such cut: the most recall at that precision
            return ThresholdChoice(float(thresholds[meets[-1]]), rule, target)
        return ThresholdChoice(float(thresholds[int(np.argmax(precision))]), rule, target, reached=False)
    raise DataError(f"unknown threshold rule {rule!r}; use max_f1, max_ks or precision")


def fit_decision(
    config: TrainingConfig, labels: np.ndarray, u: np.ndarray, splits: dict[str, np.ndarray],
) -> tuple[Platt | None, ThresholdChoice, str]:
    """The calibration map and threshold for a logistic model, fitted on one split of its rows.

    ``u`` is the linear predictor on all rows and ``splits`` the row numbers of
    "train" and maybe "validation": both are fitted on the validation rows, or
    on the training rows without a split (returned as the third item).
    """
    split = "validation" if "validation" in splits else "train"
    rows = splits[split]
    calibration = fit_platt(u[rows], labels[rows]) if config.calibrates else None
    rule = config.threshold
    if isinstance(rule, ThresholdRule):
        threshold = pick_threshold(labels[rows], probabilities(calibration, u[rows]), rule.pick, rule.target)
    else:
        threshold = ThresholdChoice(float(rule), "fixed")
    return calibration, threshold, split


def probabilities(calibration: Platt | None, u: np.ndarray) -> np.ndarray:
    """P(y = 1) from the linear predictor: calibrated when there is a map, σ(u) otherwise."""
    return _sigmoid(np.asarray(u, dtype=np.float64)) if calibration is None else calibration.apply(u)
