"""The group of the ECDH PSI: X25519 on curve25519 (RFC 7748), hashing onto it (RFC 9380), scalars, checks.

This module is the group core only: no roles, no messages. The protocol that
uses it is Diffie–Hellman PSI: each side maps its IDs onto the curve
(:func:`hash_to_group`), raises them to its own secret scalar, sends them, and
raises the other side's once more; ``a·(b·H(x)) == b·(a·H(x))``, so equal IDs
meet.

Why this group: it is the fastest constant-time variable-base scalar
multiplication reachable from Python here. libsodium's X25519 ladder runs
about 1.5× as many multiplications per second as its ristretto255 one, and a PSI is
four multiplications per pair of IDs (``scripts/bench_ec_groups.py`` measures
the candidates; ``docs/performance.md`` has the figures).

Layers, bottom to top:

* libsodium (≥ 1.0.18) multiplies: ``crypto_scalarmult_curve25519``, the X25519
  function of RFC 7748 (Montgomery ladder, constant time). See :func:`_sodium`
  for why it is bound with ``ctypes``.
* :func:`expand_message_xmd` and :func:`hash_to_group`: RFC 9380's suite
  ``curve25519_XMD:SHA-512_ELL2_NU_`` (encode_to_curve: hash to one field
  element, Elligator 2, clear the cofactor), in Python on ``gmpy2`` integers,
  u-coordinate only, batched so that a chunk costs two modular inversions.
  Python integers are not constant-time; the hash only ever runs on this
  party's own IDs in its own processes, and outside them only a whole chunk's
  time shows. Everything that touches a secret scalar is libsodium's.
* :class:`Scalar`, :func:`new_scalar`, :func:`scalar_mult`, :func:`check_points`:
  the group operations on encoded points (32 bytes: the u-coordinate,
  little-endian; a point never exists here in any other form).
* :func:`pack_points` / :func:`unpack_points`, the worker tasks
  :func:`hash_and_mult_task` and :func:`mult_task`, and their engine drivers
  :func:`hash_and_mult` and :func:`mult`: the same work cut into chunks for a
  :class:`~vfl.compute.engine.Engine` (a process pool or the party's Ray cluster).

Invariants:

* every point this module returns is a canonical u-coordinate (< p) of a point
  of the prime-order subgroup (order ℓ ≈ 2^252), never of small order: hashed
  points have their cofactor cleared, and a product that would be of small
  order raises instead of being returned;
* every scalar is an X25519 scalar as RFC 7748 clamps it (2^254 + 8·t), drawn
  from the OS CSPRNG and never printed; it multiplies the prime-order subgroup
  by a non-zero number mod ℓ;
* every point received from a peer goes through :func:`check_points` before
  any secret scalar touches it.

What a deviating peer can and cannot gain
-----------------------------------------
curve25519 has order 8·ℓ, and its quadratic twist 4·ℓ' (ℓ' prime). X25519
works on u-coordinates, which name a point up to its sign; since
``u(k·P) = u(k·(−P))`` the PSI is a DH on points up to sign, which changes
nothing for equality. :func:`check_points` refuses, by index and reason, a
value of the wrong length, a non-canonical u (≥ p, which covers the top bit),
a u on the twist rather than the curve, and the points of small order (u = 0,
1 and the two of order 8; p − 1 is on the twist). Hence:

* **No small-subgroup confinement.** Every scalar is a multiple of the
  cofactor 8, so ``k·(P + T) = k·P`` for every torsion point T: a peer that
  adds a small-order component to a point learns nothing about k modulo 8 (the
  result is what P alone gives), and a point of small order alone would give
  the identity, which is refused. No twist point passes the check, so the
  twist's group is never used.
* **No key-holder proof, unlike RSA.** The RSA path makes the key holder prove
  that x ↦ x^e permutes Z_n* (:mod:`psi.proof`), because a crafted modulus can
  make blinding lossy and leak a few bits of each blinded ID. Here every
  scalar, whoever chose it, is a non-zero number mod ℓ and so a bijection of
  the prime-order subgroup (up to sign): ``k·H(x)`` is always uniform-looking
  to the other side and there is nothing to prove.
* **The hash is RFC 9380's nonuniform encoding, on purpose.** encode_to_curve
  maps one field element with Elligator 2; its outputs cover about half the
  curve's u-coordinates, each reached from two field elements. The random-oracle
  variant (hash_to_curve) adds two such points and needs a square root for
  each, which in Python costs more than the whole saving of the faster curve.
  What the DH-PSI proof needs of H is that a reduction can program it with
  points of known discrete logarithm; an encoding that is efficiently
  invertible with few preimages allows that (draw s, keep s·G when it is an
  image, about one try in two, and set the field hash to a preimage), losing a
  factor of about 2. CPace, the CFRG's PAKE, uses the same single Elligator 2
  map on X25519 for the same reason (Abdalla, Haase, Hesse, "Security analysis
  of CPace", 2021). Finding two IDs whose hashes have a known ratio would need
  a SHA-512 preimage of an Elligator 2 preimage.
* **What remains.** A peer can always choose its own scalar, inputs and set
  (as in RSA: a semi-honest protocol's outputs are only as honest as its
  inputs; the declared-size caps bound how many IDs it can probe), use a
  different scalar for some points (that only removes IDs from the
  intersection), or send garbage (refused here with an index and a reason). It
  cannot learn an ID it does not itself hold: that would take a DH on curve25519.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from vfl.compute.engine import Engine
from vfl.compute.pool import split_evenly
from vfl.crypto.codec import batch_inverse
from vfl.errors import ConfigError, PSIError

#: Bytes of an encoded point: its u-coordinate, little-endian, canonical (RFC 7748 §5).
POINT_BYTES = 32
#: Bytes of an encoded scalar: little-endian, clamped as RFC 7748 §5 decodeScalar25519 does.
SCALAR_BYTES = 32
#: The field prime p = 2^255 − 19.
FIELD_PRIME = 2**255 - 19
#: The order ℓ of the prime-order subgroup (the curve has 8·ℓ points).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
#: curve25519's Montgomery coefficient: v² = u³ + A·u² + u.
CURVE_A = 486662
#: RFC 9380 §8.5 suite ID: expand with SHA-512, Elligator 2, nonuniform encoding (encode_to_curve).
SUITE_ID = b"curve25519_XMD:SHA-512_ELL2_NU_"
#: The application prefix of every DST (RFC 9380 §3.1: application, version, suite).
DST_PREFIX = b"VFL-PSI-ECDH-V02-CS01-with-" + SUITE_ID
#: The identity's encoding as X25519 writes it (u = 0, also the point of order 2). Always refused from a peer.
IDENTITY = bytes(POINT_BYTES)
#: Bytes of uniform output per field element (RFC 9380 §5: L = ceil((255 + 128) / 8)).
FIELD_BYTES = 48
#: Elligator 2's non-square Z for curve25519 (RFC 9380 §6.7.1, §8.5).
_Z = 2
#: (A + 2) / 4, the constant of the x-only doubling formula (RFC 7748 §5).
_A24 = (CURVE_A + 2) // 4
#: The canonical u-coordinates of curve25519's points of small order (order 1, 2, 4, 8), and p − 1 (on the twist).
SMALL_ORDER = frozenset({
    0, 1, FIELD_PRIME - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})


# -- libsodium -------------------------------------------------------------------------------------------------------

@functools.cache
def _sodium() -> ctypes.CDLL:
    """libsodium's X25519 function, bound once per process.

    PyNaCl's bundled libsodium is built without the scalar-multiplication
    function that reports an all-zero (small-order) result, and ``cryptography``
    wraps each X25519 call in two key objects; the system's libsodium
    (Debian/Ubuntu ``libsodium23``, ≥ 1.0.18) is bound here with ``ctypes``
    instead. ``crypto_scalarmult_curve25519`` returns 0 on success and −1 when
    the product is all zero (an input of small order).
    """
    path = ctypes.util.find_library("sodium")
    if path is None:
        raise ConfigError("the ECDH PSI needs libsodium ≥ 1.0.18 and none is installed: "
                          "install it (Debian/Ubuntu: apt-get install libsodium23; macOS: brew install libsodium)")
    lib = ctypes.CDLL(path)
    if not hasattr(lib, "crypto_core_ristretto255_from_hash"):  # the marker of 1.0.18
        raise ConfigError(f"the libsodium at {path} is older than 1.0.18: upgrade libsodium to 1.0.18 or later")
    if lib.sodium_init() < 0:
        raise ConfigError(f"libsodium at {path} failed to initialise (sodium_init() < 0)")
    fn = lib.crypto_scalarmult_curve25519
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    fn.restype = ctypes.c_int
    return lib


def libsodium_version() -> str:
    """The version string of the libsodium in use (for benchmarks and error reports)."""
    lib = _sodium()
    lib.sodium_version_string.restype = ctypes.c_char_p
    return lib.sodium_version_string().decode()


# -- hashing to the group (RFC 9380) ---------------------------------------------------------------------------------

def job_dst(job_id: str, salt: bytes) -> bytes:
    """The domain separation tag of one job's hash: :data:`DST_PREFIX`, then a digest of (job, salt).

    RFC 9380 §3.1: a DST is 1 to 255 bytes, names the application, its version
    and the suite, and differs per use. The job and salt are hashed (SHA-256,
    each length-prefixed so no two pairs collide) so that any job ID gives a
    tag of the same fixed length. Both sides derive it from what they agreed
    on, so the tag itself is no secret.
    """
    if not isinstance(job_id, str) or not job_id:
        raise ConfigError(f"job_dst needs the job's ID as a non-empty string, got {job_id!r}")
    if not isinstance(salt, bytes) or not salt:
        raise ConfigError("job_dst needs the job's salt as non-empty bytes (e.g. secrets.token_bytes(32))")
    job = job_id.encode("utf-8")
    digest = hashlib.sha256(struct.pack(">I", len(job)) + job + struct.pack(">I", len(salt)) + salt).hexdigest()
    return DST_PREFIX + b":" + digest.encode("ascii")


def _check_dst(dst: bytes) -> None:
    if not isinstance(dst, bytes) or not 0 < len(dst) <= 255:
        size = len(dst) if isinstance(dst, (bytes, bytearray)) else type(dst).__name__
        raise ConfigError(f"a domain separation tag must be 1 to 255 bytes (RFC 9380 §3.1), got {size}; "
                          "build it with job_dst(job_id, salt)")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512: ``length`` uniform bytes from ``msg`` under ``dst``."""
    _check_dst(dst)
    ell = -(-length // 64)
    if not 0 < length <= 65535 or ell > 255:
        raise ConfigError(f"expand_message_xmd gives 1 to {255 * 64} bytes with SHA-512, not {length}")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [b]
    for i in range(2, ell + 1):
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b)) + bytes([i]) + dst_prime).digest()
        out.append(b)
    return b"".join(out)[:length]


