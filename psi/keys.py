"""Party A's RSA key for one PSI job, and the raw arithmetic on it.

``cryptography`` generates the key (it cannot do raw, unpadded RSA, which
blind signatures need); gmpy2 does the arithmetic. A fresh key is made for
every job, so signatures from one job are useless in another.

Signing uses the Chinese remainder theorem (two half-size exponentiations,
about 3-4x faster than one full one) and checks s^e = y (mod n) before
releasing each signature: a CRT computation hit by a fault would otherwise
give out a value that reveals a factor of n (the Bellcore attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa
from gmpy2 import mpz

from vfl.errors import ConfigError, PSIError

PUBLIC_EXPONENT = 65537
DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 2048
# Product of the primes below 2000: a modulus sharing a factor with it is not an RSA modulus.
_SMALL_PRIMES = mpz(1)
for _p in range(3, 2000, 2):
    if gmpy2.is_prime(_p):
        _SMALL_PRIMES *= _p


@dataclass(frozen=True)
class RsaPublicKey:
    n: mpz
    e: mpz

    @property
    def bits(self) -> int:
        return int(self.n.bit_length())

    @property
    def byte_width(self) -> int:
        return (self.bits + 7) // 8

    def validate(self, *, min_bits: int = MIN_RSA_BITS) -> None:
        """Party B's check of the key it is given."""
        if self.e != PUBLIC_EXPONENT:
            raise PSIError(f"PSI key has public exponent {self.e}; only {PUBLIC_EXPONENT} is accepted")
        if self.bits < min_bits:
            raise PSIError(f"PSI key has {self.bits} bits; at least {min_bits} are required")
        if self.n % 2 == 0 or gmpy2.gcd(self.n, _SMALL_PRIMES) != 1 or gmpy2.is_square(self.n):
            raise PSIError("PSI key modulus is not an RSA modulus (it has a small factor or is a square)")


@dataclass(frozen=True)
class RsaPrivateKey:
    """The CRT parts of party A's key; never leaves party A."""

    public: RsaPublicKey
    p: mpz
    q: mpz
    dp: mpz
    dq: mpz
    qinv: mpz

    def crt_parts(self) -> tuple[mpz, mpz, mpz, mpz, mpz, mpz, mpz]:
        """Everything a worker process needs to sign: (n, e, p, q, dp, dq, qinv)."""
        return (self.public.n, self.public.e, self.p, self.q, self.dp, self.dq, self.qinv)


def generate_rsa_key(bits: int = DEFAULT_RSA_BITS, *, min_bits: int = MIN_RSA_BITS) -> RsaPrivateKey:
    if bits < min_bits:
        raise ConfigError(f"refusing a {bits}-bit PSI key; the minimum is {min_bits}")
    numbers = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits).private_numbers()
    public = RsaPublicKey(mpz(numbers.public_numbers.n), mpz(numbers.public_numbers.e))
    return RsaPrivateKey(
        public, mpz(numbers.p), mpz(numbers.q), mpz(numbers.dmp1), mpz(numbers.dmq1), mpz(numbers.iqmp)
    )


def sign_crt(y: mpz, n: mpz, e: mpz, p: mpz, q: mpz, dp: mpz, dq: mpz, qinv: mpz, *, verify: bool = True) -> mpz:
    """y^d mod n by CRT, verified: raises PSIError rather than release a faulty signature.

    ``verify=False`` is only for signatures that never leave party A (its own
    IDs, of which only the H2 hash is published, which reveals nothing about n).
    """
    sp = gmpy2.powmod(y, dp, p)
    sq = gmpy2.powmod(y, dq, q)
    s = sq + q * ((qinv * (sp - sq)) % p)
    if verify and gmpy2.powmod(s, e, n) != y:
        raise PSIError("a signature failed its s^e = y check (computation fault); refusing to release it")
    return s


def sign_many(values: list[mpz], n: mpz, e: mpz, p: mpz, q: mpz, dp: mpz, dq: mpz, qinv: mpz) -> list[mpz]:
    """Worker task: sign a chunk of values (module level, so a process pool can run it)."""
    return [sign_crt(v, n, e, p, q, dp, dq, qinv) for v in values]
