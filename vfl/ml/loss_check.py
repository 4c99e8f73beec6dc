"""Does the Taylor loss cost this model accuracy? A check party B runs on what it already holds.

The Taylor loss (:mod:`vfl.ml.kinds`) is a least-squares fit in disguise: on nearly
separable data it keeps penalising rows the model already ranks right, and ranks worse
than the log-loss would (FATE's ionosphere: AUC 0.941 against scikit-learn's 0.961).
After training, B holds the feature parties' partial scores on the aligned rows (the
evaluation asks for them, as serving does), its own standardised columns and the labels.
Refitting the log-loss on B's columns plus the feature parties' total score, a model
the exact loss could reach, shows whether the approximation cost anything. Nothing
leaves B: the check only decides whether the job's warnings suggest ``loss = "exact"``.
"""

from __future__ import annotations

import numpy as np

from vfl.ml.kinds import sigmoid
from vfl.ml.metrics import auc

#: Warn when the refit ranks the rows better by this much AUC (issue 30's fidelity bound).
TAYLOR_AUC_GAP = 0.01
_RIDGE = 1e-6
_NEWTON_STEPS = 50


def exact_refit_scores(design_b: np.ndarray, u_features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scores of the log-loss fitted by Newton's method on [B's design (with its intercept), Σ_h u_h].

    A tiny ridge keeps the steps finite on separable rows, where the unpenalised optimum is at infinity.
    """
    X = np.hstack([np.asarray(design_b, dtype=np.float64), np.asarray(u_features, dtype=np.float64).reshape(-1, 1)])
    y = np.asarray(labels, dtype=np.float64)
    w = np.zeros(X.shape[1])
    ridge = _RIDGE * len(y) * np.eye(X.shape[1])
    for _ in range(_NEWTON_STEPS):
        p = sigmoid(X @ w)
        hessian = (X * (p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(hessian, X.T @ (p - y) + ridge @ w)
        w -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return X @ w


def taylor_shortfall(design_b: np.ndarray, u_features: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     split: str, *, option: str = "training.loss = 'exact'") -> str | None:
    """A warning when the exact log-loss would rank ``split``'s rows better by ``TAYLOR_AUC_GAP`` or more."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return None
    federated = auc(labels, np.asarray(scores, dtype=np.float64))
    refit = auc(labels, exact_refit_scores(design_b, u_features, labels))
    if federated is None or refit is None or refit - federated < TAYLOR_AUC_GAP:
        return None
    return (f"the Taylor approximation of the log-loss costs this model about {refit - federated:.3f} AUC on the "
            f"{split} rows ({federated:.4f}; a log-loss fit reaches {refit:.4f}): the data is nearly separable. "
            f"Train with {option} to fit the log-loss itself, as scikit-learn does; the arbiter then also sees "
            "each batch's scores, shuffled (see the security page)")


__all__ = ["TAYLOR_AUC_GAP", "exact_refit_scores", "taylor_shortfall"]
