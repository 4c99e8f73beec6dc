"""The scorecard's math core (vfl.ml.scorecard): binning, WOE/IV, selection, constraints, points, reasons, stability.

Each result is checked against a hand computation, a brute-force search or scikit-learn.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vfl.errors import ConfigError, DataError
from vfl.ml.scorecard.binning import (
    Bins,
    bin_events,
    bin_totals,
    coarse_groups,
    fine_bins,
    indicator_columns,
    iv_band,
    woe_column,
    woe_iv,
)
from vfl.ml.scorecard.constraints import Constraint, isotonic, project
from vfl.ml.scorecard.points import (
    Characteristic,
    PointsTable,
    Scaling,
    base_points,
    points_table,
)
from vfl.ml.scorecard.reasons import merge, top_candidates
from vfl.ml.scorecard.selection import (
    by_iv,
    correlation_drop,
    variance_inflation,
    vif_drop,
)
from vfl.ml.scorecard.stability import (
    band_counts,
    band_table,
    gini,
    ks_statistic,
    population_stability,
    score_band_edges,
    stability_status,
)

METHODS = ["equal_frequency", "chimerge", "iv_optimal"]


# ---------------------------------------------------------------- helpers


def _partitions(m: int):
    """Every contiguous partition of m fine bins, as groups."""
    for cuts in itertools.product([0, 1], repeat=m - 1):
        yield [0, *np.cumsum(cuts).tolist()]


def _coarse_counts(events, totals, groups):
    g = np.asarray(groups)
    return np.bincount(g, weights=events), np.bincount(g, weights=totals)


def _rates_monotone(events, totals, groups, direction: str) -> bool:
    e, t = _coarse_counts(events, totals, groups)
    steps = np.diff(e / t)
    return bool(np.all(steps >= -1e-12)) if direction == "increasing" else bool(np.all(steps <= 1e-12))


def _passes(events, totals, groups, *, max_bins, min_share, min_events) -> bool:
    e, t = _coarse_counts(events, totals, groups)
    return (len(t) <= max_bins and bool(np.all(t > 0)) and bool(np.all(t >= min_share * np.sum(totals) - 1e-9))
            and bool(np.all(e >= min_events)) and bool(np.all(t - e >= min_events)))


def _random_counts(rng, m: int, trend: float = 0.0):
    totals = rng.integers(5, 80, size=m).astype(float)
    rate = np.clip(0.25 + trend * (np.arange(m) / m - 0.5) + rng.normal(0, 0.08, size=m), 0.02, 0.95)
    events = rng.binomial(totals.astype(int), rate).astype(float)
    return events, totals


# ---------------------------------------------------------------- fine classing and Bins


def test_fine_bins_are_equal_frequency_on_distinct_values():
    # Arrange: 1000 distinct values, no minimum share
    x = np.random.default_rng(0).permutation(1000).astype(float)

    # Act
    bins = fine_bins("x", x, max_bins=10, min_share=0.0)

    # Assert: 10 bins of 100 rows, plus an empty missing bin; cuts fall between values, in few digits
    assert bin_totals(bins.assign(x), bins.count).tolist() == [100] * 10 + [0]
    assert fine_bins("i", np.arange(1, 11), max_bins=2, min_share=0.0).labels() == ["[-inf, 6)", "[6, inf)", "missing"]


def test_fine_bins_merge_until_every_bin_holds_the_minimum_share_of_all_rows():
    # Arrange: a skewed column with heavy ties and 20% missing
    rng = np.random.default_rng(1)
    x = np.round(rng.exponential(2.0, size=2000), 1)
    x[rng.random(2000) < 0.2] = np.nan

    # Act
    bins = fine_bins("x", x, max_bins=20, min_share=0.06)

    # Assert: every finite bin has ≥ 6% of ALL 2000 rows; no tie is split across bins
    totals = bin_totals(bins.assign(x), bins.count)
    assert np.all(totals[:-1] >= 0.06 * 2000) and 2 <= len(totals) - 1 <= 20
    assert totals[-1] == np.isnan(x).sum()
    for value in np.unique(x[np.isfinite(x)]):
        assert len(np.unique(bins.assign(np.array([value, value])))) == 1


def test_fine_bins_of_a_near_constant_column_have_one_finite_bin():
    # Arrange
    x = np.array([3.0, 3.0, np.nan, 3.0])

    # Act
    bins = fine_bins("c", x)

    # Assert
    assert bins.cuts == () and bins.count == 2 and bins.assign(x).tolist() == [0, 0, 1, 0]


def test_missing_values_have_the_last_bin_even_when_empty():
    # Arrange
    bins = Bins("age", (3.5, 7.0))

    # Act
    index = bins.assign(np.array([-np.inf, 1.0, 3.5, 6.9, 7.0, np.inf, np.nan]))

    # Assert
    assert index.tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert bins.count == 4 and bins.missing_index == 3
    assert bins.labels() == ["[-inf, 3.5)", "[3.5, 7)", "[7, inf)", "missing"]
    assert bins.intervals() == [(-math.inf, 3.5), (3.5, 7.0), (7.0, math.inf), None]
    assert bin_totals(bins.assign(np.array([1.0, 2.0])), bins.count).tolist() == [2, 0, 0, 0]


def test_merged_keeps_only_the_cuts_between_groups():
    # Arrange
    bins = Bins("x", (1.0, 2.0, 3.0, 4.0))

    # Act
    coarse = bins.merged([0, 0, 1, 1, 2])

    # Assert: fine bins 0-1, 2-3 and 4 become coarse bins
    assert coarse.cuts == (2.0, 4.0) and coarse.name == "x"
    assert bins.merged([0, 1, 2, 3, 4]) == bins and bins.merged([0] * 5).cuts == ()


@pytest.mark.parametrize("groups", [[0, 0, 2, 2, 3], [1, 1, 2, 2, 3], [0, 1, 0, 1, 2], [0, 1, 2]])
def test_merged_refuses_groups_that_are_not_runs(groups):
    with pytest.raises(DataError, match="group"):
        Bins("x", (1.0, 2.0, 3.0, 4.0)).merged(groups)


def test_bins_round_trip_through_json_and_refuse_bad_cuts():
    # Arrange
    bins = Bins("income", (0.5, 10.0, 1e6))

    # Act
    again = Bins.from_dict(json.loads(json.dumps(bins.to_dict(), allow_nan=False)))

    # Assert
    assert again == bins
    with pytest.raises(DataError, match="increasing"):
        Bins("x", (2.0, 1.0))
    with pytest.raises(DataError, match="finite"):
        Bins("x", (1.0, math.inf))
    with pytest.raises(DataError, match="cuts"):
        Bins.from_dict({"name": "x"})


def test_counts_and_encodings_per_bin():
    # Arrange
    bins = Bins("x", (0.0,))
    x = np.array([-1.0, 1.0, 2.0, np.nan, -3.0])
    y = np.array([1, 0, 1, 1, 0])

    # Act
    index = bins.assign(x)

    # Assert
    assert bin_totals(index, bins.count).tolist() == [2, 2, 1]
    assert bin_events(index, bins.count, y).tolist() == [1, 1, 1]
    assert woe_column(bins, np.array([0.5, -0.5, 2.0]), x).tolist() == [0.5, -0.5, -0.5, 2.0, 0.5]
    assert indicator_columns(bins, x).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        bin_totals(np.array([0, 3]), 3)


# ---------------------------------------------------------------- WOE and IV


def test_woe_iv_match_a_hand_computation():
    # Arrange: 3 bins; 10 events and 90 non-events in all
    events = np.array([2, 3, 5])
    totals = np.array([40, 35, 25])

    # Act
    woe, iv = woe_iv(events, totals)

    # Assert: WOE = ln(%good / %bad)
    good, bad = np.array([38, 32, 20]) / 90, np.array([2, 3, 5]) / 10
    assert woe == pytest.approx(np.log(good / bad))
    assert iv == pytest.approx((good - bad) * np.log(good / bad))
    assert woe[0] > 0 > woe[2]  # the bin with the fewest bads per good has the highest WOE


def test_woe_iv_give_empty_bins_zero_and_substitute_half_for_a_zero_count():
    # Arrange: bin 1 has no events, bin 2 is empty
    events = np.array([4, 0, 0, 6])
    totals = np.array([20, 10, 0, 30])

    # Act
    woe, iv = woe_iv(events, totals)

    # Assert
    assert woe[2] == 0 and iv[2] == 0
    assert woe[1] == pytest.approx(math.log((10 / 50) / (0.5 / 10)))
    assert np.all(np.isfinite(woe)) and np.all(iv >= 0)
    with pytest.raises(DataError, match="both events and non-events"):
        woe_iv(np.array([0, 0]), np.array([3, 4]))


@pytest.mark.parametrize(("iv", "band"), [(0.0, "unpredictive"), (0.0199, "unpredictive"), (0.02, "weak"),
                                          (0.1, "medium"), (0.3, "strong"), (0.4999, "strong"), (0.5, "suspicious")])
def test_iv_band(iv, band):
    assert iv_band(iv) == band


# ---------------------------------------------------------------- coarse classing


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("monotone", ["none", "increasing", "decreasing", "auto"])
def test_every_coarse_method_respects_the_constraints_on_random_data(method, monotone):
    rng = np.random.default_rng([METHODS.index(method), ["none", "increasing", "decreasing", "auto"].index(monotone)])
    for _ in range(15):
        # Arrange: random fine counts, sometimes with an empty fine bin
        m = int(rng.integers(2, 16))
        events, totals = _random_counts(rng, m, trend=rng.normal(0, 0.5))
        if m > 3:
            events[1], totals[1] = 0, 0
        rules = {"max_bins": int(rng.integers(2, 7)), "min_share": 0.1, "min_events": 3}

        # Act
        groups, direction = coarse_groups(events, totals, method=method, monotone=monotone, **rules)

        # Assert
        assert len(groups) == m and groups[0] == 0 and set(np.diff(groups)) <= {0, 1}
        assert _passes(events, totals, groups, **rules)
        assert (direction == "none") == (monotone == "none")
        if direction != "none":
            assert _rates_monotone(events, totals, groups, direction)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("direction", ["increasing", "decreasing"])
def test_a_declared_monotone_direction_gives_monotone_event_rates_even_against_the_data(method, direction):
    # Arrange: a zig-zag event rate that is monotone in neither direction
    totals = np.full(10, 100.0)
    events = np.array([10, 30, 15, 35, 20, 40, 25, 45, 30, 50], dtype=float)

    # Act
    groups, got = coarse_groups(events, totals, method=method, monotone=direction, max_bins=6, min_share=0.05)

    # Assert
    assert got == direction and _rates_monotone(events, totals, groups, direction)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("trend", ["increasing", "decreasing"])
def test_auto_picks_the_direction_of_a_known_trend(method, trend):
    # Arrange: raw values whose event probability rises (or falls) with the value, through fine bins
    rng = np.random.default_rng(7)
    x = rng.normal(size=5000)
    slope = 1.5 if trend == "increasing" else -1.5
    y = (rng.random(5000) < 1 / (1 + np.exp(-slope * x))).astype(int)
    bins = fine_bins("x", x)
    index = bins.assign(x)
    events, totals = bin_events(index, bins.count, y)[:-1], bin_totals(index, bins.count)[:-1]

    # Act
    groups, direction = coarse_groups(events, totals, method=method, monotone="auto")

    # Assert
    assert direction == trend and _rates_monotone(events, totals, groups, trend) and max(groups) >= 2


@pytest.mark.parametrize("monotone", ["none", "increasing", "decreasing"])
def test_iv_optimal_finds_the_best_partition_of_a_brute_force_search(monotone):
    rng = np.random.default_rng({"none": 0, "increasing": 1, "decreasing": 2}[monotone])
    for _ in range(12):
        # Arrange: 9 fine bins give 256 partitions
        events, totals = _random_counts(rng, 9, trend=rng.normal(0, 0.6))
        rules = {"max_bins": int(rng.integers(2, 6)), "min_share": 0.08, "min_events": 2}
        feasible = [g for g in _partitions(9) if _passes(events, totals, g, **rules)
                    and (monotone == "none" or _rates_monotone(events, totals, g, monotone))]
        best = max(woe_iv(*_coarse_counts(events, totals, g))[1].sum() for g in feasible)

        # Act
        groups, _ = coarse_groups(events, totals, method="iv_optimal", monotone=monotone, **rules)

        # Assert
        assert groups in feasible
        assert woe_iv(*_coarse_counts(events, totals, groups))[1].sum() == pytest.approx(best, rel=1e-9)


def test_chimerge_merges_the_most_alike_neighbours_and_equal_frequency_the_smallest():
    # Arrange: bins 0 and 1 share an event rate; bins 2 and 3 are the smallest pair
    events = np.array([20.0, 20, 25, 45])
    totals = np.array([200.0, 200, 50, 50])

    # Act
    chi, _ = coarse_groups(events, totals, method="chimerge", monotone="none", max_bins=3, min_share=0)
    eq, _ = coarse_groups(events, totals, method="equal_frequency", monotone="none", max_bins=3, min_share=0)

    # Assert
    assert chi == [0, 0, 1, 2] and eq == [0, 1, 2, 2]


def test_coarse_classing_without_a_feasible_partition_puts_everything_in_one_bin():
    # Arrange: 3 events in all, but every bin needs 5
    events, totals = np.array([1.0, 1, 1]), np.array([30.0, 30, 30])

    # Act / Assert
    for method in METHODS:
        assert coarse_groups(events, totals, method=method, min_events=5)[0] == [0, 0, 0]


def test_coarse_classing_refuses_unknown_options_and_inconsistent_counts():
    with pytest.raises(ConfigError, match="chimerge"):
        coarse_groups(np.array([1.0]), np.array([2.0]), method="best")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="auto"):
        coarse_groups(np.array([1.0]), np.array([2.0]), monotone="up")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="events ≤ totals"):
        coarse_groups(np.array([3.0]), np.array([2.0]))


# ---------------------------------------------------------------- constraints


@pytest.mark.parametrize(("values", "weights", "expected"), [
    ([1, 3, 2, 4], None, [1, 2.5, 2.5, 4]),
    ([4, 3, 2, 1], None, [2.5, 2.5, 2.5, 2.5]),
    ([1, 2, 3], None, [1, 2, 3]),
    ([3, 1, 2], [1, 1, 1], [2, 2, 2]),
    ([5, 1, 1], [2, 1, 1], [3, 3, 3]),
    ([1, 0, 5, 4], [3, 1, 1, 1], [0.75, 0.75, 4.5, 4.5]),
])
def test_isotonic_matches_known_pool_adjacent_violators_results(values, weights, expected):
    assert isotonic(np.array(values, float), "increasing", None if weights is None else np.array(weights, float)) \
        == pytest.approx(expected)


def _brute_isotonic(v: np.ndarray, w: np.ndarray, direction: str) -> np.ndarray:
    """The optimum is constant on blocks at the blocks' weighted means: try every block partition."""
    best, best_cost = None, math.inf
    for groups in _partitions(len(v)):
        g = np.asarray(groups)
        means = np.bincount(g, weights=w * v) / np.bincount(g, weights=w)
        steps = np.diff(means) if direction == "increasing" else -np.diff(means)
        if np.all(steps >= -1e-12):
            fit = means[g]
            cost = float(np.sum(w * (v - fit) ** 2))
            if cost < best_cost:
                best, best_cost = fit, cost
    return best


