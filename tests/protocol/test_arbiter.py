"""The arbiter decrypts only what the schedule allows and records every refusal."""

import numpy as np
import pytest

from tests.protocol.conftest import build_roles, key_request
from vfl.crypto.vector import Encryptor
from vfl.errors import KeyMismatch, PeerNotAllowed, ReplayError, ScheduleViolation
from vfl.protocol.messages import CipherVector, EncryptedLoss, IntVector, MaskedGradient


@pytest.fixture
def arbiter(tiny, keypair):
    X_a, X_b, y = tiny
    _, _, c, _ = build_roles(X_a, X_b, y, keypair, batch_size=20, loss_every=2)
    c.handle(key_request(c.config, "A", 2), "A")
    c.handle(key_request(c.config, "B", 4), "B")
    return c


def gradient(public_key, party, n, epoch=0, batch=0):
    cts = Encryptor(public_key).encrypt(np.zeros(n), 8).ciphertexts
    payload = IntVector.pack(cts, public_key.ciphertext_bytes)
    return MaskedGradient(job_id="job", epoch=epoch, batch=batch, party=party, masked_enc_gradient=payload)


def loss(public_key, batch, rows=20, split="train", epoch=0):
    enc = CipherVector.from_vector(Encryptor(public_key).encrypt(np.array([5.0]), 16))
    return EncryptedLoss(job_id="job", epoch=epoch, batch=batch, split=split, rows=rows, enc_loss=enc)


def test_one_gradient_per_party_per_batch(arbiter, public_key):
    arbiter.handle(gradient(public_key, "A", 2), "A")

    with pytest.raises(ReplayError, match="already decrypted"):
        arbiter.handle(gradient(public_key, "A", 2), "A")
    assert "refused masked_gradient" in arbiter.audit[-1]


def test_gradient_of_the_wrong_length_is_refused(arbiter, public_key):
    with pytest.raises(ScheduleViolation, match="registered a gradient of length 4"):
        arbiter.handle(gradient(public_key, "B", 5), "B")


def test_b_cannot_use_the_arbiter_to_decrypt_a_forward_vector(arbiter, public_key):
    # [[u_A]] has one element per row (20); B registered 4 gradient values.
    forward_sized = gradient(public_key, "B", 20)

    with pytest.raises(ScheduleViolation):
        arbiter.handle(forward_sized, "B")
    assert arbiter.decryptions == 0


def test_skipping_ahead_or_into_an_unopened_epoch_is_refused(arbiter, public_key):
    with pytest.raises(ScheduleViolation, match="skips ahead"):
        arbiter.handle(gradient(public_key, "A", 2, batch=1), "A")
    with pytest.raises(ScheduleViolation, match="skips ahead|not open"):
        arbiter.handle(gradient(public_key, "A", 2, epoch=1), "A")


def test_gradient_before_registration_is_refused(tiny, keypair, public_key):
    X_a, X_b, y = tiny
    _, _, c, _ = build_roles(X_a, X_b, y, keypair)

    with pytest.raises(ScheduleViolation, match="before registering"):
        c.handle(gradient(public_key, "A", 2), "A")


def test_loss_only_where_due_and_only_once(arbiter, public_key):
    # loss_every=2 with two batches: the loss is due on batch 1 only.
    with pytest.raises(ScheduleViolation, match="no train loss is due"):
        arbiter.handle(loss(public_key, batch=0), "B")
    with pytest.raises(ScheduleViolation, match="rows"):
        arbiter.handle(loss(public_key, batch=1, rows=7), "B")

    replies = arbiter.handle(loss(public_key, batch=1), "B")

    assert {e.recipient for e in replies} == {"A", "B"}  # the epoch closed: a decision for each party
    with pytest.raises(ReplayError):
        arbiter.handle(loss(public_key, batch=1), "B")


def test_party_a_cannot_send_a_loss_or_pose_as_b(arbiter, public_key):
    with pytest.raises(PeerNotAllowed, match="may not send"):
        arbiter.handle(loss(public_key, batch=1), "A")
    with pytest.raises(PeerNotAllowed, match="claiming to be party B"):
        arbiter.handle(gradient(public_key, "B", 4), "A")


def test_registration_is_idempotent_but_cannot_change_the_jobs_length(arbiter):
    again = arbiter.handle(key_request(arbiter.config, "A", 2), "A")

    assert again[0].message.to_key() == arbiter.public_key
    with pytest.raises(KeyMismatch, match="the job fixes 2"):
        arbiter.handle(key_request(arbiter.config, "A", 3), "A")


@pytest.mark.parametrize(
    "change, problem",
    [({"model": "linear"}, "trains a linear model"), ({"key_bits": 2048}, "2048-bit keys"),
     ({"config_digest": "0" * 16}, "config differs")],
    ids=["model", "key-size", "other-setting"],
)
def test_the_arbiter_refuses_a_party_that_runs_a_different_config(tiny, keypair, change, problem):
    _, _, c, _ = build_roles(*tiny, keypair)

    with pytest.raises(KeyMismatch, match=problem):
        c.handle(key_request(c.config, "A", 2, **change), "A")
    assert c.registered == {}


def test_a_party_refuses_an_arbiter_key_of_the_wrong_size(tiny, keypair):
    from vfl.crypto.keys import generate_keypair
    from vfl.protocol.messages import PublicKeyMessage

    a, _, _, _ = build_roles(*tiny, keypair)  # the job asks for 1024-bit keys
    bigger, _ = generate_keypair(1536, min_bits=1024)

    with pytest.raises(KeyMismatch, match="1536 bits but the job asks for 1024"):
        a.handle(PublicKeyMessage.from_key("job", bigger), "C")


def test_the_arbiter_is_done_only_once_every_last_gradient_is_answered(tiny, keypair):
    """Without a validation split B's last loss can overtake A's last gradient on the way to C."""
    X_a, X_b, y = tiny
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, epochs=1)
    roles = {"A": a, "B": b, "C": c}
    queue, held = a.start() + b.start(), []
    while queue:
        envelope = queue.pop(0)
        if isinstance(envelope.message, MaskedGradient) and envelope.sender == "A" and not held:
            held.append(envelope)  # A's last gradient is delayed
            continue
        queue.extend(roles[envelope.recipient].handle(envelope.message, envelope.sender))
    assert c.finished and not c.done

    answer = c.handle(held[0].message, "A")

    assert c.done and len(answer) == 1
