"""A learning rate far too large fails the job as diverged, with the evidence and the fix (issue 15).

Before: sgd at rate 100 ended "successfully" with a training loss of 1e15, and Newton at
rate 50 failed with an encoding overflow that blamed the features.
"""

from __future__ import annotations

import math

import pytest

from tests.conftest import TEST_KEY_BITS
from tests.protocol.conftest import build_roles
from vfl.ml.config import TrainingConfig
from vfl.data.table import PartyTable
from vfl.errors import DivergedError
from vfl.ml.plaintext import train_plaintext
from vfl.protocol.channel import InMemoryChannel
from vfl.ml.convergence import DIVERGENCE_FACTOR, ConvergenceMonitor, start_loss
from vfl.local.simulate import simulate


@pytest.fixture
def tables(rng):
    n = 60
    X_a, X_b = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    y = (X_a[:, 0] + X_b[:, 0] + rng.normal(size=n) > 0).astype(float)
    ids = [f"id{i}" for i in range(n)]
    return (PartyTable("a.csv", ids, X_a, ["a0", "a1"]),
            PartyTable("b.csv", ids, X_b, ["b0", "b1", "b2"], y, "y"))


def run_simulation(tables, keypair, **settings):
    config = TrainingConfig(key_bits=TEST_KEY_BITS, epochs=10, **settings)
    return simulate(tables[0], tables[1], config, keypair=keypair, workers=1, psi_key_bits=TEST_KEY_BITS)


def test_sgd_at_rate_100_fails_as_diverged_instead_of_succeeding(tables, keypair):
    with pytest.raises(DivergedError) as caught:
        run_simulation(tables, keypair, optimizer="sgd", learning_rate=100)

    message = str(caught.value)
    assert message.startswith("training diverged: the training loss rose from 0.6931 (epoch 1) to ")
    assert f"more than {DIVERGENCE_FACTOR:g} times the loss training starts from" in message
    assert "lower the learning rate (now 100, optimizer sgd)" in message


def test_newton_at_rate_50_blames_the_weights_not_the_features(rng, keypair):
    # 20 batches, and B's feature nearly a copy of one of A's (the blocks' Newton steps add up): the weights
    # blow up within the first epoch, before its loss is known, and B's q = ¼u_B + ½ − y can no longer be encoded.
    n = 200
    X_a = rng.normal(size=(n, 2))
    X_b = X_a[:, :1] + 0.1 * rng.normal(size=(n, 1))
    y = (X_a[:, 0] + rng.normal(size=n) > 0).astype(float)
    ids = [f"id{i}" for i in range(n)]
    tables = PartyTable("a.csv", ids, X_a, ["a0", "a1"]), PartyTable("b.csv", ids, X_b, ["b0"], y, "y")

    with pytest.raises(DivergedError) as caught:
        run_simulation(tables, keypair, optimizer="newton", learning_rate=50, batch_size=10)

    message = str(caught.value)
    assert "the weights of party B grew to " in message and "training diverged" in message
    assert "lower the learning rate (now 50, optimizer newton)" in message
    assert "standardise" not in message and "features" not in message
    assert "EncodingOverflow" in repr(caught.value.__cause__)  # what was refused underneath


def test_the_roles_end_a_diverged_job_as_failed_not_done(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair, optimizer="sgd", learning_rate=100, epochs=10)
    channel = InMemoryChannel({"A": a, "B": b, "C": c})

    with pytest.raises(DivergedError):
        channel.run(a.start() + b.start())

    # The arbiter stopped training and told everyone; B raised; nobody reports a model.
    assert c.finished and c.diverged and not c.done
    assert a.finished and a.stop_reason == "diverged" and not a.done
    assert b.stop_reason == "diverged" and not b.done
    assert b.train_losses[-1] > DIVERGENCE_FACTOR * math.log(2)
    # The arbiter's checkpoint keeps the verdict.
    state = c.state_dict()
    assert state["diverged"] is True


def test_a_good_run_is_untouched(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair, epochs=4)
    InMemoryChannel({"A": a, "B": b, "C": c}).run(a.start() + b.start())

    assert c.done and a.done and b.done and b.stop_reason != "diverged"


def test_the_plaintext_reference_diverges_alike(tiny):
    X_a, X_b, y = tiny
    with pytest.raises(DivergedError, match=r"training diverged: .*lower the learning rate \(now 100"):
        train_plaintext(X_a, X_b, y, TrainingConfig(optimizer="sgd", learning_rate=100, epochs=10))


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_monitor_calls_a_loss_far_above_the_start_diverged(model):
    monitor = ConvergenceMonitor(TrainingConfig(model=model, epochs=50, tol=0), has_validation=False)
    start = start_loss(model)

    assert monitor.end_epoch(0, start, None).reason is None
    assert monitor.end_epoch(1, 50 * start, None).reason is None  # an overshoot, not a blow-up
    outcome = monitor.end_epoch(2, 2 * DIVERGENCE_FACTOR * start, None)
    assert outcome.stop and outcome.reason == "diverged"


def test_monitor_calls_a_non_finite_loss_diverged_even_at_the_last_epoch():
    monitor = ConvergenceMonitor(TrainingConfig(epochs=2, tol=0), has_validation=True)
    monitor.end_epoch(0, 0.6, 0.6)

    assert monitor.end_epoch(1, 0.5, float("nan")).reason == "diverged"


def test_a_private_job_never_stops_on_its_loss():
    monitor = ConvergenceMonitor(TrainingConfig(privacy={"epsilon": 1.0}, epochs=5), has_validation=False)

    assert monitor.end_epoch(0, 1e15, None).reason is None