@pytest.mark.parametrize("direction", ["increasing", "decreasing"])
def test_isotonic_equals_the_brute_force_projection(direction):
    rng = np.random.default_rng(3)
    for _ in range(30):
        # Arrange
        v, w = rng.normal(size=7), rng.uniform(0.1, 3, size=7)

        # Act
        fit = isotonic(v, direction, w)

        # Assert
        assert fit == pytest.approx(_brute_isotonic(v, w, direction), abs=1e-10)


def test_project_keeps_signs_and_monotone_orders_on_raw_coefficients():
    # Arrange: 6 weights; columns 1-4 a monotone (increasing) run, column 0 negative, column 5 free
    rng = np.random.default_rng(4)
    scale = rng.uniform(0.2, 5, size=6)
    rules = [Constraint((0,), "sign", "negative"), Constraint((1, 2, 3, 4), "monotone", "increasing")]
    for _ in range(20):
        weights = rng.normal(size=6)

        # Act
        out = project(weights, scale, rules)

        # Assert: raw coefficients obey the rules; the free column is untouched; projecting again changes nothing
        raw = out / scale
        assert raw[0] <= 0 and np.all(np.diff(raw[1:5]) >= -1e-12)
        assert out[5] == weights[5]
        assert project(out, scale, rules) == pytest.approx(out)
        # It is the nearest allowed point (in weight space) on the monotone run: check against brute force
        expected = _brute_isotonic(weights[1:5] / scale[1:5], scale[1:5] ** 2, "increasing") * scale[1:5]
        assert out[1:5] == pytest.approx(expected, abs=1e-10)


