"""vfl.crypto.masking.secret_permutation: the orders that hide rows (PSI tags, the arbiter's scores)."""

import numpy as np

from vfl.crypto.masking import secret_permutation


def test_it_is_a_permutation_of_every_row():
    order = secret_permutation(10_000)

    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(10_000))


def test_two_draws_differ_and_neither_is_the_identity():
    first, second = secret_permutation(1_000), secret_permutation(1_000)

    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(1_000))


def test_each_position_is_uniform_over_many_draws():
    # 3 rows, 6 orders: 6,000 draws give each order about 1,000 times; a fixed or biased sort would not.
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(6_000):
        key = tuple(secret_permutation(3).tolist())
        counts[key] = counts.get(key, 0) + 1

    assert len(counts) == 6
    assert all(800 < c < 1_200 for c in counts.values())


def test_empty_and_single():
    assert secret_permutation(0).tolist() == []
    assert secret_permutation(1).tolist() == [0]
