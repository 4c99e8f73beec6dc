"""Party A's RSA key for one PSI job, and the raw arithmetic on it.

The key has 3 primes by default (RFC 8017 multi-prime RSA), or 2 where a
deployment needs FIPS 186-4/186-5 keys. Which library does what, and why:

- 2 primes: ``cryptography`` (OpenSSL underneath) generates the key.
- 3 primes: this module generates the primes itself, with ``secrets`` for the
  candidates and gmpy2 (GMP) for the primality test. ``cryptography`` cannot
  help here: ``rsa.generate_private_key`` has no primes argument, its
  ``RSAPrivateNumbers`` holds exactly p and q, and it refuses to load a
  3-prime key that OpenSSL made (``openssl genpkey -pkeyopt
  rsa_keygen_primes:3``: "Invalid key"). gmpy2's ``next_prime`` is not used:
  the prime after a random start is biased towards primes that follow long
  gaps. Instead each candidate is a fresh ``secrets`` draw of exactly the
  prime's bit length with its top two bits set, tested with
  ``gmpy2.is_prime(c, 64)`` (GMP's mpz_probab_prime_p: trial division, a
  Baillie-PSW test, then more Miller-Rabin rounds; FIPS 186-5 Table B.1 asks
  for at most 5 Miller-Rabin rounds on random primes of these sizes).
- Signing, with either key: gmpy2, which neither library offers in raw form
  (blind signatures need unpadded RSA, y^d mod n).

A fresh key is made for every job, so signatures from one job are useless in
another.

Private key representation (RFC 8017 §3.2), primes r_1 = p, r_2 = q, r_3, ...:

- n = r_1 · r_2 · ... · r_u, with u = 2 or 3 primes, all distinct, and n has
  exactly the requested number of bits;
- dP = d mod (p − 1), dQ = d mod (q − 1), d_i = d mod (r_i − 1) for i ≥ 3,
  where d = e⁻¹ mod lcm(r_1 − 1, ..., r_u − 1), so e·d_i ≡ 1 (mod r_i − 1);
- qInv = q⁻¹ mod p;
- t_i = (r_1 · ... · r_{i−1})⁻¹ mod r_i for i ≥ 3.

Signing is RSASP1 with the CRT (RFC 8017 §5.1.2, step 2.b): one exponentiation
per prime, modulo that prime, then the recombination. An exponentiation costs
about the cube of its size, so 2 primes are about 4x cheaper than one
exponentiation mod n, and 3 primes a further ~2x (3 · (1/3)³ against
2 · (1/2)³). Each signature that leaves party A is checked, s^e = y (mod n),
before it is released: a CRT computation hit by a fault would otherwise give
out a value that reveals a factor of n (the Bellcore attack).

How many primes a modulus may have follows OpenSSL (``ossl_rsa_multip_cap``):
2 below 1024 bits, 3 below 4096, 4 below 8192, 5 above. More primes means
smaller primes, and the elliptic-curve method finds a factor in time that
depends on the size of the factor, not of n.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa
from gmpy2 import mpz

from vfl.errors import ConfigError, PSIError

PUBLIC_EXPONENT = 65537
DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 2048
#: Primes of a new PSI key: 3 signs about 2x faster than 2; 2 where FIPS 186-4/186-5 is required.
DEFAULT_PRIMES = 3
#: The ``reps`` argument of gmpy2.is_prime for generated primes (see the module docstring).
PRIMALITY_ROUNDS = 64
# Distinct primes must also be far apart: |r_i − r_j| > 2^(bits − 100), FIPS 186-5 A.1.3's rule for p and q.
_MIN_DISTANCE_BITS = 100
# Product of the primes below 2000: a modulus sharing a factor with it is not an RSA modulus.
_SMALL_PRIMES = mpz(1)
for _p in range(3, 2000, 2):
    if gmpy2.is_prime(_p):
        _SMALL_PRIMES *= _p


def max_primes(bits: int) -> int:
    """The most primes a ``bits``-bit modulus may have (OpenSSL's limits)."""
    if bits < 1024:
        return 2
    if bits < 4096:
        return 3
    if bits < 8192:
        return 4
    return 5


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

    def validate(self, *, min_bits: int = MIN_RSA_BITS, max_bits: int | None = None) -> None:
        """Party B's check of the key it is given (``max_bits`` bounds what each of its exponentiations costs)."""
        if self.e != PUBLIC_EXPONENT:
            raise PSIError(f"PSI key has public exponent {self.e}; only {PUBLIC_EXPONENT} is accepted")
        if self.bits < min_bits:
            raise PSIError(f"PSI key has {self.bits} bits; at least {min_bits} are required")
        if max_bits is not None and self.bits > max_bits:
            raise PSIError(f"PSI key has {self.bits} bits; at most {max_bits} are accepted here (limits.max_key_bits)")
        if self.n % 2 == 0 or gmpy2.gcd(self.n, _SMALL_PRIMES) != 1 or gmpy2.is_square(self.n):
            raise PSIError("PSI key modulus is not an RSA modulus (it has a small factor or is a square)")


@dataclass(frozen=True)
class RsaPrivateKey:
    """Party A's private key in RFC 8017 §3.2 form; never leaves party A.

    ``p, q, dp, dq, qinv`` are the first two primes' parts (p, q, dP, dQ,
    qInv); ``others`` holds (r_i, d_i, t_i) for each further prime (RFC 8017's
    otherPrimeInfos), empty for a 2-prime key. The invariants are those of the
    module docstring; :meth:`check` tests them.
    """

    public: RsaPublicKey
    p: mpz
    q: mpz
    dp: mpz
    dq: mpz
    qinv: mpz
    others: tuple[tuple[mpz, mpz, mpz], ...] = ()

    @property
    def primes(self) -> int:
        """How many primes n has: 2 or 3."""
        return 2 + len(self.others)

    @property
    def factors(self) -> tuple[mpz, ...]:
        """r_1 = p, r_2 = q, r_3, ...: the prime factors of n."""
        return (self.p, self.q, *(r for r, _, _ in self.others))

    @property
    def private_exponent(self) -> mpz:
        """d = e⁻¹ mod lcm(r_i − 1): the exponent a signer without the CRT would use."""
        lam = mpz(1)
        for r in self.factors:
            lam = gmpy2.lcm(lam, r - 1)
        return gmpy2.invert(self.public.e, lam)

    def crt_parts(self) -> tuple[mpz, ...]:
        """Everything a worker process needs to sign, after the value: ``sign_crt(y, *key.crt_parts())``.

        (n, e, p, q, dP, dQ, qInv), then r_i, d_i, t_i for each further prime.
        Treat it as opaque: its length depends on the number of primes.
        """
        flat = [x for info in self.others for x in info]
        return (self.public.n, self.public.e, self.p, self.q, self.dp, self.dq, self.qinv, *flat)

    def to_dict(self) -> dict[str, object]:
        """The key as hex strings (party A's secret: only for its own 0600 store)."""
        return {"n": hex(self.public.n), "e": int(self.public.e),
                "crt": [hex(v) for v in (self.p, self.q, self.dp, self.dq, self.qinv)],
                "others": [[hex(v) for v in info] for info in self.others]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RsaPrivateKey:
        """Read a key written by :meth:`to_dict`; refused unless every invariant holds."""
        try:
            p, q, dp, dq, qinv = (mpz(int(v, 16)) for v in data["crt"])
            others = tuple(tuple(mpz(int(v, 16)) for v in info) for info in data["others"])
            key = cls(RsaPublicKey(mpz(int(data["n"], 16)), mpz(int(data["e"]))), p, q, dp, dq, qinv, others)
        except (KeyError, TypeError, ValueError) as exc:
            raise PSIError(f"a stored PSI key is unreadable: {exc}") from exc
        key.check()
        return key

    def check(self) -> None:
        """Raise PSIError unless every RFC 8017 §3.2 invariant holds (a few multiplications and inversions)."""
        factors = self.factors
        e = self.public.e
        product = mpz(1)
        for r in factors:
            product *= r
        if product != self.public.n or len(set(factors)) != len(factors) or any(r < 3 for r in factors):
            raise PSIError("PSI key is inconsistent: its primes are not distinct factors of n")
        exponents = (self.dp, self.dq, *(d for _, d, _ in self.others))
        if any((e * d) % (r - 1) != 1 for r, d in zip(factors, exponents)):
            raise PSIError("PSI key is inconsistent: a CRT exponent is not e⁻¹ mod (r − 1)")
        if (self.q * self.qinv) % self.p != 1:
            raise PSIError("PSI key is inconsistent: qInv is not q⁻¹ mod p")
        prefix = self.p * self.q
        for r, _, t in self.others:
            if (prefix * t) % r != 1:
                raise PSIError("PSI key is inconsistent: a CRT coefficient t_i is not (r_1···r_(i−1))⁻¹ mod r_i")
            prefix *= r


def generate_rsa_key(
    bits: int = DEFAULT_RSA_BITS, *, min_bits: int = MIN_RSA_BITS, primes: int = DEFAULT_PRIMES
) -> RsaPrivateKey:
    """A fresh key with ``primes`` primes (2 or 3) and a modulus of exactly ``bits`` bits, e = 65537."""
    if isinstance(primes, bool) or not isinstance(primes, int):
        raise ConfigError(f"the number of RSA primes must be an integer (2 or 3), not {primes!r}")
    if bits < min_bits:
        raise ConfigError(f"refusing a {bits}-bit PSI key; the minimum is {min_bits}")
    cap = max_primes(bits)
    if not 2 <= primes <= cap:
        raise ConfigError(
            f"refusing a {primes}-prime PSI key of {bits} bits: a {bits}-bit modulus takes 2 to {cap} primes "
            "(3 from 1024 bits, 4 from 4096, 5 from 8192)"
        )
    if primes == 2:
        numbers = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits).private_numbers()
        public = RsaPublicKey(mpz(numbers.public_numbers.n), mpz(numbers.public_numbers.e))
        key = RsaPrivateKey(
            public, mpz(numbers.p), mpz(numbers.q), mpz(numbers.dmp1), mpz(numbers.dmq1), mpz(numbers.iqmp)
        )
    else:
        key = _multiprime_key(bits, primes)
    key.check()
    return key


def _prime_sizes(bits: int, primes: int) -> list[int]:
    """Bit lengths that add up to ``bits``, the longer ones first (2048 bits, 3 primes: 683, 683, 682)."""
    base, extra = divmod(bits, primes)
    return [base + (1 if i < extra else 0) for i in range(primes)]


def _random_prime(bits: int, e: mpz) -> mpz:
    """A uniformly drawn prime of exactly ``bits`` bits, top two bits set, with gcd(r − 1, e) = 1."""
    top = mpz(3) << (bits - 2)
    while True:
        candidate = mpz(secrets.randbits(bits)) | top | 1
        if gmpy2.gcd(candidate - 1, e) == 1 and gmpy2.is_prime(candidate, PRIMALITY_ROUNDS):
            return candidate


def _far_from(candidate: mpz, chosen: list[mpz]) -> bool:
    return all(abs(candidate - r) > mpz(1) << (min(candidate.bit_length(), r.bit_length()) - _MIN_DISTANCE_BITS)
               for r in chosen)


def _multiprime_key(bits: int, primes: int) -> RsaPrivateKey:
    e = mpz(PUBLIC_EXPONENT)
    sizes = _prime_sizes(bits, primes)
    while True:
        chosen: list[mpz] = []
        for size in sizes[:-1]:
            candidate = _random_prime(size, e)
            while not _far_from(candidate, chosen):
                candidate = _random_prime(size, e)
            chosen.append(candidate)
        head = math.prod(chosen, start=mpz(1))
        # Top two bits set on each prime keeps a product of two at full length, not of three:
        # redraw the last prime until n has exactly `bits` bits (always possible for 3 primes).
        for _ in range(64):
            last = _random_prime(sizes[-1], e)
            if (head * last).bit_length() == bits and _far_from(last, chosen):
                chosen.append(last)
                break
        else:
            continue
        n = head * last
        lam = mpz(1)
        for r in chosen:
            lam = gmpy2.lcm(lam, r - 1)
        d = gmpy2.invert(e, lam)
        if d.bit_length() <= bits // 2:  # FIPS 186-5 A.1.1: d > 2^(nlen/2); fails with probability ~2^-1000
            continue
        p, q, *rest = chosen
        others = []
        prefix = p * q
        for r in rest:
            others.append((r, d % (r - 1), gmpy2.invert(prefix, r)))
            prefix *= r
        return RsaPrivateKey(
            RsaPublicKey(n, e), p, q, d % (p - 1), d % (q - 1), gmpy2.invert(q, p), tuple(others)
        )


def sign_crt(
    y: mpz, n: mpz, e: mpz, p: mpz, q: mpz, dp: mpz, dq: mpz, qinv: mpz, *others: mpz, verify: bool = True
) -> mpz:
    """y^d mod n by RSASP1 with the CRT (RFC 8017 §5.1.2), verified unless ``verify=False``.

    Call it as ``sign_crt(y, *key.crt_parts())``; ``others`` is r_3, d_3, t_3
    (and so on) for a key with more than 2 primes. Raises PSIError rather than
    release a faulty signature. ``verify=False`` is only for signatures that
    never leave party A (its own IDs, of which only the H2 hash is published,
    which reveals nothing about n).
    """
    powmod = gmpy2.powmod
    m1 = powmod(y, dp, p)
    m2 = powmod(y, dq, q)
    s = m2 + q * ((qinv * (m1 - m2)) % p)
    if others:
        prefix = p * q  # R_i = r_1 · ... · r_(i−1)
        for i in range(0, len(others), 3):
            r, d, t = others[i], others[i + 1], others[i + 2]
            s += prefix * ((t * (powmod(y, d, r) - s)) % r)
            prefix *= r
    if verify and powmod(s, e, n) != y:
        raise PSIError("a signature failed its s^e = y check (computation fault); refusing to release it")
    return s


def sign_many(values: list[mpz], *parts: mpz) -> list[mpz]:
    """Worker task: sign a chunk of values, each verified (module level, so a process pool can run it).

    ``parts`` is ``key.crt_parts()``.
    """
    return [sign_crt(v, *parts) for v in values]