def test_project_applies_a_sign_over_a_monotone_run_and_stays_monotone():
    # Arrange
    scale = np.array([1.0, 2.0, 0.5])
    rules = [Constraint((0, 1, 2), "monotone", "decreasing"), Constraint((0, 1, 2), "sign", "positive")]

    # Act
    out = project(np.array([-1.0, 4.0, 0.5]), scale, rules)

    # Assert
    raw = out / scale
    assert np.all(raw >= 0) and np.all(np.diff(raw) <= 1e-12)


def test_constraints_refuse_mismatched_kind_and_direction():
    with pytest.raises(ConfigError, match="direction"):
        Constraint((0,), "sign", "increasing")
    with pytest.raises(ConfigError, match="distinct"):
        Constraint((1, 1), "monotone", "increasing")
    with pytest.raises(ConfigError, match="only 2 weights"):
        project(np.zeros(2), np.ones(2), [Constraint((2,), "sign", "positive")])


# ---------------------------------------------------------------- points


def test_scaling_puts_points0_at_odds0_and_takes_pdo_per_doubling():
    # Arrange
    scaling = Scaling(points0=600, odds0=1 / 19, pdo=50)
    logit0 = math.log(1 / 19)

    # Act
    at_odds0, doubled = scaling.score(np.array([logit0, logit0 + math.log(2)]))

    # Assert
    assert at_odds0 == pytest.approx(600) and at_odds0 - doubled == pytest.approx(50)
    assert scaling.factor == pytest.approx(50 / math.log(2))
    assert base_points(logit0, scaling) == 600
    with pytest.raises(ConfigError, match="pdo"):
        Scaling(pdo=0)
    with pytest.raises(ConfigError, match="odds0"):
        Scaling(odds0=-1)


