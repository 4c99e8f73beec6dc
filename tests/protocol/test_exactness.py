"""Federated weights equal a plain-numpy run of the same algorithm, up to fixed-point rounding."""

import numpy as np
import pytest

from vfl.ml.plaintext import train_plaintext

CONFIGS = {
    "newton-full-batch": dict(epochs=12),
    "adam-minibatch-validation-l2": dict(
        epochs=8, optimizer="adam", batch_size=128, validation_fraction=0.2, l2=0.05, loss_every=2
    ),
    "sgd-decay-momentum": dict(epochs=6, optimizer="sgd", batch_size=200, decay=0.3, momentum=0.5, fit_intercept=True),
    "newton-early-stopping": dict(epochs=30, batch_size=100, validation_fraction=0.3, early_stopping_rounds=2, tol=0),
}


@pytest.mark.parametrize("settings", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_federated_weights_match_plain_numpy(train, breast, diabetes, model, settings):
    X_a, X_b, y = breast if model == "logistic" else diabetes

    run = train(X_a, X_b, y, model=model, **settings)

    reference = train_plaintext(run.a.design, run.b.design[:, :-1], run.b.labels, run.a.config, model_rounding=True)
    assert run.a.epochs_run == reference.epochs_run
    assert run.b.stop_reason == reference.stop_reason
    assert np.allclose(run.a.weights, reference.weights_a, atol=1e-8, rtol=0)
    assert np.allclose(run.b.weights, reference.weights_b, atol=1e-8, rtol=0)
    assert np.allclose(run.b.train_losses, reference.train_losses, atol=1e-9, rtol=0)
    assert np.allclose(run.b.validation_losses, reference.validation_losses, atol=1e-9, rtol=0)


def test_early_stopping_ends_with_the_best_validation_epoch(train, breast):
    X_a, X_b, y = breast

    run = train(X_a, X_b, y, epochs=40, batch_size=64, validation_fraction=0.3, early_stopping_rounds=2,
                tol=0, learning_rate=1.5, momentum=0.6)

    assert run.b.stop_reason == "early_stopping"
    losses = run.b.validation_losses
    best = int(np.argmin(losses))
    assert best == run.c.monitor.best_epoch < len(losses) - 1
    assert np.array_equal(run.a.weights, run.a.best_weights)
