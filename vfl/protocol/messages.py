"""One typed message per protocol step.

Every message names its job and, where it belongs to a batch, the epoch and
batch it is for; ``STEP`` gives its step of the four-step protocol and
``SENDERS`` / ``RECIPIENTS`` the roles allowed to send and receive it, which
the services enforce against the caller's certificate. ``END_OF_EPOCH`` (−1)
is the batch number of messages that close an epoch (validation, decision).

Ciphertext vectors travel as :class:`CipherVector`: fixed-width big-endian
bytes plus their count and fixed-point scale (see :mod:`vfl.protocol.wire` for
the frame). Nothing here computes; the roles do.

=========================  ======  =============  ==========  ===============================
message                    step    sender         recipient   carries
=========================  ======  =============  ==========  ===============================
KeyRequest                 1       feature, B     C           gradient length to register
PublicKeyMessage           1       C              feature, B  n and the DJN base hs
EncryptedForward           2       feature h      B           [[u_h]] (k = 1: + [[loss part]])
EncryptedResidual          2       B              feature, B  [[d]], re-randomised per party
LossShare                  3       feature h      B           [[½u_hᵀd + n·λ/2‖θ_h‖²]] (k > 1)
MaskedGradient             3       feature, B     C           [[g + R]]
EncryptedLoss              3       B              C           [[n·loss]] of a batch
DecryptedMaskedGradient    4       C              feature, B  g + R mod n
ValidationForward          2       feature h      B           [[u_h]] on validation rows
ShuffledScores             2       B              C           [[u]] of a batch, shuffled, packed (exact loss)
ShuffledSigmoids           2       C              B           [[σ(u)]], same order (+ [[Σ softplus(u)]])
EpochDecision              4       C              feature, B  loss (B only), stop or go on
ScoreRequest               –       B              feature     IDs to score
PartialScores              –       feature        B           plaintext u_h for those IDs
=========================  ======  =============  ==========  ===============================

Senders and recipients are roles ("feature", "label" = B, "arbiter" = C);
messages that carry a ``party`` field name the sender's (or recipient's) id,
which the services check against the caller's certificate.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from gmpy2 import mpz
from pydantic import BaseModel, ConfigDict, Field

from vfl.crypto.codec import byte_width, pack_ints, unpack_ints
from vfl.crypto.keys import PublicKey
from vfl.crypto.vector import EncryptedVector
from vfl.errors import ProtocolError
from vfl.protocol.roster import PARTY_ID_PATTERN, RoleKind

#: A party's id in the job (see :class:`~vfl.protocol.roster.Roster`).
Party = str
END_OF_EPOCH = -1
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class IntVector(BaseModel):
    """Non-negative big integers packed as fixed-width big-endian bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    count: int = Field(ge=0, le=10_000_000)
    data: bytes

    @classmethod
    def pack(cls, values: list[mpz] | tuple[mpz, ...], width: int) -> IntVector:
        return cls(count=len(values), data=pack_ints(values, width))

    def unpack(self, width: int) -> list[mpz]:
        return unpack_ints(self.data, width, self.count)


class CipherVector(IntVector):
    """An encrypted vector on the wire: ciphertexts plus their fixed-point scale."""

    frac_bits: int = Field(ge=0, le=512)

    @classmethod
    def from_vector(cls, vector: EncryptedVector) -> CipherVector:
        return cls(count=len(vector), data=vector.to_bytes(), frac_bits=vector.frac_bits)

    def to_vector(self, public_key: PublicKey, *, expected_count: int | None = None, what: str) -> EncryptedVector:
        """Parse and check the ciphertexts; a wrong length is a protocol error naming ``what``."""
        if expected_count is not None and self.count != expected_count:
            raise ProtocolError(f"{what} has {self.count} elements; the schedule expects {expected_count}")
        return EncryptedVector.from_bytes(public_key, self.data, self.frac_bits, self.count)


