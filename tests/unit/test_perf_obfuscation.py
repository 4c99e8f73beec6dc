"""The faster encryption path: the fixed-base table, its random exponents, the 1 + m·n shortcut.

Correctness only (no timing).
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz

from vfl.crypto.obfuscation import (
    SMALL_KEY_TABLE_WINDOW_BITS,
    TABLE_WINDOW_BITS,
    FixedBaseTable,
    ObfuscatorStock,
    djn_obfuscators,
    short_exponent_bits,
    table_window,
)
from vfl.crypto.vector import Encryptor, decrypt, times_one_plus_mn
from vfl.errors import ConfigError


@pytest.fixture(scope="module")
def wide_table(public_key) -> FixedBaseTable:
    """An 11-bit table (the 2048-bit default) over a short exponent, to keep it cheap."""
    return FixedBaseTable(public_key.hs, public_key.nsquare, 60, window=TABLE_WINDOW_BITS)


def test_table_rows_hold_the_documented_powers(public_key, wide_table):
    nsq, w = public_key.nsquare, wide_table.window
    assert wide_table.exponent_bits == wide_table.windows * w >= 60
    for i in range(wide_table.windows):
        row = wide_table.rows[i]
        assert len(row) == 1 << w and row[0] == 1
        for j in (1, 2, (1 << w) - 1):
            assert row[j] == gmpy2.powmod(public_key.hs, j << (w * i), nsq)


def test_table_power_equals_powmod(public_key, wide_table):
    nsq = public_key.nsquare
    top = (1 << wide_table.exponent_bits) - 1
    for alpha in [0, 1, 2047, 2048, top, *(secrets.randbits(wide_table.exponent_bits) for _ in range(20))]:
        assert wide_table.power(alpha) == gmpy2.powmod(public_key.hs, alpha, nsq)


def test_table_power_refuses_exponents_out_of_range(wide_table):
    with pytest.raises(ValueError):
        wide_table.power(1 << wide_table.exponent_bits)
    with pytest.raises(ValueError):
        wide_table.power(-1)


@pytest.mark.parametrize("window", [0, 17])
def test_table_window_must_be_sane(public_key, window):
    with pytest.raises(ConfigError):
        FixedBaseTable(public_key.hs, public_key.nsquare, 40, window=window)


def test_random_digits_cover_the_window_and_look_uniform(wide_table):
    digits = np.array(wide_table.random_digits(3000))

    assert digits.shape == (3000, wide_table.windows)
    assert digits.min() >= 0 and digits.max() < 1 << wide_table.window
    # 18,000 uniform 11-bit digits: the mean is 1023.5 ± 4.41 (1 sd). 35 is 7.9 sd, which a random table misses
    # with probability about 2^-48 (the former 30, 6.8 sd, about 2^-36).
    assert abs(digits.mean() - 1023.5) < 35
    assert wide_table.random_digits(0) == []


def test_random_powers_are_powers_of_hs_from_their_digits(public_key, wide_table, monkeypatch):
    fixed = [[5, 0, 7, 1, 2047, 3]]
    monkeypatch.setattr(wide_table, "random_digits", lambda count: fixed * count)
    alpha = sum(d << (wide_table.window * i) for i, d in enumerate(fixed[0]))

    (value,) = wide_table.random_powers(1)

    assert value == gmpy2.powmod(public_key.hs, alpha, public_key.nsquare)


def test_djn_obfuscators_are_fresh_n_th_powers(public_key, private_key):
    obfuscators = djn_obfuscators(public_key.n, public_key.hs, 300)

    assert len(set(obfuscators)) == 300
    # An n-th power encrypts zero.
    assert all(private_key.raw_decrypt(r) == 0 for r in obfuscators[:20])


def test_table_window_follows_key_size():
    assert table_window(2048) == table_window(3072) == TABLE_WINDOW_BITS
    assert table_window(1024) == SMALL_KEY_TABLE_WINDOW_BITS
    assert short_exponent_bits(2048) == 448


def test_one_plus_mn_shortcut_equals_the_full_product(public_key, rng):
    n, nsq = public_key.n, public_key.nsquare
    cases = [(mpz(1), mpz(0)), (nsq - 1, n - 1), (mpz(2), n - 1), (nsq - 1, mpz(1))]
    cases += [(mpz(secrets.randbelow(int(nsq))), mpz(secrets.randbelow(int(n)))) for _ in range(200)]
    for c, m in cases:
        assert times_one_plus_mn(c, m, n, nsq) == (1 + m * n) * c % nsq


@pytest.mark.parametrize("mode", ["djn", "strict"])
def test_encryptions_decrypt_and_are_never_the_readable_form(public_key, private_key, rng, mode):
    values = np.concatenate([rng.normal(size=30) * 100, [0.0, -0.0, 1e-9, -1e-9]])
    encryptor = Encryptor(public_key, mode)

    enc = encryptor.encrypt(values, 32)

    assert np.allclose(decrypt(private_key, enc), values, atol=2.0**-32)
    assert all(c % public_key.n != 1 for c in enc.ciphertexts)
    assert all(0 < c < public_key.nsquare for c in enc.ciphertexts)


def test_prefetched_stock_is_used_and_never_repeats(public_key, private_key):
    encryptor = Encryptor(public_key, "djn", engine=2)
    encryptor.prefetch(700)

    first = encryptor.encrypt(np.zeros(600), 16)
    second = encryptor.encrypt(np.zeros(600), 16)  # 100 left in stock, 500 made fresh

    assert len(set(first.ciphertexts) | set(second.ciphertexts)) == 1200
    assert np.array_equal(decrypt(private_key, second), np.zeros(600))


def test_stock_without_workers_still_hands_out_fresh_values(public_key):
    stock = ObfuscatorStock(public_key, "djn", engine=1)
    stock.refill(50)  # a no-op with one worker: nothing to overlap with

    assert len(stock) == 0
    assert len(set(stock.take(40)) | set(stock.take(40))) == 80