def _table() -> tuple[PointsTable, list[Characteristic], Scaling]:
    scaling = Scaling(points0=500, odds0=1 / 50, pdo=20)
    chars = [Characteristic("age", Bins("age", (30.0, 50.0)), np.array([0.40, 0.05, -0.31, 0.2])),
             Characteristic("debt", Bins("debt", (1.0,)), np.array([-0.52, 0.71, 0.0]))]
    return points_table("bank", chars, scaling, codes={"debt": "D01"}), chars, scaling


def test_points_table_totals_equal_the_sum_of_rounded_bin_points():
    # Arrange
    table, chars, scaling = _table()
    columns = {"age": np.array([25.0, 40.0, 60.0, np.nan]), "debt": np.array([0.0, 5.0, np.nan, 1.0])}

    # Act
    index = table.bin_indices(columns)
    totals = table.totals(index)

    # Assert
    expected = sum(np.rint(-scaling.factor * c.logit[index[:, j]]) for j, c in enumerate(chars))
    assert totals.dtype == np.int64 and totals.tolist() == expected.astype(int).tolist()
    assert table.points[0].tolist() == np.rint(-scaling.factor * chars[0].logit).astype(int).tolist()
    assert table.codes == ("bank:age", "D01")
    lo, hi = table.range()
    assert lo == sum(int(p.min()) for p in table.points) and hi == sum(int(p.max()) for p in table.points)


