"""The RSA pieces of the PSI: keys, CRT signing with its fault check, the two hashes."""

import gmpy2
import pytest
from gmpy2 import mpz

from psi.hashing import fdh, tag
from psi.keys import RsaPublicKey, generate_rsa_key, sign_crt
from vfl.errors import ConfigError, PSIError


@pytest.fixture(scope="module")
def rsa_key():
    return generate_rsa_key(1024, min_bits=1024)


def test_crt_signature_equals_plain_exponentiation(rsa_key):
    n = rsa_key.public.n
    d = gmpy2.invert(rsa_key.public.e, (rsa_key.p - 1) * (rsa_key.q - 1))
    y = fdh("alice", b"s" * 32, n)

    assert sign_crt(y, *rsa_key.crt_parts()) == gmpy2.powmod(y, d, n)


def test_a_faulty_crt_half_is_caught_before_release(rsa_key):
    n, e, p, q, dp, dq, qinv = rsa_key.crt_parts()
    y = fdh("bob", b"s" * 32, n)

    with pytest.raises(PSIError, match="computation fault"):
        sign_crt(y, n, e, p, q, dp + 1, dq, qinv)  # a fault in one half


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