class Message(BaseModel):
    """Base of every protocol message."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    KIND: ClassVar[str]
    STEP: ClassVar[int]
    SENDERS: ClassVar[tuple[RoleKind, ...]]
    RECIPIENTS: ClassVar[tuple[RoleKind, ...]]
    #: Name of a field that states who sent the message, checked against the transport's sender.
    SENDER_FIELD: ClassVar[str | None] = None
    #: Which sub-protocol the message belongs to: "train" here, "psi" for alignment.
    PROTOCOL: ClassVar[str] = "train"

    job_id: str = Field(pattern=JOB_ID_PATTERN)

    def address(self) -> str:
        """Human-readable address for errors and logs."""
        epoch = getattr(self, "epoch", None)
        batch = getattr(self, "batch", None)
        where = "" if epoch is None else f" epoch {epoch}" + ("" if batch in (None, END_OF_EPOCH) else f" batch {batch}")
        return f"{self.KIND} (job {self.job_id}{where})"


class Batched(Message):
    epoch: int = Field(ge=0)
    batch: int = Field(ge=END_OF_EPOCH)


class KeyRequest(Message):
    KIND = "key_request"
    STEP = 1
    SENDERS = ("feature", "label")
    RECIPIENTS = ("arbiter",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    n_params: int = Field(ge=1, le=1_000_000, description="length of the gradient this party will send")
    model: str = Field(description="the model this party trains (logistic or linear)")
    key_bits: int = Field(ge=512, description="the Paillier key size this party expects")
    config_digest: str = Field(description="fingerprint of this party's whole training config")
    job_lengths: dict[str, int] | None = Field(
        None, description="the gradient lengths this party was told at registration: its own and party B's "
        "(party B: every party's)")


class PublicKeyMessage(Message):
    KIND = "public_key"
    STEP = 1
    SENDERS = ("arbiter",)
    RECIPIENTS = ("feature", "label")

    n: bytes
    hs: bytes

    @classmethod
    def from_key(cls, job_id: str, key: PublicKey) -> PublicKeyMessage:
        width = byte_width(key.nsquare)
        return cls(job_id=job_id, n=pack_ints([key.n], byte_width(key.n + 1)), hs=pack_ints([key.hs], width))

    def to_key(self) -> PublicKey:
        return PublicKey(n=mpz(int.from_bytes(self.n, "big")), hs=mpz(int.from_bytes(self.hs, "big")))


class EncryptedForward(Batched):
    KIND = "encrypted_forward"
    STEP = 2
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    enc_u: CipherVector
    #: With one feature party, when the loss is due: [[(c/2)Σu_A² + n·λ/2‖θ_A‖²]].
    #: With more, the loss comes from :class:`LossShare` instead.
    enc_loss_part: CipherVector | None = None


class ValidationForward(Batched):
    KIND = "validation_forward"
    STEP = 2
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    enc_u: CipherVector
    enc_loss_part: CipherVector | None = None  # one feature party only, as in EncryptedForward


class EncryptedResidual(Batched):
    """[[d]] for a batch (or, with several feature parties, for the validation rows: batch −1)."""

    KIND = "encrypted_residual"
    STEP = 2
    SENDERS = ("label",)
    RECIPIENTS = ("feature", "label")

    enc_residual: CipherVector


class LossShare(Batched):
    """Feature party h → B, with several feature parties: [[½·u_hᵀd + n·λ/2‖θ_h‖²]], one ciphertext.

    Σ_h u_hᵀd = c·U·U + q·U, so B gets the loss's cross terms u_h·u_h′ it cannot form
    itself. The fresh encryption of the penalty re-randomises the share: B made [[d]]
    and knows its ciphertexts, so an un-randomised product would let it test guesses of u_h.
    """

    KIND = "loss_share"
    STEP = 3
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    enc_share: CipherVector


class MaskedGradient(Batched):
    KIND = "masked_gradient"
    STEP = 3
    SENDERS = ("feature", "label")
    RECIPIENTS = ("arbiter",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    masked_enc_gradient: IntVector


class EncryptedLoss(Batched):
    KIND = "encrypted_loss"
    STEP = 3
    SENDERS = ("label",)
    RECIPIENTS = ("arbiter",)

    split: Literal["train", "validation"]
    rows: int = Field(ge=1)
    enc_loss: CipherVector


class ShuffledScores(Batched):
    """B → C, with ``loss = "exact"`` only: a batch's ``rows`` scores [[u]] in an order secret to B.

    The scores travel packed, many per ciphertext (:mod:`vfl.crypto.packing`, the layout fixed by
    the key size and ``enc_scores.frac_bits``), so that C decrypts a batch in a few dozen
    decryptions instead of one per row. ``with_loss``: the loss is due for this batch (or it is
    the validation rows), so C also returns Σ softplus(u). C checks both against its own schedule.
    """

    KIND = "shuffled_scores"
    STEP = 2
    SENDERS = ("label",)
    RECIPIENTS = ("arbiter",)

    rows: int = Field(ge=1)
    with_loss: bool
    enc_scores: CipherVector


class ShuffledSigmoids(Batched):
    """C → B: [[σ(u)]] for each score of :class:`ShuffledScores`, freshly encrypted, in the same order;
    [[Σ softplus(u)]] (one value) when the loss is due."""

    KIND = "shuffled_sigmoids"
    STEP = 2
    SENDERS = ("arbiter",)
    RECIPIENTS = ("label",)

    enc_sigmoid: CipherVector
    enc_softplus_sum: CipherVector | None


class DecryptedMaskedGradient(Batched):
    KIND = "decrypted_masked_gradient"
    STEP = 4
    SENDERS = ("arbiter",)
    RECIPIENTS = ("feature", "label")

    party: str = Field(pattern=PARTY_ID_PATTERN)
    masked_gradient: IntVector


class EpochDecision(Batched):
    KIND = "epoch_decision"
    STEP = 4
    SENDERS = ("arbiter",)
    RECIPIENTS = ("feature", "label")

    train_loss: float | None  # only in B's copy
    validation_loss: float | None
    stop: bool
    reason: str | None
    improved: bool
    best_epoch: int


class ScoreRequest(Message):
    KIND = "score_request"
    STEP = 0
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    request_id: str = Field(pattern=JOB_ID_PATTERN)
    ids: list[str] = Field(max_length=1_000_000)


class PartialScores(Message):
    KIND = "partial_scores"
    STEP = 0
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    request_id: str = Field(pattern=JOB_ID_PATTERN)
    u_a: list[float]

    def values(self) -> np.ndarray:
        return np.asarray(self.u_a, dtype=np.float64)


def register_message(cls: type[Message]) -> type[Message]:
    """Make a message class known to the wire codec (used by sub-protocols such as PSI)."""
    if cls.KIND in MESSAGE_TYPES and MESSAGE_TYPES[cls.KIND] is not cls:
        raise ValueError(f"two message classes share the kind {cls.KIND!r}")
    MESSAGE_TYPES[cls.KIND] = cls
    return cls


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (
        KeyRequest,
        PublicKeyMessage,
        EncryptedForward,
        ValidationForward,
        EncryptedResidual,
        LossShare,
        MaskedGradient,
        EncryptedLoss,
        ShuffledScores,
        ShuffledSigmoids,
        DecryptedMaskedGradient,
        EpochDecision,
        ScoreRequest,
        PartialScores,
    )
}