def test_shortfalls_are_nonnegative_and_zero_at_the_best_bin():
    # Arrange
    table, _, _ = _table()
    index = np.array([[a, d] for a in range(4) for d in range(3)])

    # Act
    shortfalls = table.shortfalls(index)

    # Assert
    assert np.all(shortfalls >= 0)
    for j, points in enumerate(table.points):
        best = index[:, j] == int(np.argmax(points))
        assert np.all(shortfalls[best, j] == 0) and np.all(shortfalls[~best, j] > 0)


def test_points_table_exports_rows_csv_and_json():
    # Arrange
    table, _, _ = _table()

    # Act
    rows = table.rows()
    again = PointsTable.from_dict(json.loads(json.dumps(table.to_dict(), allow_nan=False)))
    csv_lines = table.to_csv().splitlines()

    # Assert
    assert len(rows) == 4 + 3 and rows[0] == {"characteristic": "age", "bin": 0, "label": "[-inf, 30)",
                                              "lower": None, "upper": 30.0, "points": int(table.points[0][0]),
                                              "code": "bank:age"}
    assert again == table
    assert csv_lines[0] == "characteristic,bin,label,lower,upper,points,code" and len(csv_lines) == 8
    assert csv_lines[4].startswith("age,3,missing,,,")
    with pytest.raises(DataError, match="debt"):
        table.bin_indices({"age": np.array([1.0])})


