"""Additive masks that hide a value from the arbiter while it decrypts it.

A party that needs [[g]] decrypted sends ``[[g + R]]`` where R is drawn
uniformly from the whole plaintext space Z_n, so ``g + R mod n`` is uniform
and tells the arbiter nothing about g. The mask is added as a *fresh*
encryption of R, which also replaces the randomness of [[g]]: the arbiter,
who can recover the randomness of any ciphertext it decrypts, then sees only
randomness the party just drew.

Masks can be drawn from a party's secret seed instead of the OS directly
(:func:`seeded_masks`): the same (seed, step) always gives the same R. A party
that recomputes a step after a resume then asks the arbiter to decrypt exactly
the value it decrypted before, which is what lets the arbiter refuse anything
else (a resume must never renew its decryption budget).

Invariant: ``unmask(decrypt(mask(v)), masks) == v`` exactly, for every vector
whose plaintexts satisfy the encoding headroom rule.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import numpy as np
from gmpy2 import mpz

from vfl.crypto.encoding import decode
from vfl.crypto.vector import EncryptedVector, Encryptor



def secret_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from the OS CSPRNG, as row indices.

    For orders that must say nothing about rows (party A's PSI tags, party B's
    scores before the arbiter reads them). Sorting by 128-bit random keys gives
    every order the same probability up to a tie, and a tie among 10^7 keys
    has probability below 10^-24. A Fisher–Yates shuffle with
    ``secrets.SystemRandom`` is as good but draws from the OS once per element:
    0.3 s for 100,000 against 10 ms here.
    """
    keys = np.frombuffer(secrets.token_bytes(16 * n), dtype=np.uint64).reshape(n, 2)
    return np.lexsort((keys[:, 1], keys[:, 0])).astype(np.int64)

def draw_masks(n: int, count: int) -> list[mpz]:
    """``count`` masks uniform over [0, n), from the operating system's CSPRNG."""
    return [mpz(secrets.randbelow(int(n))) for _ in range(count)]


#: Extra bits drawn per mask before reducing mod n: the bias from the reduction is below 2^-128.
_SEEDED_EXTRA_BITS = 128


def seeded_masks(seed: bytes, context: str, n: int, count: int) -> list[mpz]:
    """``count`` masks uniform over [0, n) up to 2^-128, derived from a secret ``seed``.

    SHAKE-256 over (domain tag, seed, context) is a PRF as long as the 32-byte
    seed stays secret; ``context`` names the step (job, party, epoch, batch),
    so no two steps share a mask.
    """
    if len(seed) < 16:
        raise ValueError("a mask seed needs at least 128 bits")
    width = (int(n).bit_length() + _SEEDED_EXTRA_BITS + 7) // 8
    stream = hashlib.shake_256(b"vfl-mask-v1\0" + seed + b"\0" + context.encode()).digest(width * count)
    modulus = mpz(n)
    return [mpz(int.from_bytes(stream[i * width : (i + 1) * width], "big")) % modulus for i in range(count)]


def mask(
    vector: EncryptedVector, encryptor: Encryptor, masks: Sequence[mpz] | None = None
) -> tuple[EncryptedVector, list[mpz]]:
    """``([[v + R]], R)`` with fresh randomness; R uniform, drawn here unless ``masks`` are given."""
    pk = vector.public_key
    masks = draw_masks(pk.n, len(vector)) if masks is None else list(masks)
    if len(masks) != len(vector):
        raise ValueError(f"{len(masks)} masks for a vector of {len(vector)}")
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
