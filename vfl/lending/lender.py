"""A lender's side: its key, its published tag set, and blind signing (no I/O).

A :class:`LenderKey` is the private part (RSA key, salt, epoch, when it was
published and when it rotates); a :class:`TagSet` is what any allowed querier
may fetch: the public key, the salt, the key id and the shuffled tags
H2(FDH(x)^d) of the current borrowers. :func:`publish` makes both from a list
of borrower IDs; :func:`sign_blinded` answers a blind query under the current
key only.

The key id is a hash of (n, salt, epoch), so a querier can tell a tag set's
key from another's and check that the key id it was given belongs to the key.
A rotation makes a new key, salt and id: the tags published under the old key
match nothing signed under the new one, and the lender refuses to sign under
the old id (:class:`StaleKey`), so a querier's cached set stops answering as
soon as the key rotates.

A tag set also carries e-th roots of 8 values fixed by (n, salt): the querier
checks them (:func:`psi.proof.check_permutation`) before it blinds anything under the
key, so a lender cannot pick a key under which blinding leaks the ID.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gmpy2
from gmpy2 import mpz

from psi.hashing import TAG_BYTES
from psi.keys import DEFAULT_PRIMES, RsaPrivateKey, RsaPublicKey, generate_rsa_key, sign_many
from psi.proof import check_permutation, prove_permutation
from psi.protocol import OWN_TASK_IDS, own_tags
from vfl.compute.engine import Engine, as_engine
from vfl.errors import ProtocolError, PSIError, StaleKey

KEY_ID_DOMAIN = b"vfl/lending/key-id/v1"
PROOF_DOMAIN = b"vfl/lending/permutation-proof/v1"
SALT_BYTES = 32


def key_id_of(n: mpz, salt: bytes, epoch: int) -> str:
    """The public name of a key: 16 hex digits of SHA-256 over (domain, n, salt, epoch)."""
    width = (int(n.bit_length()) + 7) // 8
    digest = hashlib.sha256(KEY_ID_DOMAIN + int(n).to_bytes(width, "big") + salt + int(epoch).to_bytes(8, "big"))
    return digest.hexdigest()[:16]


def borrowers_digest(ids: Iterable[str]) -> str:
    """SHA-256 of the distinct IDs, sorted: the same list in another order or with repeats has the same digest."""
    h = hashlib.sha256()
    for x in sorted(set(ids)):
        data = x.encode("utf-8")
        h.update(len(data).to_bytes(4, "big") + data)
    return h.hexdigest()


@dataclass(frozen=True)
class TagSet:
    """What a lender publishes: the key, the salt and the shuffled tags of its borrowers (32 bytes each)."""

    key_id: str
    epoch: int
    public: RsaPublicKey
    salt: bytes
    tags: bytes
    published_at: float
    rotates_at: float
    proof: tuple[mpz, ...] = ()  # e-th roots of psi.proof.proof_points(n, salt, PROOF_DOMAIN)

    @property
    def size(self) -> int:
        return len(self.tags) // TAG_BYTES

    def tag_list(self) -> list[bytes]:
        return [self.tags[i : i + TAG_BYTES] for i in range(0, len(self.tags), TAG_BYTES)]

    def summary(self) -> dict[str, Any]:
        """Everything but the tags (for status pages and logs)."""
        return {"key_id": self.key_id, "epoch": self.epoch, "key_bits": self.public.bits, "size": self.size,
                "published_at": self.published_at, "rotates_at": self.rotates_at}

    def to_public(self) -> dict[str, Any]:
        """The JSON a querier fetches: key id, epoch, n, e, salt, size, times, and the tags in base64."""
        return {**self.summary(), "n": format(int(self.public.n), "x"), "e": int(self.public.e),
                "salt": self.salt.hex(), "proof": [format(int(v), "x") for v in self.proof],
                "tags": base64.b64encode(self.tags).decode("ascii")}

    @classmethod
    def from_public(cls, data: Any, *, min_key_bits: int, max_key_bits: int | None = None, max_tags: int | None = None,
                    source: str = "the lender") -> TagSet:
        """Read and check a fetched tag set; anything malformed or inconsistent raises PSIError naming it.

        ``max_key_bits`` and ``max_tags`` bound what the set costs the querier: an exponentiation per ID
        under the key, memory per tag.
        """
        if not isinstance(data, dict):
            raise PSIError(f"{source}'s tag set is not a JSON object")
        try:
            key_id, epoch, size = str(data["key_id"]), data["epoch"], data["size"]
            n, e = mpz(int(str(data["n"]), 16)), mpz(int(data["e"]))
            salt = bytes.fromhex(str(data["salt"]))
            tags = base64.b64decode(str(data["tags"]), validate=True)
            published_at, rotates_at = float(data["published_at"]), float(data["rotates_at"])
            proof = tuple(mpz(int(str(v), 16)) for v in data["proof"])
        except KeyError as exc:
            raise PSIError(f"{source}'s tag set has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:  # binascii.Error is a ValueError
            raise PSIError(f"{source}'s tag set is malformed ({exc})") from None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise PSIError(f"{source}'s tag set has epoch {epoch!r}; expected a non-negative integer")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or len(tags) != size * TAG_BYTES:
            raise PSIError(f"{source}'s tag set declares {size!r} tags but holds {len(tags)} bytes "
                           f"({TAG_BYTES} per tag)")
        if max_tags is not None and size > max_tags:
            raise PSIError(f"{source}'s tag set holds {size} tags; at most {max_tags} are accepted here "
                           "(lending.max_tag_set_size)")
        if not 16 <= len(salt) <= 64:
            raise PSIError(f"{source}'s tag set has a {len(salt)}-byte salt; expected 16 to 64 bytes")
        public = RsaPublicKey(n, e)
        public.validate(min_bits=min_key_bits, max_bits=max_key_bits)
        if key_id != key_id_of(n, salt, epoch):
            raise PSIError(f"{source}'s tag set names key {key_id!r}, which is not the id of the key it holds")
        if not rotates_at > published_at:
            raise PSIError(f"{source}'s tag set rotates before it was published")
        check_permutation(public, salt, proof, domain=PROOF_DOMAIN, what=f"{source}'s tag set")
        return cls(key_id, epoch, public, salt, tags, published_at, rotates_at, proof)


@dataclass(frozen=True)
class LenderKey:
    """The lender's secret side of one tag set: never leaves the lender (0600 in its data_dir)."""

    private: RsaPrivateKey
    salt: bytes
    epoch: int
    published_at: float
    rotates_at: float
    borrowers: str  # borrowers_digest of the list the tags were made from

    @property
    def key_id(self) -> str:
        return key_id_of(self.private.public.n, self.salt, self.epoch)

    def tag_set(self, tags: bytes) -> TagSet:
        """The public side, with the proof that the key is a permutation (8 signatures, each verified)."""
        proof = tuple(prove_permutation(self.private, self.salt, PROOF_DOMAIN))
        return TagSet(self.key_id, self.epoch, self.private.public, self.salt, tags, self.published_at,
                      self.rotates_at, proof)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.private.to_dict(), "salt": self.salt.hex(), "epoch": self.epoch,
                "published_at": self.published_at, "rotates_at": self.rotates_at, "borrowers": self.borrowers}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LenderKey:
        """Read a key written by :meth:`to_dict`; PSIError unless it is whole and consistent."""
        try:
            return cls(RsaPrivateKey.from_dict(data["key"]), bytes.fromhex(data["salt"]), int(data["epoch"]),
                       float(data["published_at"]), float(data["rotates_at"]), str(data["borrowers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PSIError(f"the stored lending key is unreadable: {exc!r}") from None


def publish(
    ids: Iterable[str],
    *,
    epoch: int,
    now: float,
    rotate_every: float,
    key_bits: int = 2048,
    min_key_bits: int = 2048,
    primes: int = DEFAULT_PRIMES,
    engine: Engine | int | None = None,
    key: RsaPrivateKey | None = None,
) -> tuple[LenderKey, TagSet]:
    """A fresh key and the shuffled tag set of the distinct ``ids``: one signature per borrower.

    The signatures are not checked (s^e = y): only their H2 hash leaves the
    lender, which reveals nothing about n even if a computation was faulty.
    """
    distinct = sorted(set(ids))
    private = key or generate_rsa_key(key_bits, min_bits=min_key_bits, primes=primes)
    salt = secrets.token_bytes(SALT_BYTES)
    parts = private.crt_parts()
    chunks = [(distinct[i : i + OWN_TASK_IDS], salt, *parts) for i in range(0, len(distinct), OWN_TASK_IDS)]
    pieces = as_engine(engine).map(own_tags, chunks) if chunks else []
    tags = [t for piece in pieces for t in piece]
    random.SystemRandom().shuffle(tags)  # the order says nothing about the IDs
    lender_key = LenderKey(private, salt, epoch, now, now + rotate_every, borrowers_digest(distinct))
    return lender_key, lender_key.tag_set(b"".join(tags))


def parse_values(raw: Any, public: RsaPublicKey, *, limit: int) -> list[mpz]:
    """Blinded values as sent (hex strings) → integers; ProtocolError naming the first bad one."""
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("a blind-sign request needs 'values': a non-empty list of hexadecimal strings")
    if len(raw) > limit:
        raise ProtocolError(f"a blind-sign request holds {len(raw)} values; this lender signs at most {limit} "
                            "per request (lending.max_ids_per_query)")
    width = 2 * public.byte_width
    out = []
    for i, text in enumerate(raw):
        if not isinstance(text, str) or not text or len(text) > width:
            raise ProtocolError(f"values[{i}] is not a blinded value: expected a hexadecimal string of at most "
                                f"{width} digits")
        try:
            out.append(mpz(int(text, 16)))
        except ValueError:
            raise ProtocolError(f"values[{i}] is garbled: {text[:20]!r}… is not hexadecimal") from None
    return out


def check_blinded(values: list[mpz], n: mpz) -> None:
    """Refuse values outside [1, n−1] or sharing a factor with n (garbage, or an attempt to learn a factor)."""
    product = mpz(1)
    for i, v in enumerate(values):
        if not 1 <= v <= n - 1:
            raise PSIError(f"values[{i}] is outside [1, n−1] for this lender's key; refusing to sign it")
        product = product * v % n
    if gmpy2.gcd(product, n) != 1:
        bad = next(i for i, v in enumerate(values) if gmpy2.gcd(v, n) != 1)
        raise PSIError(f"values[{bad}] shares a factor with this lender's key modulus; refusing to sign it")


def sign_blinded(key: LenderKey, key_id: str, values: list[mpz], engine: Engine | None = None) -> list[mpz]:
    """Signatures on blinded values under the current key, each checked (s^e = value) before release."""
    if key_id != key.key_id:
        raise StaleKey(f"key {key_id!r} is not this lender's current key (now {key.key_id}, epoch {key.epoch}): "
                       "it rotated; fetch the tag set again")
    check_blinded(values, key.private.public.n)
    parts = key.private.crt_parts()
    if engine is None or engine.workers <= 1 or len(values) < 64:
        return sign_many(values, *parts)
    from vfl.compute.pool import split_evenly

    pieces = engine.map(sign_many, [(values[s], *parts) for s in split_evenly(len(values), engine.workers)])
    return [s for piece in pieces for s in piece]


def encode(values: Iterable[mpz]) -> list[str]:
    """Integers as the hexadecimal strings the lending endpoints carry."""
    return [format(int(v), "x") for v in values]
