"""The PSI's worker tasks: pure functions on chunks of IDs, big integers (RSA) and points (ECDH).

A role hands them to its compute engine (:mod:`vfl.compute.engine`: this machine's
process pool, or the party's Ray cluster), so they are module-level, take
only picklable arguments (IDs, the salt, key numbers, a scalar) and do no I/O. Only the
party's own IDs and key reach them.
"""

from __future__ import annotations

import secrets

import gmpy2
from gmpy2 import mpz

from psi import ec
from psi.hashing import fdh, point_tags, tag
from psi.keys import sign_crt
from vfl.crypto.codec import batch_inverse
from vfl.errors import PSIError


def batch_invert(values: list[mpz], n: mpz) -> list[mpz]:
    """Inverses mod n of all ``values`` with one modular inversion (:func:`vfl.crypto.codec.batch_inverse`)."""
    try:
        return batch_inverse(values, n)
    except ZeroDivisionError as exc:  # probability ~2^-1000 for uniform r: a broken key or RNG
        raise PSIError("a blinding factor shares a factor with n; refusing this key") from exc


def own_tags(ids: list[str], salt: bytes, *parts: mpz) -> list[bytes]:
    """Worker task: H2(FDH(x)^d) for a chunk of the key holder's own IDs; ``parts`` is ``key.crt_parts()``."""
    n = parts[0]
    width = (int(n.bit_length()) + 7) // 8
    # Only H2 of these signatures leaves party A, so a faulty one cannot leak a factor: no check needed.
    return [tag(sign_crt(fdh(x, salt, n), *parts, verify=False), salt, width) for x in ids]


def blind_many(ids: list[str], salt: bytes, n: mpz, e: mpz) -> tuple[list[mpz], list[mpz]]:
    """Worker task for party B: (r⁻¹, h(x)·r^e mod n) for a chunk of IDs, a fresh uniform unit r per ID."""
    factors = [mpz(secrets.randbelow(int(n) - 1) + 1) for _ in ids]  # uniform in [1, n−1]
    blinded = [fdh(x, salt, n) * gmpy2.powmod(r, e, n) % n for x, r in zip(ids, factors)]
    # r must be a unit: the batch inversion fails loudly if one is not (probability ~2^-1000).
    return batch_invert(factors, n), blinded


def unblind_many(
    signatures: list[mpz], inverses: list[mpz], blinded: list[mpz], salt: bytes, n: mpz, e: mpz
) -> list[bytes] | int:
    """Worker task for party B: the tags H2(s·r⁻¹) of a chunk, or the index of the first signature that fails s^e = b."""
    width = (int(n.bit_length()) + 7) // 8
    tags = []
    for i, (s, r_inv, b) in enumerate(zip(signatures, inverses, blinded)):
        if not 0 < s < n or gmpy2.powmod(s, e, n) != b:
            return i
        tags.append(tag(s * r_inv % n, salt, width))
    return tags


# -- ECDH ------------------------------------------------------------------------------------------
#
# A point that fails its check makes a task return None, not raise: the role then finds the
# first bad point of the whole chunk (psi.ec.check_points) and names it with the chunk and
# the sender, which a worker cannot.


def mask_ids(ids: list[str], dst: bytes, scalar: ec.Scalar) -> list[bytes]:
    """Worker task: k·H(x) for a chunk of this party's own (normalised) IDs, in order."""
    return ec.scalar_mult(scalar, ec.hash_to_group([x.encode("utf-8") for x in ids], dst), check=False)


def remask(points: bytes, scalar: ec.Scalar) -> bytes | None:
    """Worker task: the packed k·P of packed received points (each checked), or None if one is not valid."""
    try:
        return ec.pack_points(ec.scalar_mult(scalar, ec.unpack_points(points)))
    except PSIError:
        return None


def remask_tags(points: bytes, scalar: ec.Scalar, salt: bytes) -> list[bytes] | None:
    """Worker task: H2(k·P) of packed received points, or None if one is not a valid non-identity point."""
    masked = remask(points, scalar)
    return None if masked is None else point_tags(ec.unpack_points(masked), salt)


def checked_tags(points: bytes, salt: bytes) -> list[bytes] | None:
    """Worker task: H2(P) of packed received points, or None if one is not a valid non-identity point."""
    unpacked = ec.unpack_points(points)
    try:
        ec.check_points(unpacked)
    except PSIError:
        return None
    return point_tags(unpacked, salt)


__all__ = ["batch_invert", "blind_many", "checked_tags", "mask_ids", "own_tags", "remask", "remask_tags",
           "unblind_many"]
