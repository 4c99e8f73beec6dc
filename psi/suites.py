"""The protocol-specific math of the PSI, behind one small interface: RSA blind signatures or ECDH.

The roles (:mod:`psi.protocol`) own everything the protocols share: declared
sizes and their caps, public-hash buckets, chunking with global chunk
numbers, the window, per-bucket results and resume, the intersection and the
rows by ID. What differs is only how a value is masked, answered and turned
into a 32-byte tag, and that lives here, in one class per side and protocol:

=====================  ==============================  ==============================
                       RSA (default)                   ECDH (X25519)
=====================  ==============================  ==============================
A's secret, per        RSA key (n, e, d), proved a     clamped X25519 scalar a
session                permutation (:mod:`psi.proof`)  (nothing to prove)
A → B first            ``PsiPublicKey``                ``EcdhPublicInfo``
B → A, per chunk       ``BlindedChunk`` h(x)·r^e       ``MaskedChunk`` b·H(x)
A → B, per chunk       ``SignedChunk`` h(x)^d·r        ``RemaskedChunk`` a·b·H(x)
B's tag of its ID x    H2(h(x)^d)                      H2'(a·b·H(x))
A → B, own IDs y       ``KeyHolderTags`` H2(h(y)^d)    ``KeyHolderPoints`` a·H(y)
B's tag of A's y       the tag itself                  H2'(b·(a·H(y)))
B → A, what matched    the tags                        A's points a·H(y)
=====================  ==============================  ==============================

A holder suite (party A) and a requester suite (party B) each have a handful
of methods the roles call: :meth:`hello` / :meth:`accept` for the first
message, :meth:`own_tasks` and :meth:`own_message` for A's own IDs,
:meth:`answer` for A's reply to a chunk, :meth:`mask`, :meth:`unmask` and
:meth:`own_tags` for B. Every value received is checked here before any
secret touches it; a refusal is a :class:`~vfl.errors.PSIError` naming the
chunk, the value and why.

Why ECDH needs no counterpart of the RSA key proof: every X25519 scalar,
whoever chose it, is a non-zero multiple of the cofactor, so it is a bijection
of the prime-order subgroup (up to sign) and erases any small-order part; a
malicious A cannot make B's masked values lossy (see :mod:`psi.ec`). The
identity, points of small order, twist points and non-canonical encodings are
refused on receipt.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from gmpy2 import mpz

from psi import ec
from psi.keys import RsaPrivateKey, sign_many
from psi.messages import (
    BlindedChunk,
    EcdhPublicInfo,
    KeyHolderPoints,
    KeyHolderTags,
    MaskedChunk,
    PsiPublicKey,
    RemaskedChunk,
    SignedChunk,
    pack_tags,
    unpack_tags,
)
from psi.proof import check_permutation, prove_permutation
from psi.tasks import (
    blind_many,
    checked_tags,
    mask_ids,
    own_tags,
    remask,
    remask_tags,
    unblind_many,
)
from vfl.compute.engine import Engine
from vfl.compute.pool import split_evenly
from vfl.crypto.codec import check_units, pack_ints, unpack_ints
from vfl.errors import CiphertextError, ConfigError, PSIError
from vfl.protocol.messages import IntVector, Message

PsiProtocol = Literal["rsa", "ecdh"]
#: The protocols a role can run; "rsa" is the default everywhere.
PROTOCOLS: tuple[str, ...] = ("rsa", "ecdh")
#: Domain of the points whose e-th roots prove party A's key a permutation (psi.proof).
PROOF_DOMAIN = b"vfl/psi/permutation-proof/v1"
#: The first message of each protocol, to name a mismatch between the two sides.
HELLO_TYPES: dict[type[Message], str] = {PsiPublicKey: "rsa", EcdhPublicInfo: "ecdh"}
#: What the alignment reports as its method.
METHODS = {"rsa": "rsa-blind-signature-psi", "ecdh": "ecdh-x25519-psi"}


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"psi.protocol must be one of {', '.join(repr(p) for p in PROTOCOLS)}, not {protocol!r}")


# -- RSA -------------------------------------------------------------------------------------------


class RsaHolder:
    """Party A's RSA math: the key and salt of this session, signing, own tags."""

    name = "rsa"
    hello_type: type[Message] = PsiPublicKey
    request_type: type[Message] = BlindedChunk
    #: How errors name B's chunks and A's work on them.
    chunk_word, work_word = "blinded chunk", "sign"

    def __init__(self, key: RsaPrivateKey, salt: bytes) -> None:
        self.key = key
        self.salt = salt

    def hello(self, job_id: str, size_a: int, chunk_size: int, **extra: Any) -> Message:
        width = self.key.public.byte_width
        proof = pack_ints(prove_permutation(self.key, self.salt, PROOF_DOMAIN), width)
        return PsiPublicKey.from_key(job_id, self.key.public, self.salt, size_a, chunk_size, proof=proof, **extra)

    def own_tasks(self, ids: list[str], size: int) -> list[tuple]:
        """Engine tasks ``(function, *arguments)`` giving the own tags of ``ids`` in order, ``size`` IDs each."""
        parts = self.key.crt_parts()
        return [(own_tags, ids[i : i + size], self.salt, *parts) for i in range(0, len(ids), size)]

    @staticmethod
    def count(message: Message) -> int:
        return message.values.count

    def answer(self, message: BlindedChunk, engine: Engine) -> Message:
        public = self.key.public
        values = message.values.unpack(public.byte_width)
        try:
            check_units(values, public.n, public.n, "blinded value")
        except CiphertextError as exc:
            raise PSIError(f"party B sent an invalid blinded value: {exc}") from exc
        parts = self.key.crt_parts()
        signatures: list[mpz] = []
        if values:
            pieces = engine.map(sign_many, [(values[s], *parts) for s in split_evenly(len(values), engine.workers)])
            signatures = [s for piece in pieces for s in piece]
        return SignedChunk(job_id=message.job_id, chunk=message.chunk, bucket=message.bucket,
                           values=IntVector.pack(signatures, public.byte_width))

    @staticmethod
    def own_message(job_id: str, chunk: int, bucket: int, total_chunks: int, values: list[bytes]) -> Message:
        return KeyHolderTags(job_id=job_id, chunk=chunk, bucket=bucket, total_chunks=total_chunks,
                             count=len(values), tags=pack_tags(values))


