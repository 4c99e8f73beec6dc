import pytest

from vfl.crypto.keys import PrivateKey, PublicKey, generate_keypair
from vfl.errors import KeyMismatch


def test_generated_primes_are_3_mod_4_and_n_has_exact_size(keypair):
    public, private = keypair

    assert private.p % 4 == 3 and private.q % 4 == 3
    assert private.p * private.q == public.n
    assert public.bits == 1024


def test_djn_base_encrypts_zero(keypair):
    public, private = keypair

    assert private.raw_decrypt(public.hs) == 0


def test_small_keys_are_refused_outside_tests():
    with pytest.raises(KeyMismatch, match="minimum is 2048"):
        generate_keypair(1024)


def test_public_key_validate_refuses_too_few_bits(public_key):
    with pytest.raises(KeyMismatch, match="at least 2048"):
        public_key.validate()


def test_keys_round_trip_through_dicts(keypair):
    public, private = keypair

    again = PrivateKey.from_dict(private.to_dict())

    assert again.public_key == PublicKey.from_dict(public.to_dict()) == public
    assert again.raw_decrypt(public.phe_key.raw_encrypt(42)) == 42


def test_private_key_not_matching_public_key_is_refused(keypair):
    data = keypair[1].to_dict()
    data["p"] = format(int(keypair[1].p) + 2, "x")

    with pytest.raises(KeyMismatch, match="does not match"):
        PrivateKey.from_dict(data)


def test_fingerprint_is_stable_and_distinguishes_keys(keypair):
    other, _ = generate_keypair(1024, min_bits=1024)

    assert keypair[0].fingerprint() == PublicKey.from_dict(keypair[0].to_dict()).fingerprint()
    assert keypair[0].fingerprint() != other.fingerprint()
