"""Encrypted vectors: encryption, decryption and the homomorphic operations vfl needs.

An :class:`EncryptedVector` is a list of raw Paillier ciphertexts (gmpy2
integers below n²) that all share one fixed-point scale ``frac_bits``: the
plaintext of element i is ``decode(m_i) = m_i / 2^frac_bits``.

Operations and what they cost (2048-bit key, one core):

============================  ==========================================  ======================
operation                     how                                         cost per element
============================  ==========================================  ======================
encrypt                       (1 + m·n) · ρ mod n², ρ a fresh obfuscator  ~0.6 mulmod + ρ
add plaintext                 c · (1 + m·n) mod n²                        ~0.6 mulmod
add ciphertext                c₁ · c₂ mod n²                              1 mulmod
times 2^-k                    frac_bits += k                              free
times plaintext scalar        c^s mod n² (one inversion if s < 0)         one powmod
re-randomise                  c · ρ mod n²                                1 mulmod + ρ
Xᵀ[[d]]                       grouped bucket multi-exponentiation         ~1–2.5 mulmods
============================  ==========================================  ======================

(ρ costs 40 mulmods from the fixed-base table at 2048 bits; see
:mod:`vfl.crypto.obfuscation`. "~0.6 mulmod": see :func:`times_one_plus_mn`.
Xᵀ[[d]] costs about one mulmod per row-feature on columns with few distinct
values and 2–2.5 on continuous ones; see :mod:`vfl.crypto.matvec`.)

Every encryption and re-randomisation takes fresh obfuscators from an
:class:`Encryptor`, so equal plaintexts never give equal ciphertexts and no
ciphertext has the readable form 1 + m·n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz

from vfl.crypto.codec import check_units, pack_ints, unpack_ints
from vfl.crypto.encoding import decode, encode
from vfl.crypto.keys import PrivateKey, PublicKey
from vfl.crypto.matvec import encrypted_matvec_t, fixed_point_exponents
from vfl.crypto.obfuscation import ObfuscationMode, ObfuscatorStock
from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import split_evenly
from vfl.errors import CiphertextError, EncodingOverflow, KeyMismatch


def times_one_plus_mn(c: mpz, m: mpz, n: mpz, nsq: mpz) -> mpz:
    """c · (1 + m·n) mod n², for c in [0, n²) and m in [0, n).

    Because (1 + m·n)·c = c + n·(m·c) and n·x mod n² only depends on x mod n,
    this is c + n·(m·(c mod n) mod n): products and a reduction of half the
    size of one full mulmod mod n², about 1.6× faster. The sum is below 2n², so
    one conditional subtraction reduces it.
    """
    out = c + n * (m * (c % n) % n)
    return out - nsq if out >= nsq else out


@dataclass(frozen=True)
class EncryptedVector:
    """Ciphertexts under one public key, all at fixed-point scale ``frac_bits``."""

    public_key: PublicKey
    ciphertexts: tuple[mpz, ...]
    frac_bits: int

    def __len__(self) -> int:
        return len(self.ciphertexts)

    # -- plaintext-side arithmetic -------------------------------------------------

    def scale_down(self, k: int) -> EncryptedVector:
        """Multiply every element by 2^-k. Free: only the scale changes."""
        return EncryptedVector(self.public_key, self.ciphertexts, self.frac_bits + k)

    def add_plain(self, values: np.ndarray, *, what: str = "plaintext") -> EncryptedVector:
        """[[x]] + v, with v encoded at this vector's scale."""
        values = np.asarray(values, dtype=np.float64).ravel()
        self._check_length(len(values), what)
        pk = self.public_key
        n, nsq = pk.n, pk.nsquare
        encoded = encode(values, self.frac_bits, n, what=what)
        return self._with([times_one_plus_mn(c, m, n, nsq) for c, m in zip(self.ciphertexts, encoded)])

    def add(self, other: EncryptedVector) -> EncryptedVector:
        """[[x]] + [[y]] elementwise; the finer scale wins (the coarser is shifted up)."""
        self._check_key(other)
        self._check_length(len(other), "other vector")
        a, b = self, other
        if a.frac_bits < b.frac_bits:
            a, b = b, a
        b = b._rescaled_to(a.frac_bits)
        nsq = self.public_key.nsquare
        return a._with([x * y % nsq for x, y in zip(a.ciphertexts, b.ciphertexts)])

    def mul_scalar(self, scalar: float, frac_bits: int) -> EncryptedVector:
        """[[x]] · s, with s encoded at ``frac_bits``; the result has scale frac_bits + own."""
        (s,) = encode(np.array([scalar]), frac_bits, self.public_key.n, what="scalar")
        pk = self.public_key
        exponent = int(s) if s < pk.max_int else int(s) - int(pk.n)
        nsq = pk.nsquare
        base = self.ciphertexts if exponent >= 0 else [gmpy2.invert(c, nsq) for c in self.ciphertexts]
        e = abs(exponent)
        return EncryptedVector(pk, tuple(gmpy2.powmod(c, e, nsq) for c in base), self.frac_bits + frac_bits)

    def sum(self) -> EncryptedVector:
        """[[Σ x_i]] as a vector of length one."""
        nsq = self.public_key.nsquare
        acc = mpz(1)
        for c in self.ciphertexts:
            acc = acc * c % nsq
        return self._with([acc])

    def dot(self, weights: np.ndarray, frac_bits: int, engine: Engine | int | None = None, *,
            what: str = "plaintext vector") -> EncryptedVector:
        """[[Σ w_i x_i]] as a vector of length one (one column of :meth:`matvec_t`).

        ``what`` names the plaintext ``weights`` in an overflow error (they are rarely features).
        """
        return self.matvec_t(np.asarray(weights, dtype=np.float64).reshape(-1, 1), frac_bits, engine, what=what)

    def matvec_t(self, X: np.ndarray, frac_bits: int, engine: Engine | int | None = None, *,
                 what: str = "features") -> EncryptedVector:
        """[[Xᵀ x]]: one ciphertext per column of X, with X encoded at ``frac_bits``.

        The result's scale is ``frac_bits + self.frac_bits``. ``what`` names X in an overflow error.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        self._check_length(X.shape[0], "rows of X")
        exps = fixed_point_exponents(X, frac_bits, what=what)
        limit = int(self.public_key.n).bit_length() // 4
        if exps.size and int(np.max(np.abs(exps))).bit_length() >= limit:
            hint = "standardise them" if what == "features" else "they are too large for fixed-point encoding"
            raise EncodingOverflow(f"{what} exceed the safe operand size of 2^{limit}; {hint}")
        out = encrypted_matvec_t(self.ciphertexts, exps, self.public_key.nsquare, engine)
        return EncryptedVector(self.public_key, tuple(out), self.frac_bits + frac_bits)

    def take(self, rows: np.ndarray | Sequence[int]) -> EncryptedVector:
        """The elements at ``rows``, in that order."""
        return self._with([self.ciphertexts[int(i)] for i in rows])

    # -- wire ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Fixed-width big-endian ciphertexts end to end (the scale travels separately)."""
        return pack_ints(self.ciphertexts, self.public_key.ciphertext_bytes)

    @classmethod
    def from_bytes(
        cls, public_key: PublicKey, data: bytes, frac_bits: int, count: int | None = None
    ) -> EncryptedVector:
        """Parse and check a vector: every value must lie in (0, n²) and be coprime to n."""
        cts = unpack_ints(data, public_key.ciphertext_bytes, count)
        check_units(cts, public_key.nsquare, public_key.n, "ciphertext")
        if not 0 <= frac_bits <= 512:
            raise CiphertextError(f"fixed-point scale {frac_bits} is out of range")
        return cls(public_key, tuple(cts), frac_bits)

    # -- helpers -------------------------------------------------------------------

    def _with(self, cts: Sequence[mpz]) -> EncryptedVector:
        return EncryptedVector(self.public_key, tuple(cts), self.frac_bits)

    def _rescaled_to(self, frac_bits: int) -> EncryptedVector:
        shift = frac_bits - self.frac_bits
        if shift == 0:
            return self
        nsq = self.public_key.nsquare
        factor = 1 << shift
        return EncryptedVector(self.public_key, tuple(gmpy2.powmod(c, factor, nsq) for c in self.ciphertexts), frac_bits)

    def _check_key(self, other: EncryptedVector) -> None:
        if other.public_key.n != self.public_key.n:
            raise KeyMismatch("cannot combine ciphertexts under different public keys")

    def _check_length(self, length: int, what: str) -> None:
        if length != len(self.ciphertexts):
            raise ValueError(f"{what} has length {length}, the encrypted vector {len(self.ciphertexts)}")


