"""The prime-order group of the ECDH PSI: ristretto255 (RFC 9496), hashing onto it, scalars, checks.

This module is the group core only: no roles, no messages. The protocol that
will use it is Diffie–Hellman PSI: each side maps its IDs into the group
(:func:`hash_to_group`), raises them to its own secret scalar, sends them, and
raises the other side's once more; ``a·(b·H(x)) == b·(a·H(x))``, so equal IDs
meet.

Layers, bottom to top:

* libsodium (≥ 1.0.18) does the group math: decoding and validation, the
  one-way map, scalar multiplication. See :func:`_sodium` for why it is bound
  here with ``ctypes`` and not through PyNaCl.
* :func:`expand_message_xmd` and :func:`hash_to_group`: RFC 9380's suite
  ``ristretto255_XMD:SHA-512_R255MAP_RO_``, the expansion in Python, the map in C.
* :class:`Scalar`, :func:`new_scalar`, :func:`scalar_mult`, :func:`check_points`:
  the group operations on encoded points (32 bytes each; a point never exists
  here in any other form).
* :func:`pack_points` / :func:`unpack_points`, the worker tasks
  :func:`hash_and_mult_task` and :func:`mult_task`, and their engine drivers
  :func:`hash_and_mult` and :func:`mult`: the same work cut into chunks for a
  :class:`~vfl.compute.engine.Engine` (a process pool or the party's Ray cluster).

Invariants:

* every point this module returns is a canonical encoding of a group element
  other than the identity (libsodium only encodes canonically; a product that
  would be the identity raises instead of being returned);
* every scalar is in [1, ℓ − 1] (ℓ the group order), drawn from the OS CSPRNG,
  and never printed;
* every point received from a peer goes through :func:`check_points` before
  any secret scalar touches it (:func:`scalar_mult` checks again, in C).

What a deviating peer can and cannot gain
-----------------------------------------
ristretto255 has prime order ℓ ≈ 2^252. Its encoding is canonical by
construction: each element has exactly one 32-byte encoding, and a decoder
refuses every other string (wrong length, a field element ≥ p or "negative",
a point off the curve); :func:`check_points` also refuses the identity.
Hence:

* **No small-subgroup confinement.** A prime-order group has no subgroups but
  itself and the identity, so there is no small-order point a peer could send
  to learn our scalar modulo a small number (the attack on cofactor curves such
  as raw edwards25519 or X25519, cofactor 8), and no "twist" point: anything
  not in the group fails to decode.
* **No key-holder proof, unlike RSA.** The RSA path makes the key holder prove
  that x ↦ x^e permutes Z_n* (:mod:`psi.proof`), because a crafted modulus can
  make blinding lossy and leak a few bits of each blinded ID. Here every
  non-zero scalar k is a bijection of the group (multiplication by k has the
  inverse k⁻¹ mod ℓ), whoever chose it, so ``k·H(x)`` is always uniform-looking
  to the other side and there is nothing to prove. A zero scalar would map
  everything to the identity, which every receiver refuses.
* **What remains.** A peer can always choose its own scalar, inputs and set
  (as in RSA: a semi-honest protocol's outputs are only as honest as its
  inputs; the declared-size caps bound how many IDs it can probe), use a
  different scalar for some points (that only removes IDs from the
  intersection: it cannot learn more than a correct run would show), or send
  garbage (refused here with an index and a reason). It cannot learn an ID it
  does not itself hold, since ``H`` is a random oracle and CDH is hard in the
  group.
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

from vfl.compute.engine import Engine
from vfl.compute.pool import split_evenly
from vfl.errors import ConfigError, PSIError

#: Bytes of an encoded group element (RFC 9496 §4.3.2).
POINT_BYTES = 32
#: Bytes of an encoded scalar: little-endian, canonical (< ℓ).
SCALAR_BYTES = 32
#: Uniform bytes the one-way map takes (RFC 9496 §4.3.4, RFC 9380's L·m·count for this suite).
UNIFORM_BYTES = 64
#: The group order ℓ = 2^252 + 27742317777372353535851937790883648493 (RFC 9496 §4.1).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
#: RFC 9380 §8.10 suite ID: expand with SHA-512, map with ristretto255's one-way map, random oracle.
SUITE_ID = b"ristretto255_XMD:SHA-512_R255MAP_RO_"
#: The application prefix of every DST (RFC 9380 §3.1: application, version, suite).
DST_PREFIX = b"VFL-PSI-ECDH-V01-CS01-with-" + SUITE_ID
#: The identity's encoding: 32 zero bytes. A valid encoding, always refused from a peer.
IDENTITY = bytes(POINT_BYTES)


# -- libsodium -------------------------------------------------------------------------------------------------------

@functools.cache
def _sodium() -> ctypes.CDLL:
    """libsodium's ristretto255 functions, bound once per process.

    PyNaCl 1.6 (``nacl.bindings``) exposes no ristretto255 function, and its
    bundled libsodium keeps those symbols hidden, so they are bound here from
    the system's libsodium (Debian/Ubuntu ``libsodium23``, libsodium ≥ 1.0.18)
    with ``ctypes``. Seven functions, each returning 0 on success.
    """
    path = ctypes.util.find_library("sodium")
    if path is None:
        raise ConfigError("the ECDH PSI needs libsodium ≥ 1.0.18 and none is installed: "
                          "install it (Debian/Ubuntu: apt-get install libsodium23; macOS: brew install libsodium)")
    lib = ctypes.CDLL(path)
    if not hasattr(lib, "crypto_core_ristretto255_from_hash"):
        raise ConfigError(f"the libsodium at {path} has no ristretto255 (it is older than 1.0.18): "
                          "upgrade libsodium to 1.0.18 or later")
    if lib.sodium_init() < 0:
        raise ConfigError(f"libsodium at {path} failed to initialise (sodium_init() < 0)")
    buf, cbuf = ctypes.c_char_p, ctypes.c_char_p
    for name, args in [
        ("crypto_core_ristretto255_from_hash", [buf, cbuf]),
        ("crypto_core_ristretto255_is_valid_point", [cbuf]),
        ("crypto_scalarmult_ristretto255", [buf, cbuf, cbuf]),
    ]:
        fn = getattr(lib, name)
        fn.argtypes = args
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
    tag of the same fixed length (128 bytes). Both sides derive it from what
    they agreed on, so the tag itself is no secret.
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


def from_uniform_bytes(uniform: bytes) -> bytes:
    """RFC 9496 §4.3.4: the group element of 64 uniform bytes (libsodium's ``from_hash``)."""
    if len(uniform) != UNIFORM_BYTES:
        raise ConfigError(f"the one-way map takes exactly {UNIFORM_BYTES} bytes, got {len(uniform)}")
    out = ctypes.create_string_buffer(POINT_BYTES)
    _sodium().crypto_core_ristretto255_from_hash(out, uniform)
    return out.raw


def hash_to_group(ids: Sequence[bytes], dst: bytes) -> list[bytes]:
    """H(x) for every ID: ``from_uniform_bytes(expand_message_xmd(x, dst, 64))``, RFC 9380's hash_to_ristretto255.

    IDs are bytes: turning a table's IDs into bytes (normalising, UTF-8) is
    the caller's business (:mod:`vfl.data.ids`), not the group's.
    """
    _check_dst(dst)
    from_hash = _sodium().crypto_core_ristretto255_from_hash
    # b_0's first block (Z_pad) is the same for every ID: hash it once and copy the state.
    z_pad = hashlib.sha512(bytes(128))
    tail = UNIFORM_BYTES.to_bytes(2, "big") + b"\x00" + dst + bytes([len(dst)])
    b1_tail = b"\x01" + dst + bytes([len(dst)])
    sha512 = hashlib.sha512
    out = ctypes.create_string_buffer(POINT_BYTES)
    points = []
    for x in ids:
        if not isinstance(x, bytes):
            raise ConfigError(f"hash_to_group takes IDs as bytes, got {type(x).__name__}: encode them first")
        h = z_pad.copy()
        h.update(x)
        h.update(tail)
        from_hash(out, sha512(h.digest() + b1_tail).digest())  # ell = 1: the 64 bytes are b_1
        points.append(out.raw)
    return points


# -- scalars ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class Scalar:
    """A secret scalar k in [1, ℓ − 1], kept as its 32-byte little-endian encoding.

    One per party per job (:func:`new_scalar`); it never leaves the party and
    is never printed (its repr hides it). It pickles, so a worker task can take it.
    """

    encoded: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.encoded, bytes) or len(self.encoded) != SCALAR_BYTES:
            raise ConfigError(f"a scalar is {SCALAR_BYTES} bytes; build one with new_scalar()")
        if not 0 < int.from_bytes(self.encoded, "little") < GROUP_ORDER:
            raise ConfigError("a scalar must be in [1, ℓ − 1] (canonical and not zero); build one with new_scalar()")

    def __repr__(self) -> str:
        return "Scalar(<secret>)"


