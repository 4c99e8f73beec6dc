"""What differs between logistic and linear regression, in plain numpy.

Both models share one shape, which is what makes the encrypted protocol work.
With u = u_A + u_B the linear predictor (u_B carries the intercept), the
per-row loss is a quadratic in u_A:

    ℓ(u) = p + q·u_A + (c/2)·u_A²          and its derivative
    d    = ∂ℓ/∂u = c·u_A + q                (the residual)

where p and q depend only on party B's u_B and y, and c is a constant:

* linear regression, squared loss ½(u − y)²:
  c = 1, q = u_B − y, p = ½(u_B − y)².
* logistic regression, second-order Taylor expansion of log(1 + e^(−ỹu))
  around u = 0, ỹ = 2y − 1:  log 2 − ½ỹu + ⅛u², so
  c = ¼, q = ¼u_B + ½ − y, p = log 2 − ½ỹu_B + ⅛u_B².

With ``loss = "exact"`` (logistic only) the residual is the log-loss's own,
d = σ(u) − y, and the loss softplus(u) − y·u: the arbiter turns each batch's
shuffled scores into encrypted sigmoids (:mod:`vfl.protocol.label_party`);
:func:`exact_residual` and :func:`exact_loss_sum` are the plaintext reference.
The optimiser keeps c = ¼: σ′ ≤ ¼, so c·XᵀX bounds the log-loss's Hessian and
the preconditioned steps converge to the exact optimum (Böhning's bound).

Hence the encrypted residual is ``[[d]] = c·[[u_A]] + q`` (c is a power of two,
so multiplying by it is free in fixed point) and the encrypted loss of a batch
is ``Σp + Σ q·[[u_A]] + (c/2)·[[Σ u_A²]]``: party A only ever needs to send
one encrypted scalar for the loss, never a per-row ``[[u_A²]]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vfl.ml.config import ModelKind


@dataclass(frozen=True)
class ModelMath:
    """The quadratic-loss coefficients of one model kind."""

    kind: ModelKind
    #: c = 2^-residual_shift: the coefficient of u_A in the residual.
    residual_shift: int

    @property
    def c(self) -> float:
        return 2.0**-self.residual_shift

    def q(self, u_b: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The plaintext part of the residual (and the loss's linear coefficient)."""
        if self.kind == "logistic":
            return 0.25 * u_b + 0.5 - y
        return u_b - y

    def p(self, u_b: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The part of the per-row loss that depends on B alone."""
        if self.kind == "logistic":
            y_signed = 2.0 * y - 1.0
            return math.log(2.0) - 0.5 * y_signed * u_b + 0.125 * u_b**2
        return 0.5 * (u_b - y) ** 2

    def residual(self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d = c·u_A + q in plaintext (the reference implementation's residual)."""
        return self.c * u_a + self.q(u_b, y)

    def loss_sum(self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray) -> float:
        """Σ ℓ over a batch in plaintext."""
        return float(np.sum(self.p(u_b, y)) + np.dot(self.q(u_b, y), u_a) + 0.5 * self.c * np.dot(u_a, u_a))

    def predict(self, u: np.ndarray) -> np.ndarray:
        """Probability of class 1 (logistic) or the predicted value (linear)."""
        if self.kind == "logistic":
            return 1.0 / (1.0 + np.exp(-np.clip(u, -500, 500)))
        return u


def sigmoid(u: np.ndarray) -> np.ndarray:
    """σ(u) = 1 / (1 + e^−u), without overflow for large |u|."""
    u = np.asarray(u, dtype=np.float64)
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(u: np.ndarray) -> np.ndarray:
    """log(1 + e^u), without overflow: the log-loss of a row is softplus(u) − y·u."""
    u = np.asarray(u, dtype=np.float64)
    return np.maximum(u, 0.0) + np.log1p(np.exp(-np.abs(u)))


def exact_residual(u: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d = σ(u) − y: the log-loss's derivative in u."""
    return sigmoid(u) - y


def exact_loss_sum(u: np.ndarray, y: np.ndarray) -> float:
    """Σ log(1 + e^−ỹu) = Σ softplus(u) − y·u over a batch."""
    return float(np.sum(softplus(u)) - np.dot(y, u))


LOGISTIC = ModelMath("logistic", residual_shift=2)
LINEAR = ModelMath("linear", residual_shift=0)


def model_math(kind: ModelKind) -> ModelMath:
    return LOGISTIC if kind == "logistic" else LINEAR


def with_intercept(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """Party B's design matrix: its features, plus a column of ones for the intercept."""
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def penalty_mask(n_features: int, fit_intercept: bool) -> np.ndarray:
    """1 for weights under the L2 penalty, 0 for the intercept (B's last weight)."""
    mask = np.ones(n_features + (1 if fit_intercept else 0))
    if fit_intercept:
        mask[-1] = 0.0
    return mask


def l2_penalty(weights: np.ndarray, mask: np.ndarray, l2: float) -> float:
    """λ/2·‖θ‖² over the penalised weights."""
    w = weights * mask
    return 0.5 * l2 * float(np.dot(w, w))