class Encryptor:
    """Encrypts and re-randomises for one public key, with a stock of fresh obfuscators.

    ``mode`` is ``"djn"`` (fast, the default) or ``"strict"`` (full r^n); see
    :mod:`vfl.crypto.obfuscation`. ``workers`` processes make obfuscators and
    compute encrypted products.
    """

    def __init__(self, public_key: PublicKey, mode: ObfuscationMode = "djn", engine: Engine | int | None = None) -> None:
        self.public_key = public_key
        self.engine = as_engine(engine)
        self.stock = ObfuscatorStock(public_key, mode, self.engine)

    def encrypt(self, values: np.ndarray, frac_bits: int, *, what: str = "value") -> EncryptedVector:
        """[[v]] at scale ``frac_bits``, each element with a fresh obfuscator."""
        values = np.asarray(values, dtype=np.float64).ravel()
        pk = self.public_key
        n, nsq = pk.n, pk.nsquare
        encoded = encode(values, frac_bits, n, what=what)
        obfuscators = self.stock.take(len(encoded))
        return EncryptedVector(pk, tuple(times_one_plus_mn(r, m, n, nsq) for m, r in zip(encoded, obfuscators)), frac_bits)

    def encrypt_residues(self, residues: Sequence[int]) -> tuple[mpz, ...]:
        """Fresh ciphertexts of raw residues in [0, n) (used for masks)."""
        pk = self.public_key
        n, nsq = pk.n, pk.nsquare
        obfuscators = self.stock.take(len(residues))
        return tuple(times_one_plus_mn(r, mpz(m) % n, n, nsq) for m, r in zip(residues, obfuscators))

    def rerandomize(self, vector: EncryptedVector) -> EncryptedVector:
        """The same plaintexts under fresh randomness: multiply each by a new [[0]]."""
        nsq = self.public_key.nsquare
        obfuscators = self.stock.take(len(vector))
        return vector._with([c * r % nsq for c, r in zip(vector.ciphertexts, obfuscators)])

    def prefetch(self, count: int) -> None:
        """Start making ``count`` obfuscators on spare cores for the next batch."""
        self.stock.refill(count)