# ---------------------------------------------------------------- reasons


def test_top_candidates_rank_by_shortfall_then_code_and_skip_zero():
    # Arrange
    shortfalls = np.array([[5, 0, 7, 5, 1, 2], [0, 0, 0, 0, 0, 0]])
    codes = ["e", "a", "c", "b", "d", "f"]

    # Act
    top = top_candidates(shortfalls, codes, k=4)

    # Assert
    assert top == [[("c", 7.0), ("b", 5.0), ("e", 5.0), ("f", 2.0)], []]


def test_merge_keeps_the_top_four_codes_across_parties():
    # Arrange: two parties' candidate lists for 2 rows
    bank = [[("B:debt", 30.0), ("B:age", 10.0)], [("B:age", 3.0)]]
    partner = [[("A:util", 20.0), ("A:late", 10.0), ("A:inq", 5.0), ("A:tenure", 1.0)], []]

    # Act
    reasons = merge([bank, partner])

    # Assert: ties (10 points) go by code
    assert reasons == [["B:debt", "A:util", "A:late", "B:age"], ["B:age"]]
    assert merge([bank, partner], k=2)[0] == ["B:debt", "A:util"]
    with pytest.raises(DataError, match="same rows"):
        merge([bank, partner[:1]])


# ---------------------------------------------------------------- stability


def test_psi_is_zero_for_identical_shares_and_matches_a_hand_case():
    # Arrange
    expected = np.array([100, 300, 600])
    actual = np.array([200, 300, 500])

    # Act
    same = population_stability(expected, expected * 3)
    value = population_stability(expected, actual)

    # Assert
    assert same == 0.0
    assert value == pytest.approx((0.2 - 0.1) * math.log(2) + (0.5 - 0.6) * math.log(0.5 / 0.6))
    assert population_stability(np.array([1, 0]), np.array([1, 1])) == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4))


@pytest.mark.parametrize(("value", "status"), [(0.0, "stable"), (0.0999, "stable"), (0.1, "watch"),
                                               (0.2499, "watch"), (0.25, "alarm"), (3.0, "alarm")])
def test_stability_status_bands(value, status):
    assert stability_status(value) == status


def test_score_bands_are_equal_frequency_and_count_bad_rates():
    # Arrange
    scores = np.arange(100, dtype=float)
    labels = (scores < 20).astype(int)

    # Act
    edges = score_band_edges(scores, bands=4)
    table = band_table(scores, labels, edges)

    # Assert
    assert band_counts(scores, edges).tolist() == [25, 25, 25, 25]
    assert [row["events"] for row in table] == [20, 0, 0, 0] and table[0]["bad_rate"] == 0.8
    assert table[0]["lower"] is None and table[-1]["upper"] is None
    assert score_band_edges(np.array([1.0, 1, 1, 1, 2]), bands=4) == ()


