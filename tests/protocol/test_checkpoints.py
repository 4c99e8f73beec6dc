"""A role restored from an epoch-boundary snapshot continues exactly as if never stopped."""

import copy
import json

import numpy as np
import pytest

from tests.protocol.conftest import build_roles
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import EpochDecision


def run_to_end(roles, initial):
    InMemoryChannel(roles).run(initial)


def run_until_epoch(roles, initial, epoch):
    """Deliver until the arbiter's decision for ``epoch`` has reached B; drop everything after."""
    queue = list(initial)
    while queue:
        envelope = queue.pop(0)
        queue.extend(roles[envelope.recipient].handle(envelope.message, envelope.sender))
        if isinstance(envelope.message, EpochDecision) and envelope.recipient == "B" and envelope.message.epoch == epoch:
            return


@pytest.mark.parametrize("settings", [dict(batch_size=100, optimizer="adam", validation_fraction=0.2),
                                      dict(batch_size=150)], ids=["adam-validation", "newton"])
def test_restoring_every_role_from_snapshots_reproduces_the_uninterrupted_run(breast, keypair, settings):
    X_a, X_b, y = breast
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, epochs=6, tol=0, **settings)
    run_to_end({"A": a, "B": b, "C": c}, a.start() + b.start())

    a2, b2, c2, _ = build_roles(X_a, X_b, y, keypair, epochs=6, tol=0, **settings)
    run_until_epoch({"A": a2, "B": b2, "C": c2}, a2.start() + b2.start(), epoch=2)
    # Snapshots go through JSON, as on disk; the roles are rebuilt from scratch, as after a crash.
    saved = {name: json.loads(json.dumps(role.snapshot)) for name, role in (("A", a2), ("B", b2), ("C", c2))}
    a3, b3, c3, _ = build_roles(X_a, X_b, y, keypair, epochs=6, tol=0, **settings)
    for role, name in ((a3, "A"), (b3, "B"), (c3, "C")):
        role.load_state_dict(saved[name])
    run_to_end({"A": a3, "B": b3, "C": c3}, b3.resume() + c3.resume() + a3.resume())

    assert saved["A"]["epoch"] == saved["B"]["epoch"] == saved["C"]["epoch"] == 2
    assert np.array_equal(a3.weights, a.weights) and np.array_equal(b3.weights, b.weights)
    assert b3.train_losses == b.train_losses and a3.epochs_run == a.epochs_run == 6


def test_snapshot_before_training_restarts_from_the_key_exchange(tiny, keypair):
    X_a, X_b, y = tiny
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, epochs=3, tol=0)
    reference = copy.deepcopy((a.snapshot, b.snapshot, c.snapshot))
    run_to_end({"A": a, "B": b, "C": c}, a.start() + b.start())
    a2, b2, c2, _ = build_roles(X_a, X_b, y, keypair, epochs=3, tol=0)
    for role, state in zip((a2, b2, c2), reference):
        role.load_state_dict(state)

    run_to_end({"A": a2, "B": b2, "C": c2}, b2.resume() + c2.resume() + a2.resume())

    assert reference[0]["epoch"] == -1 and reference[0]["cursor"] == 0
    assert np.array_equal(a2.weights, a.weights) and np.array_equal(b2.weights, b.weights)


def test_the_arbiter_snapshot_carries_its_private_key(tiny, keypair):
    _, _, c, _ = build_roles(*tiny, keypair)

    assert c.snapshot["private_key"]["public"]["n"] == format(int(keypair[0].n), "x")
