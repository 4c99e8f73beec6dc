"""Roles take messages in order, hold slightly early ones, and refuse replays."""

import pytest

from tests.protocol.conftest import build_roles
from vfl.errors import OutOfOrderError, ProtocolError, ReplayError, UnknownJobError
from vfl.protocol.channel import InMemoryChannel


def run_until(roles, initial, stop):
    """Deliver envelopes FIFO; return the first one for which ``stop`` is true, undelivered."""
    queue = list(initial)
    while queue:
        envelope = queue.pop(0)
        if stop(envelope):
            return envelope, queue
        queue.extend(roles[envelope.recipient].handle(envelope.message, envelope.sender))
    raise AssertionError("stop condition never met")


def test_early_forward_is_held_until_b_has_the_key(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair, epochs=2)
    roles = {"A": a, "B": b, "C": c}
    key_for_b = None

    # Deliver everything except B's public key first, so A's forward reaches B too early.
    queue = a.start() + b.start()
    held_back = []
    while queue:
        env = queue.pop(0)
        if env.recipient == "B" and env.message.KIND == "public_key" and key_for_b is None:
            key_for_b = env
            continue
        if env.recipient == "B" and env.message.KIND == "encrypted_forward" and key_for_b is not None:
            assert b.handle(env.message, "A") == []  # held, nothing sent yet
            held_back = b.handle(key_for_b.message, "C")  # the key releases it
            break
        queue.extend(roles[env.recipient].handle(env.message, env.sender))

    assert [e.message.KIND for e in held_back] == ["encrypted_residual", "encrypted_residual"]


def test_replayed_and_far_future_messages_are_refused(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair, epochs=3, batch_size=10)
    roles = {"A": a, "B": b, "C": c}
    forward, rest = run_until(roles, a.start() + b.start(), lambda e: e.message.KIND == "encrypted_forward")
    b.handle(forward.message, "A")

    with pytest.raises(ReplayError, match="already handled"):
        b.handle(forward.message, "A")
    far = forward.message.model_copy(update={"epoch": 2})
    with pytest.raises(OutOfOrderError, match="too far ahead"):
        b.handle(far, "A")
    beyond = forward.message.model_copy(update={"batch": 9})
    with pytest.raises(OutOfOrderError, match="only 4 batches"):
        b.handle(beyond, "A")


def test_unknown_job_wrong_recipient_and_wrong_sender(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair)
    roles = {"A": a, "B": b, "C": c}
    forward, _ = run_until(roles, a.start() + b.start(), lambda e: e.message.KIND == "encrypted_forward")

    with pytest.raises(UnknownJobError):
        b.handle(forward.message.model_copy(update={"job_id": "other"}), "A")
    with pytest.raises(ProtocolError, match="not a message party A receives"):
        a.handle(forward.message, "A")
    with pytest.raises(ProtocolError, match="may not send"):
        b.handle(forward.message, "C")


def test_a_full_run_ends_with_every_role_done(tiny, keypair):
    a, b, c, _ = build_roles(*tiny, keypair, epochs=3, batch_size=15)

    InMemoryChannel({"A": a, "B": b, "C": c}).run(a.start() + b.start())

    assert a.done and b.done and c.done
    assert a.epochs_run == b.epochs_run == 3
