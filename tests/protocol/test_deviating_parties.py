"""A party that changes a few lines of its own role learns nothing the protocol does not give it.

Each attacker here is the stock role with one step changed, as an
organisation could run against the others. The arbiter refuses what it can;
where a deviation cannot be told from honest traffic (a vector of the honest
length), the test measures the bound the README states.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.protocol.conftest import build_roles, key_request
from vfl.crypto.masking import mask
from vfl.crypto.vector import Encryptor
from vfl.errors import ConfigError, KeyMismatch, ReplayError, ScheduleViolation
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import DecryptedMaskedGradient, EncryptedResidual, IntVector, MaskedGradient
from vfl.protocol.feature_party import FeatureParty
from vfl.ml.schedule import gradient_lengths


class ResidualThiefA(FeatureParty):
    """Party A that sends the first ``k`` values of B's residual [[d]], masked, as its "gradient".

    k is A's honest gradient length, so the arbiter cannot tell the vector from a
    real gradient. A then reads k residuals d = c·u_A + q per batch, and from them
    labels (at epoch 0, u = 0 and q = ½ − y exactly).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stolen: dict[int, float] = {}  # row → residual d
        self._pending: tuple[np.ndarray, list] | None = None

    def process(self, message):
        if isinstance(message, EncryptedResidual):
            rows = self.schedule.batch(message.epoch, message.batch)
            enc_d = message.enc_residual.to_vector(self.public_key, expected_count=len(rows), what="[[d]]")
            k = len(self.weights)
            head = enc_d._with(enc_d.ciphertexts[:k])
            masked, masks = mask(head, self.encryptor)
            self._pending = (rows[:k], masks, head.frac_bits)
            self.cursor += 1
            payload = IntVector.pack(masked.ciphertexts, self.public_key.ciphertext_bytes)
            gradient = MaskedGradient(job_id=self.job_id, epoch=message.epoch, batch=message.batch, party="A",
                                      masked_enc_gradient=payload)
            return [self.send("C", gradient)]
        if isinstance(message, DecryptedMaskedGradient) and self._pending is not None:
            from vfl.crypto.masking import unmask

            rows, masks, frac_bits = self._pending
            width = (int(self.public_key.n).bit_length() + 7) // 8
            values = unmask(message.masked_gradient.unpack(width), masks, self.public_key.n, frac_bits)
            self.stolen.update(zip(rows.tolist(), values.tolist()))
            self._pending = None
            self.cursor += 1
            self.finished = True  # its own gradient was never decrypted: it cannot go on training
            return []
        return super().process(message)


@pytest.fixture
def data(rng):
    X_a = rng.normal(size=(120, 3))
    X_b = rng.normal(size=(120, 2))
    y = (X_a[:, 0] - X_b[:, 1] + rng.normal(size=120) > 0).astype(float)
    return X_a, X_b, y


def test_the_arbiter_takes_each_partys_length_from_the_job_not_from_the_party(data, keypair):
    X_a, X_b, y = data
    _, _, c, config = build_roles(X_a, X_b, y, keypair, batch_size=40)
    batch_sized = 40  # what A would declare to pass off B's residual as its gradient

    with pytest.raises(KeyMismatch, match="the job fixes 3"):
        c.handle(key_request(config, "A", batch_sized), "A")
    with pytest.raises(KeyMismatch, match="the job fixes 3"):
        c.handle(key_request(config, "B", 40), "B")  # B's own length is 2 features + the intercept
    assert c.registered == {} and len(c.audit) == 2


def test_a_party_told_other_lengths_than_the_arbiter_is_refused(data, keypair):
    X_a, X_b, y = data
    _, _, c, config = build_roles(X_a, X_b, y, keypair, batch_size=40)

    with pytest.raises(KeyMismatch, match="told the two different jobs"):
        c.handle(key_request(config, "A", 3, job_lengths={"A": 3, "B": 30}), "A")


def test_a_job_whose_lengths_could_hold_a_batch_is_refused(data, keypair):
    X_a, X_b, y = data
    config = build_roles(X_a, X_b, y, keypair, batch_size=40)[3]

    with pytest.raises(ConfigError, match="smallest batch has only 40 rows"):
        Arbiter("job", config, len(y), gradient_lengths={"A": 40, "B": 3}, keypair=keypair, min_key_bits=1024)
    with pytest.raises(ConfigError, match="validation split has only 12 rows"):
        validated = config.model_copy(update={"validation_fraction": 0.1, "batch_size": None})
        Arbiter("job", validated, len(y), gradient_lengths={"A": 12, "B": 3}, keypair=keypair, min_key_bits=1024)


