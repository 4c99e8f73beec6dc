"""Standardisation each party applies to its own features (and B to a linear label).

Features are centred and scaled by each party on its own training rows; the
statistics stay with the party's model part and are applied again at
prediction time. For linear regression party B also standardises the label,
so the learning rate does not depend on the label's units; B alone undoes it
when it turns scores into predictions, and A never learns the label's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        # A constant column carries no signal; scaling it by 1 keeps it at 0 after centring.
        scale = np.where(scale > 0, scale, 1.0)
        return cls(mean, scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        out = np.subtract(np.asarray(X, dtype=np.float64), self.mean)  # a new array: X is not changed
        out /= self.scale  # in place: no second matrix-sized temporary (the same values as (X - mean) / scale)
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Standardizer:
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))