def test_ks_and_gini_against_a_hand_case_and_scikit_learn():
    # Arrange: hand case, events score higher
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=400)
    s = np.round(y + rng.normal(size=400), 1)

    # Act / Assert: below score 3 lie 2 of 3 non-events and no event, a gap of 2/3; 8 of 9 event/non-event
    # pairs have the event scored higher, so AUC = 8/9
    assert ks_statistic(labels, scores) == pytest.approx(2 / 3)
    assert gini(labels, scores) == pytest.approx(2 * (8 / 9) - 1)
    assert gini(y, s) == pytest.approx(2 * roc_auc_score(y, s) - 1)
    assert gini(y, -s) == pytest.approx(-gini(y, s))


# ---------------------------------------------------------------- selection


def test_vif_matches_a_direct_least_squares_computation():
    # Arrange
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 4))
    X[:, 3] = X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.3, size=300)

    # Act
    vif = variance_inflation(X)

    # Assert
    for j in range(4):
        others = np.column_stack([np.ones(300), np.delete(X, j, axis=1)])
        fit = others @ np.linalg.lstsq(others, X[:, j], rcond=None)[0]
        r2 = 1 - np.sum((X[:, j] - fit) ** 2) / np.sum((X[:, j] - X[:, j].mean()) ** 2)
        assert vif[j] == pytest.approx(1 / (1 - r2))
    assert variance_inflation(np.column_stack([X[:, 0], np.ones(300)]))[1] == math.inf


def test_vif_drop_removes_the_collinear_column_of_lower_priority():
    # Arrange: c is exactly a + b
    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 4))
    X[:, 2] = X[:, 0] + X[:, 1]

    # Act
    kept = vif_drop(X, ["a", "b", "c", "d"], max_vif=10, priority={"a": 0.3, "b": 0.1, "c": 0.2, "d": 0.05})

    # Assert: a, b, c tie at inf; b has the lowest priority among them
    assert kept == ["a", "c", "d"]


def test_correlation_drop_keeps_the_higher_priority_of_a_correlated_pair():
    # Arrange
    rng = np.random.default_rng(9)
    a = rng.normal(size=500)
    X = np.column_stack([a, rng.normal(size=500), a + rng.normal(0, 0.1, size=500)])

    # Act
    kept = correlation_drop(X, ["a", "b", "a2"], max_abs_corr=0.9, priority={"a": 0.1, "b": 0.2, "a2": 0.3})

    # Assert
    assert kept == ["b", "a2"]
    with pytest.raises(ConfigError, match="priority"):
        correlation_drop(X, ["a", "b", "a2"], max_abs_corr=0.9, priority={"a": 1.0})


def test_by_iv_applies_threshold_and_top_k_in_input_order():
    # Arrange
    ivs = {"x": 0.05, "y": 0.01, "z": 0.4, "w": 0.2}

    # Act / Assert
    assert by_iv(ivs, min_iv=0.02) == ["x", "z", "w"]
    assert by_iv(ivs, top_k=2) == ["z", "w"]
    assert by_iv(ivs, min_iv=0.1, top_k=5) == ["z", "w"]
    assert by_iv(ivs) == ["x", "y", "z", "w"]


def test_a_job_warns_only_when_rounding_to_points_moves_the_auc_by_more_than_the_bound():
    # Arrange
    from vfl.ml.scorecard.points import ROUNDING_AUC_TOLERANCE, rounding_warning

    scaling = Scaling(600, 1 / 19, 50)
    # Act
    within = rounding_warning(0.7500, 0.7500 + ROUNDING_AUC_TOLERANCE, scaling)
    beyond = rounding_warning(0.7560, 0.7549, scaling)
    # Assert
    assert within is None
    assert beyond is not None and "0.7549" in beyond and "0.7560" in beyond and "pdo (say 100)" in beyond
