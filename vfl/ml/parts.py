"""Each party's own part of a trained model, and federated prediction with them.

After training, party A holds :class:`ModelPartA` (its scaler and weights) and
party B holds :class:`ModelPartB` (its scaler, weights, intercept and, for
linear regression, the label scale). Neither part is useful alone; the
arbiter holds nothing.

Prediction for an ID: A computes its plaintext partial score u_A from its own
features and sends it to B; B adds its own u_B and applies the link. Only B
sees the result. FATE and SecretFlow serve the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vfl.ml.calibration import Platt, ThresholdChoice, fit_decision, probabilities
from vfl.ml.config import ModelKind, TrainingConfig
from vfl.ml.metrics import model_metrics
from vfl.ml.prep import Preparation
from vfl.ml.privacy import clip_rows
from vfl.errors import DataError
from vfl.ml.scaling import Standardizer
from vfl.ml.score_noise import FeatureBox


def _check_width(X: np.ndarray, names: list[str], who: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise DataError(
            f"{who}'s model was trained on {len(names)} features ({', '.join(names[:5])}...), "
            f"got a table with {X.shape[-1] if X.ndim else 0}; use the same columns as in training"
        )
    return X


def standardised_rows(scaler: Standardizer, X: np.ndarray, row_clip: float | None) -> np.ndarray:
    """Standardised rows, clipped as in training when the job was differentially private."""
    scaled = scaler.transform(X)
    return scaled if row_clip is None else clip_rows(scaled, row_clip)


@dataclass(frozen=True)
class ModelPartA:
    model: ModelKind
    feature_names: list[str]
    scaler: Standardizer
    weights: np.ndarray
    row_clip: float | None = None
    #: Each feature's range over the job's aligned rows (None in models from before it was kept): what
    #: noise on the released scores clips rows to (:mod:`vfl.ml.score_noise`). It stays with party A.
    feature_box: FeatureBox | None = None
    #: How party A prepared its own columns (missing values, categories): ``feature_names`` are its outputs.
    preparation: Preparation | None = None

    @property
    def input_names(self) -> list[str]:
        """The dataset columns the model reads (before any preparation)."""
        return self.preparation.inputs if self.preparation is not None else self.feature_names

    def partial_scores(self, features: np.ndarray) -> np.ndarray:
        """u_A = standardised features · θ_A (the model's columns in, missing cells filled as in training)."""
        X = _check_width(features, self.feature_names, "party A")
        if self.preparation is not None:
            X = self.preparation.fill(X)
        return standardised_rows(self.scaler, X, self.row_clip) @ self.weights

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": "A",
            "model": self.model,
            "feature_names": self.feature_names,
            "scaler": self.scaler.to_dict(),
            "weights": self.weights.tolist(),
            "row_clip": self.row_clip,
            "feature_box": None if self.feature_box is None else self.feature_box.to_dict(),
            "preparation": None if self.preparation is None else self.preparation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPartA:
        return cls(data["model"], list(data["feature_names"]), Standardizer.from_dict(data["scaler"]),
                   np.asarray(data["weights"], dtype=np.float64), data.get("row_clip"),
                   FeatureBox.from_dict(data.get("feature_box")), Preparation.from_dict(data.get("preparation")))


@dataclass(frozen=True)
class ModelPartB:
    model: ModelKind
    feature_names: list[str]
    scaler: Standardizer
    weights: np.ndarray
    intercept: float
    label_mean: float = 0.0
    label_scale: float = 1.0
    row_clip: float | None = None
    #: Logistic only: Platt scaling of u fitted after training (None: p = σ(u)), and the decision threshold.
    calibration: Platt | None = None
    threshold: ThresholdChoice = ThresholdChoice(0.5, "fixed")
    #: How party B prepared its own columns (missing values, categories): ``feature_names`` are its outputs.
    preparation: Preparation | None = None

    @property
    def input_names(self) -> list[str]:
        """The dataset columns the model reads (before any preparation)."""
        return self.preparation.inputs if self.preparation is not None else self.feature_names

    def with_decision(self, calibration: Platt | None, threshold: ThresholdChoice) -> ModelPartB:
        return replace(self, calibration=calibration, threshold=threshold)

    def scores(self, features: np.ndarray, u_a: np.ndarray) -> np.ndarray:
        """The linear predictor u = u_A + u_B (in the standardised label units of training)."""
        X = _check_width(features, self.feature_names, "party B")
        u_a = np.asarray(u_a, dtype=np.float64)
        if u_a.shape != (X.shape[0],):
            raise DataError(f"got {u_a.shape[0]} partial scores from party A for {X.shape[0]} rows")
        if self.preparation is not None:
            X = self.preparation.fill(X)
        return u_a + standardised_rows(self.scaler, X, self.row_clip) @ self.weights + self.intercept

    def predict(self, features: np.ndarray, u_a: np.ndarray) -> np.ndarray:
        """P(y = 1) for logistic regression; the predicted label value for linear."""
        return self.link(self.scores(features, u_a))

    def link(self, u: np.ndarray) -> np.ndarray:
        """From the linear predictor to the prediction: the (calibrated) probability, or the label value."""
        if self.model == "logistic":
            return probabilities(self.calibration, u)
        return self.label_mean + self.label_scale * u

    def labels(self, predictions: np.ndarray) -> np.ndarray | None:
        """Logistic: 1 where the probability reaches the threshold; linear: None."""
        if self.model != "logistic":
            return None
        return (np.asarray(predictions) >= self.threshold.value).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": "B",
            "model": self.model,
            "feature_names": self.feature_names,
            "scaler": self.scaler.to_dict(),
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "label_mean": self.label_mean,
            "label_scale": self.label_scale,
            "row_clip": self.row_clip,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "threshold": self.threshold.value,
            "threshold_rule": self.threshold.to_dict(),
            "preparation": None if self.preparation is None else self.preparation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPartB:
        # Model files from before the decision layer have neither key: σ(u) at 0.5.
        threshold = ThresholdChoice.from_dict(data.get("threshold_rule") or {"value": 0.5, "rule": "fixed"})
        return cls(data["model"], list(data["feature_names"]), Standardizer.from_dict(data["scaler"]),
                   np.asarray(data["weights"], dtype=np.float64), float(data["intercept"]),
                   float(data["label_mean"]), float(data["label_scale"]), data.get("row_clip"),
                   Platt.from_dict(data.get("calibration")), threshold, Preparation.from_dict(data.get("preparation")))


def evaluate_label_part(
    model: ModelPartB, config: TrainingConfig, labels: np.ndarray, u: np.ndarray, splits: dict[str, np.ndarray],
) -> tuple[ModelPartB, dict[str, Any], dict[str, Any] | None, np.ndarray]:
    """Party B after training: fit the decision layer, then measure the model on each split.

    ``u`` is the linear predictor on B's aligned rows (Σ partial scores + B's own),
    ``splits`` the row numbers of "train" and, if there is one, "validation"
    (:func:`vfl.ml.calibration.fit_decision` says which rows fit what). Returns the
    model with its decision layer, the metrics per split, a summary of the
    decision (None for linear models) and the predictions for every row.
    """
    if model.model != "logistic":
        predictions = model.link(u)
        return model, {n: model_metrics(model.model, labels[r], predictions[r]) for n, r in splits.items()}, None, predictions
    calibration, threshold, split = fit_decision(config, labels, u, splits)
    decided = model.with_decision(calibration, threshold)
    predictions = decided.link(u)
    metrics = {
        name: model_metrics("logistic", labels[r], predictions[r], threshold=threshold.value) for name, r in splits.items()
    }
    uncalibrated = probabilities(None, u)
    decision = {
        "calibration": None if calibration is None else calibration.to_dict(),
        "threshold": threshold.to_dict(),
        "fitted_on": split,
        "rows": int(len(splits[split])),
        # The same rows before the decision layer: σ(u), labels at 0.5.
        "uncalibrated": {name: model_metrics("logistic", labels[r], uncalibrated[r]) for name, r in splits.items()},
    }
    return decided, metrics, decision, predictions


def label_party_alone(role: Any, labels: np.ndarray, splits: dict[str, np.ndarray], *,
                      train_labels: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The same model trained by party B alone on the same rows: what federation adds (and its predictions).

    ``role`` is party B's training role after training (:class:`vfl.protocol.label_party.LabelParty`):
    its standardised design, labels and config. B needs no other party for this, so it is
    trained in plaintext with the protocol's own algorithm (:func:`vfl.ml.plaintext.train_plaintext`,
    which the encrypted protocol equals to rounding). It is the job's bank-only baseline and
    v(∅) of the contributions (:mod:`vfl.incentives.shapley`). ``train_labels`` replaces the role's own
    (one class against the rest, for a one-vs-rest baseline).
    """
    from vfl.ml.plaintext import train_plaintext

    config = role.config
    design = role.design[:, :-1] if config.fit_intercept else role.design
    no_a = np.zeros((len(labels), 0))
    result = train_plaintext(no_a, design, role.labels if train_labels is None else train_labels, config)
    weights = result.weights_b
    u = design @ weights[: design.shape[1]] + (weights[-1] if config.fit_intercept else 0.0)
    threshold = 0.5
    if config.model == "linear":
        predictions = role.label_mean + role.label_scale * u
    else:  # with the same decision layer as the federated model, so the two compare like for like
        calibration, choice, _ = fit_decision(config, labels, u, splits)
        predictions, threshold = probabilities(calibration, u), choice.value
    report = {
        "description": "party B's features only, same rows, same algorithm, same calibration and threshold rule",
        "metrics": {
            name: model_metrics(config.model, labels[rows], predictions[rows], threshold=threshold)
            for name, rows in splits.items()
        },
    }
    return report, predictions


def label_party_alone_one_vs_rest(role: Any, labels: np.ndarray, classes: list[float],
                                  splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """A one-vs-rest job's bank-only baseline: B alone trains one binary model per class, the same way.

    The classes' probabilities are normalised to sum to one, as the federated model's are, and measured
    with the same macro and per-class metrics.
    """
    from vfl.ml.multiclass import multiclass_metrics, normalise, one_vs_rest

    columns = []
    for value in classes:
        binary = one_vs_rest(labels, value)
        _, predictions = label_party_alone(role, binary, splits, train_labels=binary)
        columns.append(predictions)
    probabilities = normalise(np.column_stack(columns))
    return {
        "description": "party B's features only, same rows, one binary model per class with the same algorithm",
        "metrics": {name: multiclass_metrics(labels[rows], probabilities[rows], classes)
                    for name, rows in splits.items()},
    }