def new_scalar() -> Scalar:
    """A fresh uniform scalar in [1, ℓ − 1] from the OS CSPRNG (:mod:`secrets`): one per party per job."""
    return Scalar((secrets.randbelow(GROUP_ORDER - 1) + 1).to_bytes(SCALAR_BYTES, "little"))


# -- checking and multiplying points ---------------------------------------------------------------------------------

def _why_invalid(point: object) -> str | None:
    """Why ``point`` is not a non-identity group element's canonical encoding, or None if it is one."""
    if not isinstance(point, bytes):
        return f"is a {type(point).__name__}, not bytes"
    if len(point) != POINT_BYTES:
        return f"is {len(point)} bytes, not {POINT_BYTES}"
    if point == IDENTITY:
        return "is the identity element"
    if _sodium().crypto_core_ristretto255_is_valid_point(point) != 1:
        return "is not a canonical ristretto255 encoding (a field element ≥ p or negative, or not on the curve)"
    return None


def check_points(encoded: Sequence[bytes], *, what: str = "point") -> None:
    """Refuse anything but canonical encodings of non-identity group elements; the error names the first bad index.

    ``what`` names the values in the error (e.g. "party B's point"). Run it on
    every point a peer sends, before any secret scalar touches them.
    """
    for i, point in enumerate(encoded):
        why = _why_invalid(point)
        if why is not None:
            raise PSIError(f"{what} {i} {why}: refusing it. A correct peer sends only ristretto255 encodings "
                           "of its hashed IDs times its scalar; this one is broken or misbehaving")


