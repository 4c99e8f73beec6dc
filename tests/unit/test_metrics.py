import numpy as np
import pytest
from sklearn import metrics as sk

from vfl.ml.metrics import auc, classification_metrics, ks, regression_metrics, roc_curve


@pytest.fixture
def scored(rng):
    y = rng.integers(0, 2, size=500).astype(float)
    # Rounded scores create ties, which AUC must count as half.
    p = np.round(1 / (1 + np.exp(-(y * 1.2 + rng.normal(size=500)))), 2)
    return y, p


def test_auc_matches_sklearn_with_ties(scored):
    y, p = scored

    assert auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)


def test_ks_matches_the_roc_curve_definition(scored):
    y, p = scored
    fpr, tpr, _ = sk.roc_curve(y, p)

    assert ks(y, p) == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_roc_curve_matches_sklearn_points(scored):
    y, p = scored
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)

    ours_fpr, ours_tpr = roc_curve(y, p)

    assert np.allclose(ours_fpr, fpr) and np.allclose(ours_tpr, tpr)


def test_threshold_metrics_match_sklearn(scored):
    y, p = scored
    predicted = (p >= 0.5).astype(float)

    m = classification_metrics(y, p)

    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted))
    assert m["precision"] == pytest.approx(sk.precision_score(y, predicted))
    assert m["recall"] == pytest.approx(sk.recall_score(y, predicted))
    assert m["f1"] == pytest.approx(sk.f1_score(y, predicted))


def test_probability_metrics_match_sklearn(scored):
    y, p = scored

    m = classification_metrics(y, p)

    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p))
    assert m["brier"] == pytest.approx(sk.brier_score_loss(y, p))


def test_a_confident_miss_gives_a_finite_log_loss():
    m = classification_metrics(np.array([1.0, 0.0]), np.array([0.0, 0.0]))

    assert m["log_loss"] == pytest.approx(-np.log(1e-15) / 2)


def test_single_class_has_no_auc():
    assert auc(np.ones(5), np.linspace(0, 1, 5)) is None


def test_regression_metrics_match_sklearn(rng):
    y = rng.normal(size=300) * 10 + 3
    f = y + rng.normal(size=300)

    m = regression_metrics(y, f)

    assert m["mse"] == pytest.approx(sk.mean_squared_error(y, f))
    assert m["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, f)))
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, f))
    assert m["r2"] == pytest.approx(sk.r2_score(y, f))
