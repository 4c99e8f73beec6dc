"""Fixed-point encoding of real numbers as Paillier plaintexts.

A real x is encoded at ``frac_bits`` k as the integer ``round(x · 2^k)``, and a
negative integer v as ``n + v`` (its residue mod n). Decoding maps a residue r
back: r < max_int is positive, r > n − max_int is negative, where
``max_int = n // 3``. Anything in between is an overflow and raises
:class:`~vfl.errors.EncodingOverflow`: it never wraps silently.

Why powers of two: multiplying an encrypted value by 1/4 (the logistic Taylor
coefficient) is then free, because it only changes k, and decoding is exact
integer arithmetic followed by one correctly rounded division.

Precision: encoding rounds to the nearest multiple of 2^-k, so the error of one
value is at most 2^-(k+1). A product of a value at k₁ and one at k₂ carries
k₁ + k₂ fractional bits and is exact in the ciphertext; only the rounding of
the two inputs matters.

Headroom (the overflow rule): every single encoded operand must stay below
``2^(bits/4)`` in magnitude (:func:`operand_limit`). A sum of fewer than
2^(bits/4) products of two such operands is then below 2^(3·bits/4), far inside
max_int ≈ 2^(bits−2). Every homomorphic product in vfl is of that shape, so a
value that passes :func:`encode` can never make a later result wrap. For a
1024-bit key the operand limit is 2^256; standardised features at k = 20 use
about 25 bits of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gmpy2 import mpz

from vfl.errors import EncodingError, EncodingOverflow


def operand_limit(n: int) -> mpz:
    """Largest magnitude (exclusive) an encoded operand may have under modulus n."""
    return mpz(1) << (int(n).bit_length() // 4)


def encode_ints(values: np.ndarray, frac_bits: int, *, what: str = "value") -> list[int]:
    """Scale reals by 2^k and round to signed Python ints (no modulus yet).

    Multiplying a float64 by a power of two is exact (short of overflow to
    infinity), and ``int()`` of an integral float64 is exact, so the only error
    is the rounding itself.
    """
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
        raise EncodingError(f"{what}[{bad}] is {arr.ravel()[bad]}; only finite numbers can be encrypted")
    scaled = np.rint(np.ldexp(arr.ravel(), frac_bits))
    if not np.all(np.isfinite(scaled)):
        raise EncodingOverflow(f"{what} times 2^{frac_bits} overflows a float; lower frac_bits or rescale the data")
    return [int(v) for v in scaled]


def encode(values: np.ndarray, frac_bits: int, n: int, *, what: str = "value") -> list[mpz]:
    """Encode reals as residues mod n at ``frac_bits`` fractional bits.

    Raises :class:`EncodingOverflow` if any value breaks the headroom rule.
    """
    limit = operand_limit(n)
    out: list[mpz] = []
    modulus = mpz(n)
    for i, v in enumerate(encode_ints(values, frac_bits, what=what)):
        if abs(v) >= limit:
            raise EncodingOverflow(
                f"{what}[{i}] = {v / 2**frac_bits:.6g} is too large to encrypt safely at "
                f"{frac_bits} fractional bits (limit 2^{limit.bit_length() - 1 - frac_bits}); "
                "standardise the data or lower the precision"
            )
        out.append(mpz(v) % modulus)
    return out


def decode(residues: Sequence[int], frac_bits: int, n: int, *, what: str = "value") -> np.ndarray:
    """Decode residues mod n at ``frac_bits`` back to float64.

    Raises :class:`EncodingOverflow` when a residue lies in the ambiguous middle
    band [max_int, n − max_int], which only an overflow can produce.
    """
    modulus = mpz(n)
    max_int = modulus // 3
    scale = 1 << frac_bits
    out = np.empty(len(residues), dtype=np.float64)
    for i, r in enumerate(residues):
        r = mpz(r) % modulus
        if r < max_int:
            v = int(r)
        elif r > modulus - max_int:
            v = int(r - modulus)
        else:
            raise EncodingOverflow(
                f"{what}[{i}] decrypted into the overflow band: a homomorphic result wrapped "
                "around the modulus (inputs too large for the key, or a corrupted value)"
            )
        try:
            out[i] = v / scale  # int / int is correctly rounded in Python
        except OverflowError as exc:
            raise EncodingOverflow(f"{what}[{i}] decodes to a number too large for a float") from exc
    return out
