"""The RSA pieces of the PSI: keys, CRT signing with its fault check, the two hashes."""

import gmpy2
import pytest
from gmpy2 import mpz

from psi.hashing import fdh, tag
from psi.keys import RsaPublicKey, generate_rsa_key, max_primes, sign_crt, sign_many
from vfl.errors import ConfigError, PSIError


@pytest.fixture(scope="module")
def rsa_key():
    return generate_rsa_key(1024, min_bits=1024)


@pytest.fixture(scope="module", params=[2, 3], ids=["2-prime", "3-prime"])
def any_key(request):
    return generate_rsa_key(1024, min_bits=1024, primes=request.param)


def test_the_default_key_has_three_primes(rsa_key):
    assert rsa_key.primes == 3
    assert len(rsa_key.crt_parts()) == 10


def test_a_key_has_the_asked_primes_and_exactly_the_asked_bits(any_key):
    factors = any_key.factors

    assert len(set(factors)) == any_key.primes
    assert all(gmpy2.is_prime(r, 50) for r in factors)
    product = mpz(1)
    for r in factors:
        product *= r
    assert product == any_key.public.n
    assert any_key.public.n.bit_length() == 1024
    assert all(gmpy2.gcd(r - 1, any_key.public.e) == 1 for r in factors)


def test_crt_signature_equals_plain_exponentiation(any_key):
    n = any_key.public.n
    # d from λ(n) computed here, not by the key, so the test does not trust the key's own arithmetic
    lam = mpz(1)
    for r in any_key.factors:
        lam = gmpy2.lcm(lam, r - 1)
    d = gmpy2.invert(any_key.public.e, lam)
    values = [fdh(f"id{i}", b"s" * 32, n) for i in range(20)]

    signed = sign_many(values, *any_key.crt_parts())

    assert signed == [gmpy2.powmod(y, d, n) for y in values]
    assert all(gmpy2.powmod(s, any_key.public.e, n) == y for s, y in zip(signed, values))


@pytest.mark.parametrize("fault", range(3))
def test_a_faulty_crt_part_is_caught_before_release(fault):
    key = generate_rsa_key(1024, min_bits=1024, primes=3)
    parts = list(key.crt_parts())
    exponent_at = [4, 5, 8][fault]  # dP, dQ, d_3: a fault in one prime's exponentiation
    parts[exponent_at] += 1
    y = fdh("bob", b"s" * 32, key.public.n)

    with pytest.raises(PSIError, match="computation fault"):
        sign_crt(y, *parts)


def test_key_invariants_are_checked(rsa_key):
    from dataclasses import replace

    broken = replace(rsa_key, qinv=rsa_key.qinv + 1)

    with pytest.raises(PSIError, match="qInv"):
        broken.check()


@pytest.mark.parametrize("bits, primes", [(1024, 4), (2048, 4), (2048, 1), (2048, True)])
def test_prime_counts_beyond_what_the_modulus_allows_are_refused(bits, primes):
    with pytest.raises(ConfigError, match="prime"):
        generate_rsa_key(bits, min_bits=1024, primes=primes)


def test_the_prime_cap_follows_openssl():
    assert [max_primes(b) for b in (512, 1024, 2048, 4096, 8192)] == [2, 3, 3, 4, 5]


def test_full_domain_hash_spans_the_modulus(rsa_key):
    n = rsa_key.public.n

    values = [fdh(f"id{i}", b"salt" * 8, n) for i in range(200)]

    # A 256-bit hash would stay below 2^256; a full-domain one fills all of Z_n.
    assert min(v.bit_length() for v in values) > 256
    assert max(v.bit_length() for v in values) >= n.bit_length() - 1
    assert len(set(values)) == 200


def test_hashes_depend_on_the_salt_and_are_domain_separated(rsa_key):
    n = rsa_key.public.n

    assert fdh("x", b"a" * 32, n) != fdh("x", b"b" * 32, n)
    assert tag(mpz(5), b"a" * 32, 128) != tag(mpz(5), b"b" * 32, 128)
    assert tag(mpz(5), b"a" * 32, 128) != int(fdh("x", b"a" * 32, n)).to_bytes(128, "big")[:32]


def test_requester_refuses_weak_keys(rsa_key):
    with pytest.raises(PSIError, match="exponent 3"):
        RsaPublicKey(rsa_key.public.n, mpz(3)).validate(min_bits=1024)
    with pytest.raises(PSIError, match="at least 2048"):
        rsa_key.public.validate()
    with pytest.raises(PSIError, match="not an RSA modulus"):
        RsaPublicKey(rsa_key.public.n * 3, mpz(65537)).validate(min_bits=1024)


def test_small_keys_cannot_be_generated_outside_tests():
    with pytest.raises(ConfigError, match="minimum is 2048"):
        generate_rsa_key(1024)


def test_batch_inversion_matches_one_by_one(rsa_key):
    from psi.protocol import batch_invert

    n = rsa_key.public.n
    values = [mpz(v) for v in (2, 3, 12345, int(n) - 1, 65537)]

    assert batch_invert(values, n) == [gmpy2.invert(v, n) for v in values]