#: Below this many ciphertexts a decryption stays in-process (a gradient has a few dozen).
DECRYPT_PARALLEL_THRESHOLD = 256


def _decrypt_task(private_key: PrivateKey, packed: bytes, width: int) -> list[mpz]:
    return [private_key.raw_decrypt(c) for c in unpack_ints(packed, width)]


def decrypt_residues(
    private_key: PrivateKey, ciphertexts: Sequence[int], engine: Engine | int | None = None
) -> list[mpz]:
    """Raw plaintext residues in [0, n). Only a key's owner calls this: the arbiter, and party B for the
    key it makes for a scorecard's binning.

    Long vectors are decrypted in chunks on the owner's own engine; the
    private key goes only to that engine's workers.
    """
    engine = as_engine(engine)
    if engine.workers <= 1 or len(ciphertexts) < DECRYPT_PARALLEL_THRESHOLD:
        return [private_key.raw_decrypt(c) for c in ciphertexts]
    width = private_key.public_key.ciphertext_bytes
    chunks = [(private_key, pack_ints(ciphertexts[s], width), width)
              for s in split_evenly(len(ciphertexts), engine.workers)]
    return [m for part in engine.map(_decrypt_task, chunks) for m in part]


def decrypt(private_key: PrivateKey, vector: EncryptedVector) -> np.ndarray:
    """Decrypt and decode a vector to float64 (tests and the arbiter's loss)."""
    if vector.public_key.n != private_key.public_key.n:
        raise KeyMismatch("this vector was encrypted under a different public key")
    return decode(decrypt_residues(private_key, vector.ciphertexts), vector.frac_bits, private_key.public_key.n)