def hash_to_field(ids: Sequence[bytes], dst: bytes) -> list[mpz]:
    """RFC 9380 §5.2 hash_to_field with count 1: one element of GF(p) per ID, from 48 bytes of expand_message_xmd.

    The same bytes as :func:`expand_message_xmd` (``ell`` = 1, so the output is
    b_1 cut to 48 bytes), with the first block of b_0 (the zero pad) hashed
    once for all IDs.
    """
    _check_dst(dst)
    z_pad = hashlib.sha512(bytes(128))
    tail = FIELD_BYTES.to_bytes(2, "big") + b"\x00" + dst + bytes([len(dst)])
    b1_tail = b"\x01" + dst + bytes([len(dst)])
    sha512, p, from_bytes = hashlib.sha512, FIELD_PRIME, int.from_bytes
    out = []
    for x in ids:
        if not isinstance(x, bytes):
            raise ConfigError(f"hash_to_group takes IDs as bytes, got {type(x).__name__}: encode them first")
        h = z_pad.copy()
        h.update(x)
        h.update(tail)
        out.append(mpz(from_bytes(sha512(h.digest() + b1_tail).digest()[:FIELD_BYTES], "big") % p))
    return out


def map_to_u(field_elements: Sequence[mpz]) -> list[mpz]:
    """u(8·M(r)) for each r: RFC 9380 §6.7.1's Elligator 2 (Z = 2), then clear_cofactor (h_eff = 8), u only.

    Elligator 2 gives u = x1 = −A / (1 + Z·r²) when x1³ + A·x1² + x1 is a
    square, and u = −x1 − A otherwise. Its y-coordinate is not needed: the
    u-coordinate of 8·P depends only on u(P) (three x-only doublings, RFC 7748
    §5's formulas). The two inversions, one for x1 and one for the projective
    doubling result, are batched over the chunk (Montgomery's trick).
    """
    p = mpz(FIELD_PRIME)
    a, a24, legendre = mpz(CURVE_A), _A24, gmpy2.legendre
    # 1 + Z·r² is never 0: −1/Z = −1/2 is not a square mod p, so inv0 needs no special case.
    inverses = batch_inverse([(_Z * r * r + 1) % p for r in field_elements], p)
    xs, zs = [], []
    for inverse in inverses:
        x1 = -a * inverse % p
        gx1 = x1 * (x1 * (x1 + a) + 1) % p
        u = x1 if legendre(gx1, p) != -1 else (-x1 - a) % p  # a zero gx1 is a square (RFC 9380 is_square)
        x, z = u, mpz(1)
        for _ in range(3):  # clear_cofactor: 8·P, as (X : Z)
            t1 = (x + z) * (x + z) % p
            t2 = (x - z) * (x - z) % p
            t3 = t1 - t2
            x, z = t1 * t2 % p, t3 * (t2 + a24 * t3) % p
        if not z:  # 8·P is the identity: P had small order. Probability ~2^-250 for a hashed ID.
            raise PSIError("an ID hashed to a point of small order; this cannot happen by chance: report it")
        xs.append(x)
        zs.append(z)
    return [x * z_inv % p for x, z_inv in zip(xs, batch_inverse(zs, p))]


