"""What each role receives, and the label-recovery attack that re-randomisation stops."""

import gmpy2
import numpy as np
import pytest

from vfl.crypto.encoding import decode
from vfl.protocol.messages import (
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedForward,
    EncryptedLoss,
    EncryptedResidual,
    EpochDecision,
    IntVector,
    KeyRequest,
    MaskedGradient,
    PublicKeyMessage,
    ValidationForward,
)

ALLOWED = {
    "A": {PublicKeyMessage, EncryptedResidual, DecryptedMaskedGradient, EpochDecision},
    "B": {PublicKeyMessage, EncryptedForward, ValidationForward, EncryptedResidual, DecryptedMaskedGradient, EpochDecision},
    "C": {KeyRequest, MaskedGradient, EncryptedLoss},
}


def ciphertext_fields(message):
    for name in type(message).model_fields:
        value = getattr(message, name)
        if isinstance(value, CipherVector) or (isinstance(value, IntVector) and name.startswith("masked_enc")):
            yield name, value


def test_each_role_receives_only_ciphertexts_masked_values_or_the_loss(train, breast, public_key):
    X_a, X_b, y = breast
    n, nsq, width = public_key.n, public_key.nsquare, public_key.ciphertext_bytes

    run = train(X_a, X_b, y, epochs=3, batch_size=200, validation_fraction=0.2)

    assert len(run.transcript) > 30
    for envelope in run.transcript:
        message = envelope.message
        assert type(message) in ALLOWED[envelope.recipient], f"{envelope.recipient} got {message.KIND}"
        for name, vector in ciphertext_fields(message):
            for c in vector.unpack(width):
                # A real ciphertext: a unit below n², and not the readable form 1 + m·n.
                assert 0 < c < nsq and gmpy2.gcd(c, n) == 1 and c % n != 1, f"{message.KIND}.{name}"
        if isinstance(message, DecryptedMaskedGradient):
            # The arbiter's answer is masked over all of Z_n: no value is a small number.
            values = message.masked_gradient.unpack((n.bit_length() + 7) // 8)
            assert all(n >> 64 < v < n - (n >> 64) for v in values)
        if isinstance(message, EpochDecision) and envelope.recipient == "A":
            assert message.train_loss is None and message.validation_loss is None  # A learns no loss


def test_the_arbiter_decrypts_only_masked_gradients_and_losses(train, breast, private_key, public_key):
    X_a, X_b, y = breast

    run = train(X_a, X_b, y, epochs=2)

    for envelope in run.transcript:
        if isinstance(envelope.message, MaskedGradient):
            cts = envelope.message.masked_enc_gradient.unpack(public_key.ciphertext_bytes)
            plain = [private_key.raw_decrypt(c) for c in cts]
            # Decrypting what C receives gives uniform residues, never the gradient's small values.
            assert all(public_key.n >> 64 < p < public_key.n - (public_key.n >> 64) for p in plain)
    assert run.c.decryptions == 2 * (10 + 21) + 2  # two epochs: both gradients and the loss, nothing more


def recover_residual_plaintext(forward: EncryptedForward, residual: EncryptedResidual, public_key) -> list:
    """Party A's attack: [[d]] / [[u_A]] = 1 + q·n mod n² when B does not re-randomise."""
    nsq, n = public_key.nsquare, public_key.n
    sent = forward.enc_u.unpack(public_key.ciphertext_bytes)
    got = residual.enc_residual.unpack(public_key.ciphertext_bytes)
    recovered = []
    for c_sent, c_got in zip(sent, got):
        ratio = c_got * gmpy2.invert(c_sent, nsq) % nsq
        recovered.append((ratio - 1) // n if (ratio - 1) % n == 0 else None)
    return recovered


def first_exchange(run):
    forward = next(e.message for e in run.transcript if isinstance(e.message, EncryptedForward))
    residual = next(e.message for e in run.transcript if isinstance(e.message, EncryptedResidual) and e.recipient == "A")
    return forward, residual


def test_label_recovery_attack_fails_against_rerandomised_residuals(train, breast, public_key):
    X_a, X_b, y = breast

    run = train(X_a, X_b, y, epochs=1)
    forward, residual = first_exchange(run)

    assert recover_residual_plaintext(forward, residual, public_key).count(None) == len(y)


def test_without_rerandomisation_the_attack_would_read_every_label(train, breast, public_key, monkeypatch):
    # The control experiment: if B skipped re-randomisation, A would read q = ¼u_B + ½ − y.
    from vfl.crypto.vector import Encryptor

    monkeypatch.setattr(Encryptor, "rerandomize", lambda self, vector: vector)
    X_a, X_b, y = breast

    run = train(X_a, X_b, y, epochs=1)
    forward, residual = first_exchange(run)
    recovered = recover_residual_plaintext(forward, residual, public_key)

    q = decode(recovered, residual.enc_residual.frac_bits, public_key.n)
    labels = (q > 0).astype(float)  # at θ = 0, q = ½ − y
    assert np.array_equal(1 - labels, y)


def all_ciphertexts(transcript, width):
    out = []
    for envelope in transcript:
        if envelope.sender == envelope.recipient:
            continue  # B's copy of the residual it also sends to A: the same message, not a new encryption
        for _, vector in ciphertext_fields(envelope.message):
            out.extend(vector.unpack(width))
    return out


@pytest.mark.parametrize("obfuscation", ["djn", "strict"])
def test_every_ciphertext_of_two_identical_runs_is_fresh(train, breast, public_key, obfuscation):
    # FATE 2.2's coordinated LR drops the obfuscation flag on its tensor path, so two runs of the same
    # job give the same training ciphertexts (and 1 + m·n is readable by anyone). Ours must not.
    X_a, X_b, y = breast
    settings = dict(epochs=2, batch_size=200, obfuscation=obfuscation, validation_fraction=0.2)
    width = public_key.ciphertext_bytes

    first = all_ciphertexts(train(X_a, X_b, y, **settings).transcript, width)
    second = all_ciphertexts(train(X_a, X_b, y, **settings).transcript, width)

    assert len(first) == len(second) > 1000  # vectors and the scalar loss parts alike
    assert len(set(first)) == len(first)  # no ciphertext repeats within a run...
    assert set(first).isdisjoint(second)  # ...or across two runs of the same job
    assert all(c % public_key.n != 1 for c in first + second)  # none of the readable form 1 + m·n