def scalar_mult(scalar: Scalar, points: Sequence[bytes]) -> list[bytes]:
    """``k·P`` for every point, in order. Every point must pass :func:`check_points` (it is checked again here)."""
    mult = _sodium().crypto_scalarmult_ristretto255
    k = scalar.encoded
    out = ctypes.create_string_buffer(POINT_BYTES)
    products = []
    for i, point in enumerate(points):
        if not isinstance(point, bytes) or len(point) != POINT_BYTES or mult(out, k, point) != 0:
            # libsodium refuses an invalid encoding, and a product that would be the identity.
            why = _why_invalid(point) or "times the scalar is the identity"
            raise PSIError(f"point {i} {why}: refusing it")
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
    return pack_points(scalar_mult(scalar, hash_to_group(unpack_ids(ids_packed), dst)))


def mult_task(points_packed: bytes, scalar: Scalar) -> bytes:
    """Worker task: the packed points ``k·P`` of a chunk of packed points, each checked first."""
    points = unpack_points(points_packed)
    check_points(points)
    return pack_points(scalar_mult(scalar, points))


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
    "DST_PREFIX", "GROUP_ORDER", "IDENTITY", "POINT_BYTES", "SCALAR_BYTES", "SUITE_ID", "UNIFORM_BYTES",
    "Scalar", "check_points", "expand_message_xmd", "from_uniform_bytes", "hash_and_mult", "hash_and_mult_task",
    "hash_to_group", "job_dst", "libsodium_version", "mult", "mult_task", "new_scalar", "pack_ids", "pack_points",
    "scalar_mult", "unpack_ids", "unpack_points",
]
