"""k feature parties over the in-memory channel: the same algorithm as plain numpy, the loss kept."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TEST_KEY_BITS
from vfl.ml.config import TrainingConfig
from vfl.errors import KeyMismatch, PeerNotAllowed, ProtocolError
from vfl.ml.plaintext import train_plaintext
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import EncryptedForward, EncryptedResidual, EpochDecision, LossShare, MaskedGradient
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.protocol.roster import Roster
from vfl.ml.schedule import gradient_lengths

CONFIGS = {
    "newton-full-batch": dict(epochs=6),
    "adam-minibatch-validation-l2": dict(
        epochs=5, optimizer="adam", batch_size=128, validation_fraction=0.2, l2=0.05, loss_every=2
    ),
    "sgd-momentum-early-stopping": dict(epochs=12, optimizer="sgd", batch_size=100, momentum=0.5,
                                        validation_fraction=0.3, early_stopping_rounds=2, tol=0),
}


def build(parts, X_b, y, keypair, ids=None, **settings):
    config = TrainingConfig(key_bits=TEST_KEY_BITS, **settings)
    roster = Roster.of(ids or [f"h{i}" for i in range(len(parts))], label="bank", arbiter="arb")
    lengths = gradient_lengths({p: x.shape[1] for p, x in zip(roster.features, parts)}, X_b.shape[1], config,
                               label=roster.label)
    features = [FeatureParty("job", config, x, roster=roster, party=p, min_key_bits=TEST_KEY_BITS, job_lengths=lengths)
                for p, x in zip(roster.features, parts)]
    b = LabelParty("job", config, X_b, y, roster=roster, min_key_bits=TEST_KEY_BITS, job_lengths=lengths)
    c = Arbiter("job", config, len(y), gradient_lengths=lengths, keypair=keypair, min_key_bits=TEST_KEY_BITS,
                roster=roster)
    return roster, features, b, c, config


def run(roster, features, b, c):
    transcript = []
    roles = {**{f.party: f for f in features}, roster.label: b, roster.arbiter: c}
    channel = InMemoryChannel(roles, transcript=transcript)
    channel.run([e for f in features for e in f.start()] + b.start())
    return transcript


def split(X, k):
    return np.array_split(X, k, axis=1)


@pytest.mark.parametrize("settings", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_k_party_weights_and_losses_match_plain_numpy(breast, diabetes, keypair, model, k, settings):
    X_a, X_b, y = breast if model == "logistic" else diabetes
    roster, features, b, c, config = build(split(X_a, k), X_b, y, keypair, model=model, **settings)

    run(roster, features, b, c)

    reference = train_plaintext([f.design for f in features], b.design[:, :-1], b.labels, config, model_rounding=True)
    assert b.epochs_run == reference.epochs_run and all(f.epochs_run == b.epochs_run for f in features)
    assert b.stop_reason == reference.stop_reason
    for party, expected in zip(features, reference.weights_parts):
        assert np.allclose(party.weights, expected, atol=1e-8, rtol=0)
    assert np.allclose(b.weights, reference.weights_b, atol=1e-8, rtol=0)
    assert len(b.train_losses) == reference.epochs_run
    assert np.allclose(b.train_losses, reference.train_losses, atol=1e-9, rtol=0)
    assert np.allclose(b.validation_losses, reference.validation_losses, atol=1e-9, rtol=0)


def test_the_feature_parties_share_one_copy_of_the_residual_unlinked_to_b_s(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, _ = build(split(X_a, 3), X_b, y, keypair, epochs=1, batch_size=200)

    transcript = run(roster, features, b, c)

    first = [e for e in transcript if isinstance(e.message, EncryptedResidual) and (e.message.epoch, e.message.batch) == (0, 0)]
    recipients = [e.recipient for e in first]
    assert sorted(recipients) == sorted([*roster.features, roster.label])
    to_features = {e.message.enc_residual.data for e in first if e.recipient != roster.label}
    own = [e.message.enc_residual.data for e in first if e.recipient == roster.label]
    assert len(to_features) == 1  # one re-randomisation per batch, whatever k
    assert own[0] not in to_features  # fresh randomness: no feature party holds B's own ciphertexts


def test_loss_shares_go_to_b_only_and_gradients_to_c_only(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, config = build(split(X_a, 2), X_b, y, keypair, epochs=2, batch_size=200,
                                           validation_fraction=0.2)

    transcript = run(roster, features, b, c)

    shares = [e for e in transcript if isinstance(e.message, LossShare)]
    assert shares and all(e.recipient == roster.label for e in shares)
    assert all(e.recipient == roster.arbiter for e in transcript if isinstance(e.message, MaskedGradient))
    losses_to_features = [e.message.train_loss for e in transcript
                          if isinstance(e.message, EpochDecision) and e.recipient in roster.features]
    assert losses_to_features and all(loss is None for loss in losses_to_features)
    # Each share is one ciphertext; per epoch one per party and loss-due batch, plus one for validation.
    due = sum(b.schedule.loss_due(i) for i in range(b.schedule.batches_per_epoch))
    assert len(shares) == 2 * 2 * (due + 1)
    # C decrypts exactly one gradient per party per batch and the losses, nothing more.
    nb = b.schedule.batches_per_epoch
    lengths = sum(f.design.shape[1] for f in features) + b.design.shape[1]
    assert c.decryptions == 2 * (nb * lengths + due + 1)


def test_a_feature_party_cannot_send_as_another(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, _ = build(split(X_a, 2), X_b, y, keypair, epochs=1)
    run(roster, features[:0], b, c)  # B has its key now
    first = features[0]
    first.public_key = b.public_key
    from vfl.crypto.vector import Encryptor

    first.encryptor = Encryptor(b.public_key)
    forward = first._forward(0, 0).message

    with pytest.raises(PeerNotAllowed, match="claiming to be"):
        b.handle(forward, sender=roster.features[1])
    with pytest.raises(PeerNotAllowed, match="not a party"):
        b.handle(forward, sender="stranger")


def test_a_forward_naming_an_unknown_party_is_refused(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, _ = build(split(X_a, 2), X_b, y, keypair, epochs=1)
    run(roster, features[:0], b, c)
    forward = EncryptedForward(job_id="job", epoch=0, batch=0, party="h9",
                               enc_u=_cipher(b, len(y)))

    with pytest.raises(ProtocolError, match="not a feature party"):
        b.handle(forward)


def _cipher(b, rows):
    from vfl.crypto.vector import Encryptor
    from vfl.protocol.messages import CipherVector

    return CipherVector.from_vector(Encryptor(b.public_key).encrypt(np.zeros(rows), 32))


def test_one_feature_party_keeps_the_two_party_messages(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, _ = build([X_a], X_b, y, keypair, epochs=2, validation_fraction=0.2)

    transcript = run(roster, features, b, c)

    assert not any(isinstance(e.message, LossShare) for e in transcript)
    assert all(e.message.enc_loss_part is not None for e in transcript if isinstance(e.message, EncryptedForward))


def test_a_feature_party_vouches_for_its_own_and_b_s_lengths_only(breast, keypair):
    X_a, X_b, y = breast
    parts = split(X_a, 3)
    roster, _, _, c, config = build(parts, X_b, y, keypair)
    lengths = c.gradient_lengths
    h0, h1 = roster.features[0], roster.features[1]
    told = {h0: lengths[h0], roster.label: lengths[roster.label]}  # what h0 registered: never h1's count
    h0_alone = FeatureParty("job", config, parts[0], roster=roster, party=h0, min_key_bits=TEST_KEY_BITS,
                            job_lengths=told)
    request = h0_alone.start()[0].message

    answer = c.handle(request)
    lied_about_b = request.model_copy(update={"job_lengths": {**told, roster.label: lengths[roster.label] + 5}})
    silent_about_b = request.model_copy(update={"job_lengths": {h0: lengths[h0]}})
    lied_about_h1 = request.model_copy(update={"job_lengths": {**told, h1: lengths[h1] + 1}})

    assert [e.recipient for e in answer] == [h0]  # accepted: the public key goes back to h0
    for refused in (lied_about_b, silent_about_b, lied_about_h1):
        with pytest.raises(KeyMismatch, match="party B told the two different jobs"):
            Arbiter("job", config, len(y), gradient_lengths=lengths, keypair=keypair, min_key_bits=TEST_KEY_BITS,
                    roster=roster).handle(refused)