def encode_u(u: int) -> bytes:
    """The 32-byte little-endian encoding of a canonical u-coordinate."""
    return int(u).to_bytes(POINT_BYTES, "little")


def hash_to_group(ids: Sequence[bytes], dst: bytes) -> list[bytes]:
    """H(x) for every ID: RFC 9380's encode_to_curve for ``curve25519_XMD:SHA-512_ELL2_NU_``, u-coordinate only.

    IDs are bytes: turning a table's IDs into bytes (normalising, UTF-8) is
    the caller's business (:mod:`vfl.data.ids`), not the group's.
    """
    return [encode_u(u) for u in map_to_u(hash_to_field(ids, dst))]


# -- scalars ---------------------------------------------------------------------------------------------------------

def _clamped(value: int) -> bool:
    """RFC 7748 §5's form of an X25519 scalar: the three low bits clear, bit 254 set, bit 255 clear."""
    return value & 7 == 0 and value >> 254 == 1


@dataclass(frozen=True, repr=False)
class Scalar:
    """A secret X25519 scalar, clamped (2^254 + 8·t, t < 2^251) and not ≡ 0 mod ℓ, as its 32-byte encoding.

    One per party per job (:func:`new_scalar`); it never leaves the party and
    is never printed (its repr hides it). It pickles, so a worker task can take it.
    """

    encoded: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.encoded, bytes) or len(self.encoded) != SCALAR_BYTES:
            raise ConfigError(f"a scalar is {SCALAR_BYTES} bytes; build one with new_scalar()")
        value = int.from_bytes(self.encoded, "little")
        if not _clamped(value) or value % GROUP_ORDER == 0:
            raise ConfigError("a scalar must be clamped as RFC 7748 says (2^254 + 8·t) and not a multiple of ℓ; "
                              "build one with new_scalar()")

    def __repr__(self) -> str:
        return "Scalar(<secret>)"

    def inverse(self) -> Scalar | None:
        """A scalar k' with k'·(k·P) = ±P on the prime-order subgroup, or None when no clamped value is one.

        X25519 clamps every scalar, so k⁻¹ mod ℓ must itself be written as
        2^254 + 8·t: among the values ≡ ±k⁻¹ (mod ℓ) in [2^254, 2^255) one is
        a multiple of 8 about three times in four. The caller draws another k
        when none is (:func:`new_invertible_scalar`).
        """
        k_inv = pow(int.from_bytes(self.encoded, "little"), -1, GROUP_ORDER)
        for residue in (k_inv, GROUP_ORDER - k_inv):  # ±: u-coordinates do not see the sign
            first = residue + -(-(2**254 - residue) // GROUP_ORDER) * GROUP_ORDER
            for value in range(first, 2**255, GROUP_ORDER):
                if _clamped(value):
                    return Scalar(value.to_bytes(SCALAR_BYTES, "little"))
        return None


def new_scalar() -> Scalar:
    """A fresh X25519 scalar from the OS CSPRNG (:mod:`secrets`), clamped: one per party per job."""
    while True:
        value = (secrets.randbits(251) << 3) | (1 << 254)
        if value % GROUP_ORDER:  # a multiple of ℓ has probability ~2^-251; draw again rather than trust luck
            return Scalar(value.to_bytes(SCALAR_BYTES, "little"))


def new_invertible_scalar() -> tuple[Scalar, Scalar]:
    """(k, k') with k'·(k·P) = ±P: a blinding scalar and its unblinding one (the unbalanced PSI's small side)."""
    while True:
        scalar = new_scalar()
        inverse = scalar.inverse()
        if inverse is not None:
            return scalar, inverse


# -- checking and multiplying points ---------------------------------------------------------------------------------

def _why_invalid(point: object) -> str | None:
    """Why ``point`` is not the canonical u-coordinate of a curve25519 point of large order, or None if it is one."""
    if not isinstance(point, bytes):
        return f"is a {type(point).__name__}, not bytes"
    if len(point) != POINT_BYTES:
        return f"is {len(point)} bytes, not {POINT_BYTES}"
    u = int.from_bytes(point, "little")
    if u >= FIELD_PRIME:
        return "is not a canonical u-coordinate (≥ p = 2^255 − 19)"
    if u in SMALL_ORDER:
        return "is the identity element" if u == 0 else "is a point of small order"
    if gmpy2.legendre((u * (u * (u + CURVE_A) + 1)) % FIELD_PRIME, FIELD_PRIME) != 1:
        return "is not on curve25519 (it is on the twist)"
    return None


def check_points(encoded: Sequence[bytes], *, what: str = "point") -> None:
    """Refuse anything but canonical u-coordinates of curve25519 points of large order; the error names the index.

    ``what`` names the values in the error (e.g. "party B's point"). Run it on
    every point a peer sends, before any secret scalar touches them.
    """
    for i, point in enumerate(encoded):
        why = _why_invalid(point)
        if why is not None:
            raise PSIError(f"{what} {i} {why}: refusing it. A correct peer sends only curve25519 u-coordinates "
                           "of its hashed IDs times its scalar; this one is broken or misbehaving")


def scalar_mult(scalar: Scalar, points: Sequence[bytes], *, check: bool = True) -> list[bytes]:
    """``k·P`` for every point, in order (X25519).

    Every point is checked first (:func:`check_points`); ``check=False`` is for
    points this party made itself (:func:`hash_to_group`), which are valid by
    construction. A product of small order (all zero) is refused either way.
    """
    if check:
        check_points(points)
    mult = _sodium().crypto_scalarmult_curve25519
    k = scalar.encoded
    out = ctypes.create_string_buffer(POINT_BYTES)
    products = []
    for i, point in enumerate(points):
        if len(point) != POINT_BYTES or mult(out, k, point) != 0:
            raise PSIError(f"point {i} {_why_invalid(point) or 'times the scalar is the identity'}: refusing it")
        products.append(out.raw)
    return products


# -- packing and engine work -----------------------------------------------------------------------------------------

def pack_points(points: Sequence[bytes]) -> bytes:
    """Points as one bytes value of fixed 32-byte records (what a worker task or a message carries)."""
    return b"".join(points)


def unpack_points(packed: bytes, *, what: str = "packed points") -> list[bytes]:
    """The inverse of :func:`pack_points`; refuses a length that is not a multiple of 32. Does not check the points."""
    if len(packed) % POINT_BYTES:
        raise PSIError(f"{what}: {len(packed)} bytes is not a whole number of {POINT_BYTES}-byte points "
                       "(truncated or garbled)")
    return [packed[i : i + POINT_BYTES] for i in range(0, len(packed), POINT_BYTES)]


def pack_ids(ids: Sequence[bytes]) -> bytes:
    """IDs as one bytes value: each a 4-byte big-endian length, then its bytes."""
    return b"".join(struct.pack(">I", len(x)) + x for x in ids)


def unpack_ids(packed: bytes) -> list[bytes]:
    """The inverse of :func:`pack_ids`."""
    ids, at = [], 0
    while at < len(packed):
        if at + 4 > len(packed):
            raise PSIError("packed IDs end inside a length prefix (truncated)")
        (size,) = struct.unpack_from(">I", packed, at)
        at += 4
        if at + size > len(packed):
            raise PSIError("packed IDs end inside an ID (truncated)")
        ids.append(packed[at : at + size])
        at += size
    return ids


def hash_and_mult_task(ids_packed: bytes, dst: bytes, scalar: Scalar) -> bytes:
    """Worker task: the packed points ``k·H(x)`` of a chunk of packed IDs (own IDs: nothing to check)."""
    return pack_points(scalar_mult(scalar, hash_to_group(unpack_ids(ids_packed), dst), check=False))


def mult_task(points_packed: bytes, scalar: Scalar) -> bytes:
    """Worker task: the packed points ``k·P`` of a chunk of packed points, each checked first."""
    return pack_points(scalar_mult(scalar, unpack_points(points_packed)))


def hash_and_mult(ids: Sequence[bytes], dst: bytes, scalar: Scalar, engine: Engine) -> list[bytes]:
    """``k·H(x)`` for every ID, in order, cut into one chunk per engine worker."""
    _check_dst(dst)
    chunks = [(pack_ids(ids[s]), dst, scalar) for s in split_evenly(len(ids), engine.workers)] if ids else []
    return [p for packed in engine.map(hash_and_mult_task, chunks) for p in unpack_points(packed)]


def mult(points: Sequence[bytes], scalar: Scalar, engine: Engine) -> list[bytes]:
    """``k·P`` for every point, in order, cut into one chunk per engine worker; refuses bad points up front."""
    check_points(points)
    chunks = [(pack_points(points[s]), scalar) for s in split_evenly(len(points), engine.workers)] if points else []
    return [p for packed in engine.map(mult_task, chunks) for p in unpack_points(packed)]


__all__ = [
    "CURVE_A", "DST_PREFIX", "FIELD_BYTES", "FIELD_PRIME", "GROUP_ORDER", "IDENTITY", "POINT_BYTES", "SCALAR_BYTES",
    "SMALL_ORDER", "SUITE_ID", "Scalar", "check_points", "encode_u", "expand_message_xmd", "hash_and_mult",
    "hash_and_mult_task", "hash_to_field", "hash_to_group", "job_dst", "libsodium_version", "map_to_u", "mult",
    "mult_task", "new_invertible_scalar", "new_scalar", "pack_ids", "pack_points", "scalar_mult", "unpack_ids",
    "unpack_points",
]