class RsaRequester:
    """Party B's RSA math: checking the key and its proof, blinding, unblinding and verifying."""

    name = "rsa"
    hello_type: type[Message] = PsiPublicKey
    answer_type: type[Message] = SignedChunk
    own_type: type[Message] = KeyHolderTags

    def __init__(self, job_id: str, *, min_key_bits: int, max_key_bits: int | None) -> None:
        self.min_key_bits = min_key_bits
        self.max_key_bits = max_key_bits

    def accept(self, message: PsiPublicKey) -> None:
        key = message.key()
        key.validate(min_bits=self.min_key_bits, max_bits=self.max_key_bits)
        # Before anything is blinded: under a key that is not a permutation, blinding would leak.
        proof = unpack_ints(message.proof, key.byte_width) if len(message.proof) % key.byte_width == 0 else []
        check_permutation(key, message.salt, proof, domain=PROOF_DOMAIN, what="party A's PSI key")
        self.salt = message.salt
        self._n, self._e, self._width = key.n, key.e, key.byte_width

    def mask(self, job_id: str, chunk: int, bucket: int, total_chunks: int, ids: list[str],
             engine: Engine) -> tuple[Message, Any]:
        """h(x)·r^e mod n for one chunk, with a fresh uniform unit r per ID; the state is (r⁻¹, blinded)."""
        inverses: list[mpz] = []
        blinded: list[mpz] = []
        if ids:
            slices = split_evenly(len(ids), engine.workers)
            pieces = engine.map(blind_many, [(ids[s], self.salt, self._n, self._e) for s in slices])
            inverses = [v for piece_inverses, _ in pieces for v in piece_inverses]
            blinded = [v for _, piece_blinded in pieces for v in piece_blinded]
        message = BlindedChunk(job_id=job_id, chunk=chunk, bucket=bucket, total_chunks=total_chunks,
                               values=IntVector.pack(blinded, self._width))
        return message, (inverses, blinded)

    def unmask(self, message: SignedChunk, state: Any, engine: Engine) -> list[bytes]:
        """The tags of a signed chunk, in order; refuses a signature that does not verify."""
        inverses, blinded = state
        signatures = message.values.unpack(self._width)
        if len(signatures) != len(blinded):
            raise PSIError(f"signed chunk {message.chunk} has {len(signatures)} values for {len(blinded)} sent")
        n, e, salt = self._n, self._e, self.salt
        slices = split_evenly(len(blinded), engine.workers) if blinded else []
        pieces = engine.map(unblind_many, [(signatures[s], inverses[s], blinded[s], salt, n, e) for s in slices])
        tags: list[bytes] = []
        for part, piece in zip(slices, pieces):
            if isinstance(piece, int):
                raise PSIError(f"party A's signature {part.start + piece} in chunk {message.chunk} does not verify")
            tags.extend(piece)
        return tags

    @staticmethod
    def own_tags(message: KeyHolderTags, engine: Engine) -> tuple[list[bytes], list[bytes]]:
        """(the tags B compares, what B sends back for those that match): the same tags for RSA."""
        tags = unpack_tags(message.tags, message.count)
        return tags, tags


