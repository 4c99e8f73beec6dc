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

from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.config import ModelKind
from vfl.privacy import clip_rows
from vfl.errors import DataError
from vfl.models import model_math
from vfl.preprocess import Standardizer


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

    def partial_scores(self, features: np.ndarray) -> np.ndarray:
        """u_A = standardised features · θ_A (raw features in, one score per row out)."""
        X = _check_width(features, self.feature_names, "party A")
        return standardised_rows(self.scaler, X, self.row_clip) @ self.weights

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": "A",
            "model": self.model,
            "feature_names": self.feature_names,
            "scaler": self.scaler.to_dict(),
            "weights": self.weights.tolist(),
            "row_clip": self.row_clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPartA:
        return cls(data["model"], list(data["feature_names"]), Standardizer.from_dict(data["scaler"]),
                   np.asarray(data["weights"], dtype=np.float64), data.get("row_clip"))


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

    def scores(self, features: np.ndarray, u_a: np.ndarray) -> np.ndarray:
        """The linear predictor u = u_A + u_B (in the standardised label units of training)."""
        X = _check_width(features, self.feature_names, "party B")
        u_a = np.asarray(u_a, dtype=np.float64)
        if u_a.shape != (X.shape[0],):
            raise DataError(f"got {u_a.shape[0]} partial scores from party A for {X.shape[0]} rows")
        return u_a + standardised_rows(self.scaler, X, self.row_clip) @ self.weights + self.intercept

    def predict(self, features: np.ndarray, u_a: np.ndarray) -> np.ndarray:
        """P(y = 1) for logistic regression; the predicted label value for linear."""
        u = self.scores(features, u_a)
        if self.model == "logistic":
            return model_math("logistic").predict(u)
        return self.label_mean + self.label_scale * u

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelPartB:
        return cls(data["model"], list(data["feature_names"]), Standardizer.from_dict(data["scaler"]),
                   np.asarray(data["weights"], dtype=np.float64), float(data["intercept"]),
                   float(data["label_mean"]), float(data["label_scale"]), data.get("row_clip"))
