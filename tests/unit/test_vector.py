"""The encrypted-vector operations against plain numpy, and their randomness."""

import gmpy2
import numpy as np
import pytest

from vfl.crypto.masking import mask, unmask
from vfl.crypto.matvec import encrypted_matvec_t, fixed_point_exponents
from vfl.crypto.obfuscation import ObfuscatorStock, make_obfuscators
from vfl.crypto.vector import EncryptedVector, Encryptor, decrypt, decrypt_residues
from vfl.errors import CiphertextError, KeyMismatch


@pytest.fixture
def encryptor(public_key):
    return Encryptor(public_key)


@pytest.mark.parametrize("mode", ["djn", "strict"])
def test_encrypt_decrypt_round_trip(public_key, private_key, rng, mode):
    values = rng.normal(size=20) * 5

    enc = Encryptor(public_key, mode).encrypt(values, 32)

    assert np.allclose(decrypt(private_key, enc), values, atol=2.0**-32)


@pytest.mark.parametrize("mode", ["djn", "strict"])
def test_every_encryption_carries_fresh_randomness(public_key, mode):
    values = np.zeros(50)
    encryptor = Encryptor(public_key, mode)

    first, second = encryptor.encrypt(values, 16), encryptor.encrypt(values, 16)

    assert len(set(first.ciphertexts)) == 50  # equal plaintexts, distinct ciphertexts
    assert set(first.ciphertexts).isdisjoint(second.ciphertexts)
    # 1 + m·n mod n² is readable by anyone; it is ≡ 1 (mod n). None of ours is.
    assert all(c % public_key.n != 1 for c in first.ciphertexts + second.ciphertexts)


def test_rerandomize_keeps_plaintexts_and_changes_every_ciphertext(encryptor, private_key, rng):
    values = rng.normal(size=10)
    enc = encryptor.encrypt(values, 32)

    again = encryptor.rerandomize(enc)

    assert np.allclose(decrypt(private_key, again), values, atol=2.0**-32)
    assert all(a != b for a, b in zip(enc.ciphertexts, again.ciphertexts))


def test_add_plain_scale_down_and_add(encryptor, private_key, rng):
    x, y, z = rng.normal(size=8), rng.normal(size=8), rng.normal(size=8)
    enc_x, enc_z = encryptor.encrypt(x, 30), encryptor.encrypt(z, 20)

    result = enc_x.scale_down(2).add_plain(y).add(enc_z)

    assert np.allclose(decrypt(private_key, result), x / 4 + y + z, atol=1e-5)


def test_mul_scalar_handles_negative_scalars(encryptor, private_key):
    enc = encryptor.encrypt(np.array([1.5, -2.0, 0.25]), 20)

    result = enc.mul_scalar(-0.75, 16)

    assert np.allclose(decrypt(private_key, result), [-1.125, 1.5, -0.1875], atol=1e-5)


def test_matvec_matches_numpy(encryptor, private_key, rng):
    X = rng.normal(size=(200, 5)) * 3
    d = rng.normal(size=200)

    result = encryptor.encrypt(d, 32).matvec_t(X, 20)

    X_rounded = np.rint(X * 2**20) / 2**20
    assert result.frac_bits == 52
    assert np.allclose(decrypt(private_key, result), X_rounded.T @ d, atol=1e-6)


def test_bucket_method_equals_naive_powers_exactly(public_key, rng):
    cts = make_obfuscators(public_key, 64, "djn", 1)
    exps = fixed_point_exponents(rng.normal(size=(64, 3)) * 50, 16)

    fast = encrypted_matvec_t(cts, exps, public_key.nsquare)

    nsq = public_key.nsquare
    for j in range(3):
        naive = gmpy2.mpz(1)
        for c, e in zip(cts, exps[:, j]):
            naive = naive * gmpy2.powmod(c, int(e), nsq) % nsq
        assert fast[j] == naive


def test_matvec_with_worker_processes_equals_single_process(public_key, rng):
    cts = make_obfuscators(public_key, 3000, "djn", 1)
    exps = fixed_point_exponents(rng.normal(size=(3000, 8)), 16)

    assert encrypted_matvec_t(cts, exps, public_key.nsquare, engine=2) == encrypted_matvec_t(
        cts, exps, public_key.nsquare, engine=1
    )


def test_dot_is_one_column_product(encryptor, private_key, rng):
    x, w = rng.normal(size=30), rng.normal(size=30)

    result = encryptor.encrypt(x, 32).dot(w, 20)

    assert len(result) == 1
    assert decrypt(private_key, result)[0] == pytest.approx(np.dot(np.rint(w * 2**20) / 2**20, x), abs=1e-6)


def test_mask_round_trip_and_masked_values_hide_the_plaintext(encryptor, private_key, public_key, rng):
    g = rng.normal(size=6)
    enc = encryptor.encrypt(g, 40)

    masked, masks = mask(enc, encryptor)
    residues = decrypt_residues(private_key, masked.ciphertexts)

    assert np.allclose(unmask(residues, masks, public_key.n, 40), g, atol=2.0**-40)
    # What the arbiter sees is spread over the whole plaintext space, not near 0 or n. A uniform residue falls
    # within n / 2^64 of either end with probability 2^-63, so the 6 residues fail together below 2^-60.
    assert all(public_key.n // 2**64 < r < public_key.n - public_key.n // 2**64 for r in residues)
    assert set(masked.ciphertexts).isdisjoint(enc.ciphertexts)


def test_wire_bytes_round_trip(encryptor, public_key, private_key):
    enc = encryptor.encrypt(np.array([1.0, -2.0, 3.5]), 24)

    again = EncryptedVector.from_bytes(public_key, enc.to_bytes(), 24, 3)

    assert len(enc.to_bytes()) == 3 * public_key.ciphertext_bytes
    assert np.array_equal(decrypt(private_key, again), [1.0, -2.0, 3.5])


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (lambda data, pk: data[:-1], "not a whole number"),
        (lambda data, pk: bytes(len(data)), "outside"),
        (lambda data, pk: int(pk.n).to_bytes(pk.ciphertext_bytes, "big") + data[pk.ciphertext_bytes :], "shares a factor"),
        (lambda data, pk: b"\xff" * len(data), "outside"),
    ],
    ids=["truncated", "zeros", "multiple-of-n", "above-n-squared"],
)
def test_garbled_ciphertexts_are_refused(encryptor, public_key, corrupt, problem):
    data = encryptor.encrypt(np.array([1.0, 2.0]), 16).to_bytes()

    with pytest.raises(CiphertextError, match=problem):
        EncryptedVector.from_bytes(public_key, corrupt(data, public_key), 16)


def test_declared_count_must_match_payload(encryptor, public_key):
    data = encryptor.encrypt(np.array([1.0, 2.0]), 16).to_bytes()

    with pytest.raises(CiphertextError, match="declares 3"):
        EncryptedVector.from_bytes(public_key, data, 16, count=3)


def test_decrypt_with_another_key_is_refused(encryptor, private_key):
    from vfl.crypto.keys import generate_keypair

    _, other_private = generate_keypair(1024, min_bits=1024)

    with pytest.raises(KeyMismatch):
        decrypt(other_private, encryptor.encrypt(np.array([1.0]), 8))


def test_obfuscator_stock_never_hands_out_the_same_value_twice(public_key):
    stock = ObfuscatorStock(public_key, "djn", engine=2)
    stock.refill(600)

    first, second = stock.take(400), stock.take(400)

    assert len(set(first) | set(second)) == 800