# -- ECDH ------------------------------------------------------------------------------------------


def check_point_payload(packed: bytes, count: int, what: str) -> None:
    """Refuse a payload that is not exactly ``count`` 32-byte points (the points are checked later)."""
    if len(packed) != count * ec.POINT_BYTES:
        raise PSIError(f"{what} has {len(packed)} bytes for {count} points of {ec.POINT_BYTES}: a point of the "
                       "wrong length, or a truncated or padded payload; refusing it")


def on_points(engine: Engine, task: Any, packed: bytes, count: int, what: str, *args: Any) -> list[Any]:
    """Run ``task(packed slice, *args)`` on the engine, one slice per worker; a None answer means a bad point."""
    if not count:
        return []
    size = ec.POINT_BYTES
    slices = split_evenly(count, engine.workers)
    pieces = engine.map(task, [(packed[s.start * size : s.stop * size], *args) for s in slices])
    if any(piece is None for piece in pieces):
        ec.check_points(ec.unpack_points(packed), what=what)  # raises, naming the first bad point and why
        raise PSIError(f"{what}: a point times the scalar is the identity; refusing it")
    return pieces


class EcdhHolder:
    """Party A's ECDH math: a fresh scalar a and salt per session, a·P for B's points, a·H(y) for its own."""

    name = "ecdh"
    hello_type: type[Message] = EcdhPublicInfo
    request_type: type[Message] = MaskedChunk
    #: How errors name B's chunks and A's work on them.
    chunk_word, work_word = "masked chunk", "remask"

    def __init__(self, job_id: str) -> None:
        ec._sodium()  # a missing or old libsodium is a ConfigError now, not a failure in a worker
        self.key = None
        self.salt = secrets.token_bytes(32)
        self.scalar = ec.new_scalar()
        self.dst = ec.job_dst(job_id, self.salt)

    def hello(self, job_id: str, size_a: int, chunk_size: int, **extra: Any) -> Message:
        return EcdhPublicInfo(job_id=job_id, salt=self.salt, size_a=size_a, chunk_size=chunk_size, **extra)

    def own_tasks(self, ids: list[str], size: int) -> list[tuple]:
        """Engine tasks giving a·H(y) for ``ids`` in order (A's "tags" here are these points)."""
        return [(mask_ids, ids[i : i + size], self.dst, self.scalar) for i in range(0, len(ids), size)]

    @staticmethod
    def count(message: Message) -> int:
        return message.count

    def answer(self, message: MaskedChunk, engine: Engine) -> Message:
        what = f"party B's masked chunk {message.chunk}: point"
        check_point_payload(message.points, message.count, f"party B's masked chunk {message.chunk}")
        pieces = on_points(engine, remask, message.points, message.count, what, self.scalar)
        return RemaskedChunk(job_id=message.job_id, chunk=message.chunk, bucket=message.bucket,
                             count=message.count, points=b"".join(pieces))

    @staticmethod
    def own_message(job_id: str, chunk: int, bucket: int, total_chunks: int, values: list[bytes]) -> Message:
        return KeyHolderPoints(job_id=job_id, chunk=chunk, bucket=bucket, total_chunks=total_chunks,
                               count=len(values), points=ec.pack_points(values))


