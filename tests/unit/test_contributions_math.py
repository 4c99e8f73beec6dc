"""Shapley values and leave-one-out from coalition values (vfl.incentives.shapley), on games with known answers."""

from __future__ import annotations

from itertools import combinations

import pytest

from vfl.incentives import shapley


def game(k, value):
    """Every coalition's value (the empty one included) from a function of the coalition."""
    return {frozenset(c): value(frozenset(c)) for size in range(k + 1) for c in combinations(range(k), size)}


def test_an_additive_game_gives_each_player_its_own_weight_and_the_values_add_up():
    weights = [0.10, 0.02, 0.0, 0.05]
    values = game(4, lambda c: 0.6 + sum(weights[i] for i in c))
    phi = shapley.shapley_exact(4, values)
    assert phi == pytest.approx(weights, abs=1e-12)
    assert sum(phi) == pytest.approx(values[frozenset(range(4))] - values[frozenset()], abs=1e-12)
    assert shapley.leave_one_out(4, values) == pytest.approx(weights, abs=1e-12)


def test_two_interchangeable_players_share_what_either_brings_and_a_dummy_gets_nothing():
    # players 0 and 1 carry the same information (either one is enough); player 2 adds nothing
    values = game(3, lambda c: 0.6 + (0.2 if c & {0, 1} else 0.0))
    phi = shapley.shapley_exact(3, values)
    assert phi[0] == pytest.approx(0.1, abs=1e-12) and phi[1] == pytest.approx(0.1, abs=1e-12)
    assert phi[2] == pytest.approx(0.0, abs=1e-12)
    assert shapley.leave_one_out(3, values) == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)  # why LOO alone misleads


def test_the_plan_is_exact_up_to_four_parties_and_samples_above():
    assert shapley.plan(1).to_train() == []
    assert len(shapley.plan(2).to_train()) == 2
    assert len(shapley.plan(4).coalitions) == 2**4 - 1 and shapley.plan(4).method == "exact"
    sampled = shapley.plan(6, seed=3)
    assert sampled.method == "permutation sampling" and len(sampled.orders) == shapley.DEFAULT_PERMUTATIONS
    full = frozenset(range(6))
    assert {full - {i} for i in range(6)} <= set(sampled.coalitions)  # leave-one-out needs them
    assert shapley.plan(6, seed=3) == sampled  # seeded


def test_permutation_sampling_adds_up_exactly_and_lands_near_the_exact_values():
    k = 6
    weights = [0.08, 0.04, 0.0, 0.02, 0.01, 0.05]
    values = game(k, lambda c: 0.55 + sum(weights[i] for i in c) + (0.03 if {0, 1} <= c else 0.0))
    exact = shapley.shapley_exact(k, values)
    plan = shapley.plan(k, permutations=400, seed=1)
    estimate, errors = shapley.shapley_sampled(k, values, plan.orders)
    assert sum(estimate) == pytest.approx(values[frozenset(range(k))] - values[frozenset()], abs=1e-12)
    for e, x, se in zip(estimate, exact, errors):
        assert abs(e - x) <= 4 * se + 1e-12
    assert errors[2] == pytest.approx(0.0, abs=1e-12)  # a dummy's marginal is 0 in every order
    table = shapley.table(plan, values, model="linear", names=[f"A{i + 1}" for i in range(k)],
                          sources=[f"p{i}.csv" for i in range(k)], split="validation")
    assert table["metric"] == "r2" and table["method"] == "permutation sampling" and table["permutations"] == 400
    assert [p["party"] for p in table["parties"]] == [f"A{i + 1}" for i in range(k)]
    assert all("standard_error" in p for p in table["parties"])
    assert table["trainings"] == len(plan.coalitions) - 1


def test_the_table_keeps_the_roster_order_and_the_ledger_view_drops_coalition_values():
    values = game(2, lambda c: {frozenset(): 0.6, frozenset({0}): 0.7, frozenset({1}): 0.62,
                                frozenset({0, 1}): 0.71}[c])
    table = shapley.table(shapley.plan(2), values, model="logistic", names=["shop", "telco"],
                          sources=["shop.csv", "telco.csv"], split="validation", rows=100)
    assert table["metric"] == "auc" and table["full"] == 0.71 and table["label_party_alone"] == 0.6
    assert [(p["party"], p["source"]) for p in table["parties"]] == [("shop", "shop.csv"), ("telco", "telco.csv")]
    assert table["parties"][0]["shapley"] == pytest.approx(0.5 * (0.1 + 0.09))
    assert table["parties"][1]["leave_one_out"] == pytest.approx(0.01)
    assert sum(p["shapley"] for p in table["parties"]) == pytest.approx(0.11, abs=1e-12)
    view = shapley.ledger_view(table)
    assert "coalitions" not in view and view["parties"] == table["parties"] and view["full"] == 0.71