def test_a_residual_shaped_vector_is_refused_as_a_gradient(data, keypair, public_key):
    X_a, X_b, y = data
    _, _, c, config = build_roles(X_a, X_b, y, keypair, batch_size=40)
    c.handle(key_request(config, "A", 3), "A")
    residual_sized = Encryptor(public_key).encrypt(np.zeros(40), 8).ciphertexts

    with pytest.raises(ScheduleViolation, match="registered a gradient of length 3"):
        c.handle(MaskedGradient(job_id="job", epoch=0, batch=0, party="A",
                                masked_enc_gradient=IntVector.pack(residual_sized, public_key.ciphertext_bytes)), "A")
    assert c.decryptions == 0


def test_with_the_honest_length_a_party_reads_at_most_k_residuals_per_batch_and_stops_training(data, keypair):
    X_a, X_b, y = data
    config = build_roles(X_a, X_b, y, keypair, batch_size=40, epochs=3)[3]
    lengths = gradient_lengths(3, 2, config)
    thief = ResidualThiefA("job", config, X_a, min_key_bits=1024, job_lengths=lengths)
    _, b, c, _ = build_roles(X_a, X_b, y, keypair, batch_size=40, epochs=3)
    channel = InMemoryChannel({"A": thief, "B": b, "C": c})

    channel.run(thief.start() + b.start())

    k, rows_per_batch = len(thief.weights), 40
    # The bound: k residuals of one batch (then A's own gradient is refused: its slot is spent).
    assert len(thief.stolen) == k < rows_per_batch
    labels = {row: round(0.5 - d) for row, d in thief.stolen.items()}  # epoch 0: d = ½ − y
    assert all(labels[row] == y[row] for row in labels)
    with pytest.raises(ReplayError, match="already decrypted"):
        c.handle(MaskedGradient(job_id="job", epoch=0, batch=0, party="A",
                                masked_enc_gradient=IntVector.pack([1] * k, keypair[0].ciphertext_bytes)), "A")
    assert c.gradient_cursor["A"] == 1 and not b.done  # training stalled after one batch


def test_a_resume_never_renews_the_decryption_budget(data, keypair, public_key):
    X_a, X_b, y = data
    _, _, c, config = build_roles(X_a, X_b, y, keypair, batch_size=40)
    c.handle(key_request(config, "A", 3), "A")
    before_training = c.snapshot

    def gradient(values) -> MaskedGradient:
        cts = Encryptor(public_key).encrypt(np.asarray(values, dtype=float), 8).ciphertexts
        return MaskedGradient(job_id="job", epoch=0, batch=0, party="A",
                              masked_enc_gradient=IntVector.pack(cts, public_key.ciphertext_bytes))

    first = c.handle(gradient([1.0, 2.0, 3.0]), "A")[0].message.masked_gradient
    c.load_state_dict(before_training)  # a resume rewinds the schedule to the checkpoint
    c.handle(key_request(config, "A", 3), "A")  # a party resumed from before training asks for the key again

    with pytest.raises(ScheduleViolation, match="already decrypted with another value"):
        c.handle(gradient([7.0, 8.0, 9.0]), "A")  # a new vector for the spent slot
    again = c.handle(gradient([1.0, 2.0, 3.0]), "A")[0].message.masked_gradient  # fresh encryption, same value

    assert again.data == first.data
    assert list(c.ledger) == ["gradient/A/0/0"]


def test_masks_are_seeded_so_a_recomputed_step_asks_for_the_same_value(data, keypair):
    X_a, X_b, y = data
    a, _, _, _ = build_roles(X_a, X_b, y, keypair, batch_size=40)
    other, _, _, _ = build_roles(X_a, X_b, y, keypair, batch_size=40)
    other.load_state_dict(a.state_dict())
    from vfl.crypto.masking import seeded_masks

    n = keypair[0].n
    same = seeded_masks(a.mask_seed, "job/A/0/0", n, 3) == seeded_masks(other.mask_seed, "job/A/0/0", n, 3)
    next_step = seeded_masks(a.mask_seed, "job/A/0/1", n, 3)

    assert same and next_step != seeded_masks(a.mask_seed, "job/A/0/0", n, 3)
    assert all(0 <= m < n for m in next_step)
