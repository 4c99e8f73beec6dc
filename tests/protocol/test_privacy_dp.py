"""Differential privacy: the mechanism, its accounting, and its cost."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from vfl.ml import privacy
from vfl.ml.config import PrivacyConfig, TrainingConfig
from vfl.errors import ConfigError
from vfl.ml.plaintext import train_plaintext


def library_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """dp_accounting's own answer, computed independently of vfl.ml.privacy."""
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    accountant = rdp.RdpAccountant()
    accountant.compose(event)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("sigma, q, steps", [(1.1, 0.01, 1000), (4.0, 0.25, 120), (0.8, 0.05, 50)])
def test_epsilon_matches_the_library_for_the_same_noise_rate_and_steps(sigma, q, steps):
    assert privacy.epsilon_spent(sigma, q, steps, 1e-5) == pytest.approx(library_epsilon(sigma, q, steps, 1e-5), rel=1e-9)


def test_target_epsilon_is_met_with_the_least_noise():
    sigma = privacy.noise_for_epsilon(2.0, 0.1, 200, 1e-5)

    assert privacy.epsilon_spent(sigma, 0.1, 200, 1e-5) <= 2.0
    assert privacy.epsilon_spent(sigma * 0.99, 0.1, 200, 1e-5) > 2.0


def test_sensitivity_follows_the_documented_bound():
    config = TrainingConfig(model="logistic", privacy=PrivacyConfig(noise_multiplier=1.0, row_clip=2.0, weight_bound=3.0))

    d = 0.25 * (2.0 + math.sqrt(5.0)) * 3.0 + 0.5
    assert privacy.residual_bound(config) == pytest.approx(d)
    assert privacy.sensitivity(config) == pytest.approx(d * math.sqrt(9.0))


def test_the_bound_holds_for_every_row_of_real_training(breast):
    X_a, X_b, y = breast
    config = TrainingConfig(epochs=5, batch_size=128, privacy=PrivacyConfig(noise_multiplier=0.5))
    from vfl.ml.scaling import Standardizer

    Xa = privacy.clip_rows(Standardizer.fit(X_a).transform(X_a), 3.0)
    Xb = privacy.clip_rows(Standardizer.fit(X_b).transform(X_b), 3.0)
    result = train_plaintext(Xa, Xb, y, config)
    u = Xa @ result.weights_a + np.hstack([Xb, np.ones((len(y), 1))]) @ result.weights_b

    assert np.linalg.norm(result.weights_a) <= 5.0 + 1e-9 and np.linalg.norm(result.weights_b) <= 5.0 + 1e-9
    assert np.max(np.abs(0.25 * u + 0.5 - y)) <= privacy.residual_bound(config)


def test_exactly_one_of_epsilon_or_noise():
    with pytest.raises(ValueError, match="exactly one"):
        PrivacyConfig(epsilon=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        PrivacyConfig()


def test_unreachable_epsilon_is_a_config_error():
    with pytest.raises(ConfigError, match="no noise level"):
        privacy.noise_for_epsilon(1e-6, 1.0, 10_000, 1e-5)


def test_federated_private_training_equals_the_private_reference_and_runs_every_epoch(train, breast):
    X_a, X_b, y = breast
    settings = dict(epochs=4, batch_size=128, tol=1.0, validation_fraction=0.2, optimizer="adam",
                    privacy=PrivacyConfig(epsilon=3.0))

    run = train(X_a, X_b, y, **settings)

    reference = train_plaintext(run.a.scaler.transform(X_a), run.b.scaler.transform(X_b), y.astype(float),
                                run.a.config, model_rounding=True, noise_seeds=(run.a.noise_seed, run.b.noise_seed))
    assert run.a.epochs_run == 4 and run.b.stop_reason == "max_epochs"  # tol=1.0 would have stopped it otherwise
    assert np.allclose(run.a.weights, reference.weights_a, atol=1e-8, rtol=0)
    assert np.allclose(run.b.weights, reference.weights_b, atol=1e-8, rtol=0)
    assert run.a.privacy.epsilon <= 3.0


@pytest.mark.slow  # 10+ s: make test-system; make test keeps a sibling test of the same path
def test_less_epsilon_costs_more_utility(breast):
    from sklearn.metrics import roc_auc_score

    from vfl.ml.scaling import Standardizer

    X_a, X_b, y = breast
    Xa, Xb = Standardizer.fit(X_a).transform(X_a), Standardizer.fit(X_b).transform(X_b)
    aucs = {}
    for epsilon in (0.1, 1.0, None):
        config = TrainingConfig(epochs=20, batch_size=128, optimizer="adam",
                                privacy=None if epsilon is None else PrivacyConfig(epsilon=epsilon))
        scores = []
        for seed in range(5):
            result = train_plaintext(Xa, Xb, y, config, noise_seeds=(seed, seed + 100))
            Xa_used = Xa if epsilon is None else privacy.clip_rows(Xa, 3.0)
            Xb_used = Xb if epsilon is None else privacy.clip_rows(Xb, 3.0)
            u = Xa_used @ result.weights_a + np.hstack([Xb_used, np.ones((len(y), 1))]) @ result.weights_b
            scores.append(roc_auc_score(y, u))
        aucs[epsilon] = np.mean(scores)

    assert aucs[0.1] < aucs[1.0] < aucs[None]
