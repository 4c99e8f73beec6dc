"""The hashes of the PSI: two for RSA blind signatures, one for ECDH.

``fdh`` is a full-domain hash onto Z_n: SHAKE-256 of a domain tag, the job's
salt and the ID, stretched to |n| + 128 bits and reduced mod n, which makes
the result statistically close to uniform. A short hash (256 bits) would be
weak: every signature on a small value factors over small primes, so signatures
of a few chosen values let anyone forge others.

``tag`` is H2, the final hash of an unblinded signature, under a different
domain tag. It is what the parties compare, and all they ever reveal about
an ID's signature.

``point_tag`` is the ECDH path's H2: the hash of a doubly masked point
a·b·H(x), under its own domain tag, so that B compares tags of the same
32 bytes whatever the protocol (:mod:`psi.ec` hashes IDs onto the group).
"""

from __future__ import annotations

import hashlib

from gmpy2 import mpz

FDH_DOMAIN = b"vfl/psi/fdh/v1"
TAG_DOMAIN = b"vfl/psi/tag/v1"
POINT_TAG_DOMAIN = b"vfl/psi/ecdh-tag/v1"
TAG_BYTES = 32


def _prefix(domain: bytes, salt: bytes) -> bytes:
    # Length-prefixed so that no (salt, id) pair can collide with another.
    return domain + len(salt).to_bytes(2, "big") + salt


def fdh(identifier: str, salt: bytes, n: mpz) -> mpz:
    """Full-domain hash of ``identifier`` into [0, n)."""
    out_bytes = (int(n.bit_length()) + 128 + 7) // 8
    digest = hashlib.shake_256(_prefix(FDH_DOMAIN, salt) + identifier.encode("utf-8")).digest(out_bytes)
    return mpz(int.from_bytes(digest, "big")) % n


def tag(signature: mpz, salt: bytes, width: int) -> bytes:
    """H2(signature): the value both parties compare."""
    return hashlib.sha256(_prefix(TAG_DOMAIN, salt) + int(signature).to_bytes(width, "big")).digest()


def point_tags(points: list[bytes], salt: bytes) -> list[bytes]:
    """H2(a·b·H(x)) of every (32-byte, checked) doubly masked point: what B compares in the ECDH PSI."""
    prefix = hashlib.sha256(_prefix(POINT_TAG_DOMAIN, salt))
    out = []
    for p in points:
        h = prefix.copy()
        h.update(p)
        out.append(h.digest())
    return out
