"""Party B's decision layer: Platt scaling and the threshold rules, against brute force and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from vfl.ml.calibration import Platt, fit_platt, pick_threshold
from vfl.ml.config import TrainingConfig
from vfl.errors import ConfigError, DataError
from vfl.ml.metrics import classification_metrics
from vfl.ml.parts import ModelPartB
from vfl.ml.scaling import Standardizer


def _labelled(n: int, a: float, b: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * u + b)))).astype(float)
    return u, y


def test_platt_recovers_the_map_that_made_the_labels():
    # Arrange: scores shrunk by 3 and shifted, as Taylor-approximated training leaves them.
    u, y = _labelled(40_000, a=3.0, b=-0.7)

    # Act
    platt = fit_platt(u, y)

    # Assert
    assert platt.a == pytest.approx(3.0, abs=0.1) and platt.b == pytest.approx(-0.7, abs=0.05)


def test_platt_matches_scikit_learn_logistic_regression_on_the_score():
    # Arrange
    from sklearn.linear_model import LogisticRegression

    u, y = _labelled(5_000, a=2.0, b=0.4, seed=1)
    reference = LogisticRegression(C=1e6).fit(u[:, None], y)

    # Act
    platt = fit_platt(u, y)

    # Assert: Platt's smoothed targets move the fit by O(1/n) only.
    assert platt.a == pytest.approx(reference.coef_[0, 0], rel=0.01)
    assert platt.b == pytest.approx(reference.intercept_[0], abs=0.01)


def test_calibration_keeps_the_ranking_and_lowers_the_log_loss():
    # Arrange
    u, y = _labelled(4_000, a=4.0, b=1.0, seed=2)
    raw = 1 / (1 + np.exp(-u))

    # Act
    calibrated = fit_platt(u, y).apply(u)

    # Assert
    assert np.array_equal(np.argsort(calibrated, kind="stable"), np.argsort(raw, kind="stable"))
    assert classification_metrics(y, calibrated)["log_loss"] < classification_metrics(y, raw)["log_loss"] - 0.05


def test_separable_rows_still_give_a_finite_map():
    # Arrange: every positive scores above every negative.
    u = np.r_[np.linspace(-3, -1, 50), np.linspace(1, 3, 50)]
    y = np.r_[np.zeros(50), np.ones(50)]

    # Act
    platt = fit_platt(u, y)

    # Assert
    assert np.isfinite(platt.a) and np.isfinite(platt.b) and platt.a > 0


def test_calibration_needs_both_classes():
    with pytest.raises(DataError, match="both classes"):
        fit_platt(np.arange(5.0), np.ones(5))


def _brute(y: np.ndarray, p: np.ndarray, score) -> float:
    """The best value of ``score(tp, fp, fn, tn)`` over every cut "p ≥ t"."""
    best = -np.inf
    for t in np.unique(p):
        predicted = p >= t
        tp, fp = np.sum(predicted & (y == 1)), np.sum(predicted & (y == 0))
        fn, tn = np.sum(~predicted & (y == 1)), np.sum(~predicted & (y == 0))
        best = max(best, score(tp, fp, fn, tn))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_f1_and_max_ks_equal_brute_force(seed):
    # Arrange
    u, y = _labelled(600, a=1.5, b=-0.5, seed=seed)
    p = np.round(1 / (1 + np.exp(-u)), 2)  # ties, as real scores have
    f1 = lambda tp, fp, fn, tn: 2 * tp / (2 * tp + fp + fn)  # noqa: E731
    ks = lambda tp, fp, fn, tn: tp / (tp + fn) - fp / (fp + tn)  # noqa: E731

    # Act
    by_f1 = pick_threshold(y, p, "max_f1")
    by_ks = pick_threshold(y, p, "max_ks")

    # Assert: the picked cut reaches the best value on the rows it was picked on.
    assert classification_metrics(y, p, by_f1.value)["f1"] == pytest.approx(_brute(y, p, f1), abs=1e-12)
    at_ks = classification_metrics(y, p, by_ks.value)
    assert at_ks["recall"] - np.mean(p[y == 0] >= by_ks.value) == pytest.approx(_brute(y, p, ks), abs=1e-12)


def test_a_target_precision_is_met_with_the_most_recall():
    # Arrange
    u, y = _labelled(2_000, a=2.0, b=0.0, seed=3)
    p = 1 / (1 + np.exp(-u))

    # Act
    choice = pick_threshold(y, p, "precision", 0.85)
    at = classification_metrics(y, p, choice.value)

    # Assert
    best_recall = _brute(y, p, lambda tp, fp, fn, tn: tp / (tp + fn) if tp / max(tp + fp, 1) >= 0.85 else -1)
    assert choice.reached and at["precision"] >= 0.85 and at["recall"] == pytest.approx(best_recall)


def test_an_unreachable_precision_is_reported_not_hidden():
    # Arrange: the scores rank the negatives first, so no cut reaches 99% precision.
    p = np.random.default_rng(4).random(500)
    y = (p < 0.5).astype(float)

    # Act
    choice = pick_threshold(y, p, "precision", 0.99)

    # Assert
    assert not choice.reached and choice.rule == "precision" and choice.target == 0.99


@pytest.mark.parametrize("training, problem", [
    ({"threshold": 1.5}, "not a probability"),
    ({"threshold": {"pick": "precision"}}, "target"),
    ({"threshold": {"pick": "max_f1", "target": 0.8}}, "target"),
    ({"model": "linear", "threshold": {"pick": "max_ks"}}, "logistic"),
    ({"model": "linear", "calibration": "platt"}, "logistic"),
])
def test_decision_settings_that_make_no_sense_are_refused(training, problem):
    with pytest.raises(ConfigError, match=problem):
        TrainingConfig.parse(training)


def test_the_decision_layer_survives_the_model_file_and_old_files_keep_their_meaning():
    # Arrange
    scaler = Standardizer.from_dict({"mean": [0.0], "scale": [1.0]})
    part = ModelPartB("logistic", ["x"], scaler, np.array([1.0]), 0.0).with_decision(
        Platt(2.0, -1.0), pick_threshold(np.array([0, 1, 0, 1.0]), np.array([0.1, 0.8, 0.3, 0.6]), "max_f1"))
    old = {k: v for k, v in part.to_dict().items() if k not in ("calibration", "threshold", "threshold_rule")}

    # Act
    again = ModelPartB.from_dict(part.to_dict())
    before = ModelPartB.from_dict(old)

    # Assert
    assert again.calibration == part.calibration and again.threshold == part.threshold
    assert before.calibration is None and before.threshold.value == 0.5
    assert before.link(np.array([0.0]))[0] == pytest.approx(0.5) and again.link(np.array([0.5]))[0] == pytest.approx(0.5)
