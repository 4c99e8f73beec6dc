"""One typed message per step of the PSI: RSA blind signatures, or ECDH over X25519 (curve25519).

=================  ======  =========  =============================================
message            sender  recipient  carries
=================  ======  =========  =============================================
PsiPublicKey       A       B          n, e, the job's salt, a proof that x ↦ x^e
                                      is a permutation, |A|, the chunk size,
                                      the bucket size and (K > 1) |A| per bucket,
                                      and the bucket the session starts at
DeclaredSize       B       A          |B| (K > 1: per bucket), before any blinded
                                      value: A signs no more
BlindedChunk       B       A          h(x)·r^e mod n for one chunk of B's IDs
SignedChunk        A       B          (h(x)·r^e)^d mod n for that chunk, same order
KeyHolderTags      A       B          H2(h(x)^d) for one chunk of a bucket of A's
                                      IDs, shuffled
IntersectionTags   B       A          the tags both sides hold in one bucket, sorted
=================  ======  =========  =============================================

The ECDH protocol (:mod:`psi.suites`) has its own first message and its own
three point messages; the declaration and the intersection are shared:

=================  ======  =========  =============================================
message            sender  recipient  carries
=================  ======  =========  =============================================
EcdhPublicInfo     A       B          the group, the job's salt (the hash's DST is
                                      derived from it), |A|, the chunk size, the
                                      bucket sizes and the bucket to start at
DeclaredSize       B       A          as above
MaskedChunk        B       A          b·H(x) for one chunk of B's IDs
RemaskedChunk      A       B          a·(b·H(x)) for that chunk, same order
KeyHolderPoints    A       B          a·H(y) for one chunk of a bucket of A's IDs,
                                      shuffled
IntersectionTags   B       A          the points a·H(y) of A's that matched in one
                                      bucket, sorted (A sent them: it maps them to rows)
=================  ======  =========  =============================================

Points are 32-byte X25519 u-coordinates (canonical, little-endian), packed back to back; every one a
role receives is checked (:func:`psi.ec.check_points`) before use.

Chunk numbers run across all buckets (bucket k's chunks follow bucket k−1's),
so every message of a job has its own address; ``bucket`` names the bucket as
well, and is checked against the chunk number. A resumed alignment is a new
session with a fresh key, started at ``resume_bucket``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from gmpy2 import mpz
from pydantic import Field, NonNegativeInt

from psi.ec import POINT_BYTES
from psi.hashing import TAG_BYTES
from psi.keys import RsaPublicKey
from vfl.crypto.codec import pack_ints
from vfl.errors import PSIError
from vfl.protocol.messages import IntVector, Message, register_message


#: Most buckets a set may be split into (10^9 IDs at the default 10^6 per bucket, with room).
MAX_BUCKETS = 100_000
#: Most values in one chunk (the largest chunk size a key holder may announce).
MAX_CHUNK = 1_000_000


class PsiMessage(Message):
    PROTOCOL: ClassVar[str] = "psi"


def pack_tags(tags: list[bytes]) -> bytes:
    return b"".join(tags)


def unpack_tags(data: bytes, count: int) -> list[bytes]:
    if len(data) != count * TAG_BYTES:
        raise PSIError(f"tag payload has {len(data)} bytes for {count} tags of {TAG_BYTES}")
    return [data[i * TAG_BYTES : (i + 1) * TAG_BYTES] for i in range(count)]


@register_message
class PsiPublicKey(PsiMessage):
    KIND = "psi_public_key"
    STEP = 1
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    n: bytes
    e: int = Field(ge=3)
    salt: bytes = Field(min_length=16, max_length=64)
    size_a: int = Field(ge=0)
    chunk_size: int = Field(ge=1, le=MAX_CHUNK)
    bucket_sizes: list[NonNegativeInt] | None = Field(
        None, max_length=MAX_BUCKETS, description="|A| per bucket; None: one bucket (K = 1)")
    resume_bucket: int = Field(0, ge=0, description="the first bucket this session runs (0 unless resuming)")
    proof: bytes = Field(b"", description="e-th roots of fixed values: the key is a permutation (psi.proof)")

    @classmethod
    def from_key(cls, job_id: str, key: RsaPublicKey, salt: bytes, size_a: int, chunk_size: int,
                 **extra: object) -> PsiPublicKey:
        return cls(job_id=job_id, n=pack_ints([key.n], key.byte_width), e=int(key.e), salt=salt,
                   size_a=size_a, chunk_size=chunk_size, **extra)

    @property
    def sizes(self) -> list[int]:
        """|A| per bucket (one bucket when none are listed)."""
        return [self.size_a] if self.bucket_sizes is None else list(self.bucket_sizes)

    def key(self) -> RsaPublicKey:
        return RsaPublicKey(mpz(int.from_bytes(self.n, "big")), mpz(self.e))


@register_message
class DeclaredSize(PsiMessage):
    """B's set size, sent before anything else.

    It bounds what A signs: A refuses a size above its caps and any blinded
    value beyond it, because each signature tells B whether one more guessed
    ID is in A's set.
    """

    KIND = "psi_declared_size"
    STEP = 2
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    size_b: int = Field(ge=1, le=10**12)
    bucket_sizes: list[NonNegativeInt] | None = Field(None, max_length=MAX_BUCKETS, description="|B| per bucket (K > 1)")

    @property
    def sizes(self) -> list[int]:
        return [self.size_b] if self.bucket_sizes is None else list(self.bucket_sizes)


@register_message
class BlindedChunk(PsiMessage):
    KIND = "psi_blinded_chunk"
    STEP = 2
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    chunk: int = Field(ge=0)
    total_chunks: int = Field(ge=1)
    values: IntVector
    bucket: int = Field(0, ge=0)


@register_message
class SignedChunk(PsiMessage):
    KIND = "psi_signed_chunk"
    STEP = 3
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    chunk: int = Field(ge=0)
    values: IntVector
    bucket: int = Field(0, ge=0)


@register_message
class KeyHolderTags(PsiMessage):
    KIND = "psi_key_holder_tags"
    STEP = 3
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    chunk: int = Field(ge=0)
    total_chunks: int = Field(ge=1)
    count: int = Field(ge=0)
    tags: bytes
    bucket: int = Field(0, ge=0)


@register_message
class IntersectionTags(PsiMessage):
    """The common tags of one bucket; ``chunk`` is the bucket's number (one message per bucket).

    With ECDH the "tags" are the points a·H(y) of A's that matched: A sent
    them, so it can map them to its rows, and they tell A nothing else.
    """

    KIND = "psi_intersection_tags"
    STEP = 4
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    count: int = Field(ge=0)
    tags: bytes
    chunk: int = Field(0, ge=0, description="the bucket")


# -- ECDH (X25519) --------------------------------------------------------------------------------


@register_message
class EcdhPublicInfo(PsiMessage):
    """A's opening of an ECDH PSI: no key (a scalar needs no proof), the salt, the sizes."""

    KIND = "psi_ecdh_public_info"
    STEP = 1
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    group: Literal["x25519"] = Field("x25519", description="the group: X25519 with RFC 9380's "
                                     "curve25519_XMD:SHA-512_ELL2_NU_ hash (peer protocol 1.3.0; ristretto255 before)")
    salt: bytes = Field(min_length=16, max_length=64)
    size_a: int = Field(ge=0)
    chunk_size: int = Field(ge=1, le=MAX_CHUNK)
    bucket_sizes: list[NonNegativeInt] | None = Field(
        None, max_length=MAX_BUCKETS, description="|A| per bucket; None: one bucket (K = 1)")
    resume_bucket: int = Field(0, ge=0, description="the first bucket this session runs (0 unless resuming)")

    @property
    def sizes(self) -> list[int]:
        """|A| per bucket (one bucket when none are listed)."""
        return [self.size_a] if self.bucket_sizes is None else list(self.bucket_sizes)


class PointChunk(PsiMessage):
    """``count`` points of 32 bytes, packed; the roles check the length and every point."""

    chunk: int = Field(ge=0)
    count: int = Field(ge=0, le=MAX_CHUNK)
    points: bytes = Field(max_length=MAX_CHUNK * POINT_BYTES)
    bucket: int = Field(0, ge=0)


@register_message
class MaskedChunk(PointChunk):
    """b·H(x) for one chunk of B's IDs (chunk i: IDs i·c … (i+1)·c − 1 of its bucket, as for RSA)."""

    KIND = "psi_masked_chunk"
    STEP = 2
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    total_chunks: int = Field(ge=1)


@register_message
class RemaskedChunk(PointChunk):
    """a·(b·H(x)) for the masked chunk of the same number, in its order."""

    KIND = "psi_remasked_chunk"
    STEP = 3
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)


@register_message
class KeyHolderPoints(PointChunk):
    """a·H(y) for one chunk of a bucket of A's IDs, shuffled."""

    KIND = "psi_key_holder_points"
    STEP = 3
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)

    total_chunks: int = Field(ge=1)