class EcdhRequester:
    """Party B's ECDH math: a fresh scalar b per session, b·H(x), and the tags of a·b·H(x) and b·(a·H(y))."""

    name = "ecdh"
    hello_type: type[Message] = EcdhPublicInfo
    answer_type: type[Message] = RemaskedChunk
    own_type: type[Message] = KeyHolderPoints

    def __init__(self, job_id: str, **_: Any) -> None:
        ec._sodium()
        self.job_id = job_id
        self.scalar = ec.new_scalar()

    def accept(self, message: EcdhPublicInfo) -> None:
        self.salt = message.salt
        self.dst = ec.job_dst(self.job_id, message.salt)

    def mask(self, job_id: str, chunk: int, bucket: int, total_chunks: int, ids: list[str],
             engine: Engine) -> tuple[Message, Any]:
        """b·H(x) for one chunk of B's IDs; the state is how many points went out."""
        points: list[bytes] = []
        if ids:
            slices = split_evenly(len(ids), engine.workers)
            points = [p for piece in engine.map(mask_ids, [(ids[s], self.dst, self.scalar) for s in slices])
                      for p in piece]
        message = MaskedChunk(job_id=job_id, chunk=chunk, bucket=bucket, total_chunks=total_chunks,
                              count=len(points), points=ec.pack_points(points))
        return message, len(points)

    def unmask(self, message: RemaskedChunk, state: Any, engine: Engine) -> list[bytes]:
        """H2'(a·b·H(x)) for a remasked chunk, in order; every point is checked first."""
        if message.count != state:
            raise PSIError(f"party A's remasked chunk {message.chunk} has {message.count} points for {state} sent")
        check_point_payload(message.points, message.count, f"party A's remasked chunk {message.chunk}")
        what = f"party A's remasked chunk {message.chunk}: point"
        pieces = on_points(engine, checked_tags, message.points, message.count, what, self.salt)
        return [t for piece in pieces for t in piece]

    def own_tags(self, message: KeyHolderPoints, engine: Engine) -> tuple[list[bytes], list[bytes]]:
        """(H2'(b·(a·H(y))) to compare, A's points a·H(y) to send back for those that match)."""
        check_point_payload(message.points, message.count, f"party A's point chunk {message.chunk}")
        what = f"party A's point chunk {message.chunk}: point"
        pieces = on_points(engine, remask_tags, message.points, message.count, what, self.scalar, self.salt)
        return [t for piece in pieces for t in piece], ec.unpack_points(message.points)


def requester_suite(protocol: str, job_id: str, *, min_key_bits: int,
                    max_key_bits: int | None) -> RsaRequester | EcdhRequester:
    check_protocol(protocol)
    cls = RsaRequester if protocol == "rsa" else EcdhRequester
    return cls(job_id, min_key_bits=min_key_bits, max_key_bits=max_key_bits)


__all__ = ["HELLO_TYPES", "METHODS", "PROOF_DOMAIN", "PROTOCOLS", "EcdhHolder", "EcdhRequester", "PsiProtocol",
           "RsaHolder", "RsaRequester", "check_point_payload", "check_protocol", "on_points", "requester_suite"]
