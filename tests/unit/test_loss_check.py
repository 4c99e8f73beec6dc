"""The check that suggests the exact loss when the Taylor loss cost the model ranking quality."""

import numpy as np

from vfl.ml.loss_check import TAYLOR_AUC_GAP, exact_refit_scores, taylor_shortfall
from vfl.ml.metrics import auc


def nearly_separable(rng, n=400):
    X_b = rng.normal(size=(n, 2))
    u_a = rng.normal(size=n) * 3
    margin = 4 * X_b[:, 0] + u_a
    y = (margin + rng.normal(size=n) * 0.3 > 0).astype(float)
    # A few far, mislabelled-looking rows pull a least-squares fit but barely move a log-loss fit.
    far = rng.choice(n, 20, replace=False)
    X_b[far, 1] = 8.0 * (2 * y[far] - 1)
    return np.hstack([X_b, np.ones((n, 1))]), u_a, y


def test_a_poor_ranking_gets_the_warning_naming_the_option(rng):
    design, u_a, y = nearly_separable(rng)
    weak_scores = design[:, 1] + 0.1 * u_a  # a model that leans on the wrong column

    warning = taylor_shortfall(design, u_a, weak_scores, y, "training", option="--loss exact")

    assert warning is not None and "--loss exact" in warning and "training rows" in warning


def test_a_model_as_good_as_the_log_loss_fit_gets_none(rng):
    design, u_a, y = nearly_separable(rng)
    best = exact_refit_scores(design, u_a, y)

    assert taylor_shortfall(design, u_a, best, y, "training") is None
    assert auc(y, best) > 0.95


def test_one_class_only_gets_none(rng):
    design, u_a, _ = nearly_separable(rng)

    assert taylor_shortfall(design, u_a, u_a, np.ones(len(u_a)), "training") is None
    assert TAYLOR_AUC_GAP == 0.01
