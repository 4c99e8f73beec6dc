"""Additive masks that hide a value from the arbiter while it decrypts it.

A party that needs [[g]] decrypted sends ``[[g + R]]`` where R is drawn
uniformly from the whole plaintext space Z_n, so ``g + R mod n`` is uniform
and tells the arbiter nothing about g. The mask is added as a *fresh*
encryption of R, which also replaces the randomness of [[g]]: the arbiter,
who can recover the randomness of any ciphertext it decrypts, then sees only
randomness the party just drew.

Invariant: ``unmask(decrypt(mask(v)), masks) == v`` exactly, for every vector
whose plaintexts satisfy the encoding headroom rule.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np
from gmpy2 import mpz

from vfl.crypto.encoding import decode
from vfl.crypto.vector import EncryptedVector, Encryptor


def draw_masks(n: int, count: int) -> list[mpz]:
    """``count`` masks uniform over [0, n), from the operating system's CSPRNG."""
    return [mpz(secrets.randbelow(int(n))) for _ in range(count)]


def mask(vector: EncryptedVector, encryptor: Encryptor) -> tuple[EncryptedVector, list[mpz]]:
    """``([[v + R]], R)`` with fresh uniform R and fresh randomness."""
    pk = vector.public_key
    masks = draw_masks(pk.n, len(vector))
    enc_masks = encryptor.encrypt_residues(masks)
    nsq = pk.nsquare
    masked = vector._with([c * r % nsq for c, r in zip(vector.ciphertexts, enc_masks)])
    return masked, masks


def unmask(residues: Sequence[int], masks: Sequence[int], n: int, frac_bits: int, *, what: str = "gradient") -> np.ndarray:
    """Remove the masks from decrypted residues and decode at ``frac_bits``."""
    if len(residues) != len(masks):
        raise ValueError(f"{len(residues)} decrypted values for {len(masks)} masks")
    modulus = mpz(n)
    return decode([(mpz(v) - m) % modulus for v, m in zip(residues, masks)], frac_bits, n, what=what)
