"""The faster encrypted product: equal-exponent grouping, signed digits, planning, dealing.

Correctness only (no timing): every plan and every split over processes must
give exactly the product of plain powmods.
"""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz

from vfl.crypto.matvec import (
    MAX_WINDOW,
    MIN_WINDOW,
    ColumnPlan,
    deal_by_cost,
    encrypted_matvec_t,
    fixed_point_exponents,
    group_equal_exponents,
    multiexp_signed,
    plan_column,
    signed_digits,
)
from vfl.crypto.obfuscation import make_obfuscators


def naive_product(cts, exps, nsq) -> mpz:
    out = mpz(1)
    for c, e in zip(cts, np.asarray(exps).tolist()):
        out = out * gmpy2.powmod(c, int(e), nsq) % nsq
    return out


@pytest.fixture(scope="module")
def units(public_key):
    """Units mod n² standing in for ciphertexts (any unit will do for the algebra)."""
    return make_obfuscators(public_key, 400, "djn", 1)


def exponent_columns(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {
        "continuous": fixed_point_exponents(rng.normal(size=rows) * 3, 16),
        "few values": fixed_point_exponents(rng.integers(-3, 4, size=rows) / 1.7, 16),
        "binary": fixed_point_exponents(rng.integers(0, 2, size=rows).astype(float), 16),
        "constant": np.full(rows, 1 << 16, dtype=np.int64),
        "all zero": np.zeros(rows, dtype=np.int64),
        "heavy tail": fixed_point_exponents(rng.standard_t(1.5, size=rows), 20),
        "extremes": rng.choice(np.array([0, 1, -1, 2**62 - 1, -(2**62 - 1)], dtype=np.int64), size=rows),
        "wide": rng.integers(-(2**40), 2**40, size=rows),
    }


@pytest.mark.parametrize("window", range(MIN_WINDOW, MAX_WINDOW + 1))
def test_signed_digits_recompose_exactly_and_stay_small(rng, window):
    values = np.concatenate([rng.integers(-(2**62), 2**62, size=200), [0, 1, -1, 2**62 - 1, -(2**62 - 1)]])

    digits = signed_digits(values, window)

    weights = [1 << (window * t) for t in range(digits.shape[0])]
    for i, v in enumerate(values.tolist()):
        assert sum(int(d) * w for d, w in zip(digits[:, i].tolist(), weights)) == v
    assert np.all(np.abs(digits) <= 1 << (window - 1))


def test_signed_digits_of_nothing_and_of_zeros():
    assert signed_digits(np.zeros(5, dtype=np.int64), 4).shape == (0, 5)
    assert signed_digits(np.array([], dtype=np.int64), 4).shape == (0, 0)


@pytest.mark.parametrize("window", [0, 1, MAX_WINDOW + 1])
def test_signed_digits_refuse_windows_that_cannot_carry(window):
    with pytest.raises(ValueError, match="window"):
        signed_digits(np.array([5]), window)


def test_grouping_keeps_the_product_and_drops_zeros(public_key, units):
    nsq = public_key.nsquare
    exps = np.array([3, 0, -2, 3, 3, -2, 0, 7] * 5, dtype=np.int64)
    cts = units[: len(exps)]

    bases, values = group_equal_exponents(cts, exps, nsq)

    assert sorted(values.tolist()) == [-2, 3, 7]
    assert naive_product(bases, values, nsq) == naive_product(cts, exps, nsq)


@pytest.mark.parametrize("kind", ["continuous", "few values", "binary", "constant", "all zero", "heavy tail", "extremes", "wide"])
def test_every_plan_gives_the_exact_product(public_key, units, rng, kind):
    nsq = public_key.nsquare
    exps = exponent_columns(rng, len(units))[kind]
    expected = naive_product(units, exps, nsq)

    assert multiexp_signed(units, exps, nsq) == expected  # the planned way
    for plan in [ColumnPlan(0, 0.0), ColumnPlan(2, 0.0), ColumnPlan(5, 0.0), ColumnPlan(9, 0.0), ColumnPlan(13, 0.0)]:
        assert multiexp_signed(units, exps, nsq, plan) == expected


def test_tiny_inputs(public_key, units):
    nsq = public_key.nsquare
    assert multiexp_signed([], np.array([], dtype=np.int64), nsq) == 1
    assert multiexp_signed(units[:1], np.array([-5]), nsq) == gmpy2.powmod(units[0], -5, nsq)
    assert multiexp_signed(units[:2], np.array([0, 0]), nsq) == 1


def test_plans_are_sensible(rng):
    assert plan_column(np.zeros(100, dtype=np.int64)) == ColumnPlan(0, 0.0)
    # One distinct value: one powmod beats any bucket pass.
    assert plan_column(np.full(5000, 1 << 16, dtype=np.int64)).window == 0
    # Thousands of distinct 17-bit values: buckets, with a mid-sized window.
    plan = plan_column(fixed_point_exponents(rng.normal(size=5000), 16))
    assert 6 <= plan.window <= 12
    # Grouping makes a low-cardinality column cost about one mulmod per row.
    few = plan_column(fixed_point_exponents(rng.integers(0, 10, size=5000) / 3.0, 16))
    assert few.cost < 1.2 * 5000 < plan.cost


def test_deal_by_cost_partitions_and_balances():
    costs = [10.0, 1.0, 1.0, 1.0, 9.0, 2.0, 3.0, 0.0]

    groups = deal_by_cost(costs, 3)

    assert sorted(j for g in groups for j in g) == list(range(len(costs)))
    assert all(g == sorted(g) for g in groups)
    loads = [sum(costs[j] for j in g) for g in groups]
    assert max(loads) <= 10.0
    assert deal_by_cost([5.0], 4) == [[0]]


def test_matvec_columns_dealt_over_processes_equal_one_process(public_key, units, rng):
    columns = exponent_columns(rng, len(units))
    exps = np.column_stack([columns[k] for k in ["continuous", "few values", "constant", "all zero", "heavy tail"]])
    cts = units * 60  # 24,000 rows × 5 columns: above the parallel threshold
    exps = np.tile(exps, (60, 1))

    assert encrypted_matvec_t(cts, exps, public_key.nsquare, engine=2) == encrypted_matvec_t(
        cts, exps, public_key.nsquare, engine=1
    )


def test_matvec_one_column_split_by_rows_over_processes(public_key, units, rng):
    cts = units * 60
    exps = fixed_point_exponents(rng.normal(size=(len(cts), 1)), 32)
    nsq = public_key.nsquare

    (parallel,) = encrypted_matvec_t(cts, exps, nsq, engine=2)

    assert parallel == multiexp_signed(cts, exps[:, 0], nsq)
