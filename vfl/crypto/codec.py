"""Compact binary packing of big-integer vectors.

Ciphertexts, RSA values and masked plaintexts travel as fixed-width big-endian
byte strings laid end to end: ``count * width`` bytes, no separators, no
decimal text. A 2048-bit Paillier ciphertext (an integer below n², 4096 bits)
takes exactly 512 bytes; as a decimal string in JSON it would take about 1,240.

Invariant: ``unpack_ints(pack_ints(xs, w), w) == xs`` for every list of
non-negative integers below ``256**w``. Anything else raises a
:class:`~vfl.errors.CiphertextError` naming the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import gmpy2
from gmpy2 import mpz

from vfl.errors import CiphertextError


def byte_width(modulus: int) -> int:
    """Bytes needed to hold any integer in [0, modulus)."""
    return (int(modulus - 1).bit_length() + 7) // 8


def pack_ints(values: Iterable[int], width: int) -> bytes:
    """Pack non-negative integers as fixed-width big-endian bytes, end to end."""
    try:
        return b"".join(int(v).to_bytes(width, "big") for v in values)
    except OverflowError as exc:  # negative, or too wide for the slot
        raise CiphertextError(
            f"cannot pack an integer into {width} bytes: {exc}; "
            "values must be non-negative and below the modulus"
        ) from exc


def unpack_ints(data: bytes, width: int, count: int | None = None) -> list[mpz]:
    """Split ``data`` into ``width``-byte big-endian integers (as gmpy2 ``mpz``).

    ``count``, when given, must match: a truncated or padded payload is an error,
    never a silently shorter vector.
    """
    if width <= 0:
        raise CiphertextError(f"byte width must be positive, got {width}")
    if len(data) % width:
        raise CiphertextError(
            f"payload of {len(data)} bytes is not a whole number of {width}-byte values; "
            "it was truncated or produced with a different key size"
        )
    n = len(data) // width
    if count is not None and n != count:
        raise CiphertextError(f"payload holds {n} values but the message declares {count}")
    view = memoryview(data)
    return [mpz(int.from_bytes(view[i * width : (i + 1) * width], "big")) for i in range(n)]


def batch_inverse(values: Sequence[int], modulus: int) -> list[mpz]:
    """The inverses mod ``modulus`` of all ``values``, with one modular inversion (Montgomery's trick).

    Three multiplications per value instead of one inversion each: an
    inversion of a 2048-bit RSA value or a 255-bit field element costs ten or
    more multiplications. Raises ZeroDivisionError when the product of the
    values is not invertible (some value shares a factor with the modulus);
    callers say what that means for them.
    """
    m = mpz(modulus)
    prefix: list[mpz] = []
    acc = mpz(1)
    for v in values:
        acc = acc * v % m
        prefix.append(acc)
    inverse = gmpy2.invert(acc, m)  # ZeroDivisionError when acc is not a unit
    out = [mpz(0)] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inverse * prefix[i - 1] % m
        inverse = inverse * values[i] % m
    if values:
        out[0] = inverse
    return out


def check_units(values: Sequence[int], modulus: int, coprime_to: int, what: str) -> None:
    """Check every value lies in (0, modulus) and is coprime to ``coprime_to``.

    For Paillier ciphertexts ``modulus`` is n² and ``coprime_to`` is n; for RSA
    values both are n. A value outside the range or sharing a factor with n is
    either garbage or an attack (it would reveal a factor of n), so we refuse it.

    Since n = p·q, a product is coprime to n exactly when every factor is, so
    one running product mod n and a single gcd check the whole vector; the
    per-element scan runs only to name an offender.
    """
    m = mpz(modulus)
    f = mpz(coprime_to)
    product = mpz(1)
    for i, v in enumerate(values):
        if not 0 < v < m:
            raise CiphertextError(f"{what}[{i}] is outside (0, modulus); it is corrupt or forged")
        product = product * (v % f) % f  # reducing v first halves the product's size
    if gmpy2.gcd(product, f) == 1:
        return
    for i, v in enumerate(values):
        if gmpy2.gcd(v, f) != 1:
            raise CiphertextError(f"{what}[{i}] shares a factor with the key modulus; refusing it")
