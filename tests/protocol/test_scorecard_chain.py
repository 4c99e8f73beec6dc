"""The scorecard chain in one process against a pooled-data scorecard on the same bins (issue 28).

The reference is what a model-risk team would build with the data pooled: the
bins each party reports, WOE coding from the pooled labels, scikit-learn's
logistic regression. The federated scorecard must rank like it (|ΔAUC| ≤ 0.005),
report IVs equal to the plaintext IVs of its own bins, keep its monotone bins
monotone and its signs, add its parties' integer points up to the served score,
and give the same principal reasons as a pooled computation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tests.conftest import TEST_KEY_BITS
from vfl.data.table import from_dataframe
from vfl.local.scorecard import simulate_scorecard
from vfl.ml.config import TrainingConfig
from vfl.ml.scorecard.binning import bin_events, bin_totals, woe_iv
from vfl.ml.scorecard.config import ScorecardConfig
from vfl.ml.scorecard.reasons import merge, top_candidates


def credit_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A credit-like population: monotone, U-shaped and useless characteristics, some values missing."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "income": rng.lognormal(10, 0.6, n),
        "utilisation": rng.beta(2, 3, n),
        "age": rng.integers(18, 80, n).astype(float),
        "late_payments": rng.poisson(0.6, n).astype(float),
        "tenure": rng.exponential(5, n),
        "orders": rng.poisson(4, n).astype(float),
        "basket": rng.gamma(2, 30, n),
        "returns": rng.beta(1, 8, n),
        "noise": rng.normal(size=n),
    })
    X.loc[rng.random(n) < 0.08, "income"] = np.nan
    logit = (-1.2 - 0.9 * (np.log(X["income"].fillna(20000)) - 10) + 2.5 * X["utilisation"]
             - 0.02 * (X["age"] - 45) + 0.5 * X["late_payments"] - 0.05 * X["tenure"]
             - 0.08 * X["orders"] + 3.0 * X["returns"] + 0.3 * X["income"].isna())
    y = (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    return X, y


SPLITS = {1: [["income", "utilisation", "age", "late_payments"], ["tenure", "orders", "basket", "returns", "noise"]],
          2: [["income", "utilisation", "age"], ["late_payments", "tenure", "orders"], ["basket", "returns", "noise"]]}


def federation(k: int, n: int = 3000, seed: int = 3):
    """B and k feature parties on a column split; each party misses a random 8% of the people."""
    X, y = credit_data(n, seed)
    rng = np.random.default_rng(seed + 1)
    ids = np.array([f"c{i:05d}" for i in range(n)])
    keep = [rng.random(n) > 0.08 for _ in range(k + 1)]
    blocks = SPLITS[k]
    b = keep[0]
    table_b = from_dataframe(X.loc[b, blocks[0]].assign(id=ids[b], y=y[b]), id_column="id", label_column="y",
                             model="logistic", allow_missing=True)
    tables = [from_dataframe(X.loc[keep[h], blocks[h]].assign(id=ids[keep[h]]).sample(frac=1.0, random_state=h),
                             id_column="id", allow_missing=True) for h in range(1, k + 1)]
    return tables, table_b, X.assign(id=ids, y=y).set_index("id")


@pytest.fixture(scope="module", params=[1, 2], ids=["k1", "k2"])
def run(request):
    tables, table_b, pooled = federation(request.param)
    config = TrainingConfig(key_bits=TEST_KEY_BITS, validation_fraction=0.3, seed=1)
    result = simulate_scorecard(tables if request.param > 1 else tables[0], table_b, config, ScorecardConfig())
    ids = result["applicants"]["ids"]
    return result, pooled.loc[ids], request.param


def test_the_scorecard_ranks_like_a_pooled_scorecard_on_the_same_bins(run):
    # Arrange: the pooled reference, WOE-coded from the pooled labels on each party's reported bins.
    result, data, _ = run
    y = data["y"].to_numpy()
    columns = []
    for card in result["cards"].values():
        for bins in card.encoding.bins:
            index = bins.assign(data[bins.name].to_numpy(dtype=float))
            woe, _ = woe_iv(bin_events(index, bins.count, y), bin_totals(index, bins.count))
            columns.append(woe[index])
    X = np.column_stack(columns)
    score = result["scorecard"]["score"]
    # Act
    reference = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    pooled_auc = roc_auc_score(y, reference.decision_function(X))
    federated_auc = roc_auc_score(y, -result["scores"])
    # Assert: same rows (all aligned), same bins: the federated integer score ranks like the pooled model.
    assert abs(federated_auc - pooled_auc) <= 0.005, (federated_auc, pooled_auc)
    assert abs(score["auc"] - score["auc_before_rounding"]) <= 0.001


def test_every_reported_iv_equals_the_plaintext_iv_of_the_reported_bins(run):
    result, data, _ = run
    y = data["y"].to_numpy()
    reported = {(c["party"], c["name"]): c["iv"] for c in result["scorecard"]["characteristics"]}
    checked = 0
    for party, card in result["cards"].items():
        for bins in card.encoding.bins:
            index = bins.assign(data[bins.name].to_numpy(dtype=float))
            _, iv = woe_iv(bin_events(index, bins.count, y), bin_totals(index, bins.count))
            assert reported[(party, bins.name)] == pytest.approx(iv.sum(), abs=1e-6)
            checked += 1
    assert checked >= 3


def test_monotone_bins_are_monotone_and_constrained_coefficients_keep_their_sign(run):
    result, data, _ = run
    y = data["y"].to_numpy()
    for party, card in result["cards"].items():
        for j, (bins, direction) in enumerate(zip(card.encoding.bins, card.encoding.directions)):
            index = bins.assign(data[bins.name].to_numpy(dtype=float))
            events, totals = bin_events(index, bins.count, y)[:-1], bin_totals(index, bins.count)[:-1]
            rates = events / np.maximum(totals, 1)
            steps = np.diff(rates[totals > 0])
            points = card.table.points[j][:-1]  # finite bins; the missing bin is not ordered
            assert direction in ("increasing", "decreasing")
            if direction == "increasing":  # the event rate rises: points (higher = safer) fall
                assert np.all(steps >= 0) and np.all(np.diff(points) <= 0), (party, bins.name, rates, points)
            else:
                assert np.all(steps <= 0) and np.all(np.diff(points) >= 0), (party, bins.name, rates, points)


def test_every_partys_points_add_up_to_the_served_score(run):
    result, data, _ = run
    card = result["scorecard"]
    totals = sum(c.table.totals(c.bin_indices(data[list(c.encoding.names)].to_numpy(dtype=float)))
                 for c in _cards_on_pooled(result))
    served = result["applicants"]
    assert np.array_equal(card["base_points"] + totals, served["scores"])
    assert np.array_equal(card["base_points"] + sum(served["points"].values()), served["scores"])


def _cards_on_pooled(result):
    """Each card, reading only its own characteristics (columns in encoding order) from a pooled frame."""
    from dataclasses import replace

    return [replace(c, columns=tuple(range(len(c.encoding.names)))) for c in result["cards"].values()]


def test_reasons_agree_with_a_pooled_computation(run):
    result, data, _ = run
    cards = _cards_on_pooled(result)
    shortfalls = np.hstack([c.table.shortfalls(c.bin_indices(data[list(c.encoding.names)].to_numpy(dtype=float)))
                            for c in cards])
    codes = [code for c in cards for code in c.table.codes]
    pooled = merge([top_candidates(shortfalls, codes, 4)], 4)
    federated = result["applicants"]["reasons"]
    agree = np.mean([a == b for a, b in zip(pooled, federated)])
    assert agree >= 0.95, agree
    assert all(len(r) <= 4 for r in federated)


def test_the_cli_writes_each_partys_table_and_every_applicants_score_and_reasons(tmp_path):
    # Arrange: the same federation as CSV files, one feature party.
    tables, table_b, pooled = federation(1, n=1500)
    pooled = pooled.reset_index()
    bank, shop = tmp_path / "bank.csv", tmp_path / "shop.csv"
    pooled[["id", "y", *SPLITS[1][0]]].to_csv(bank, index=False)
    pooled[["id", *SPLITS[1][1]]].to_csv(shop, index=False)
    out, scores, folder = tmp_path / "result.json", tmp_path / "scores.csv", tmp_path / "tables"
    # Act
    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "simulate", "--scorecard", "--party-a", str(shop), "--party-b", str(bank),
         "--id-column", "id", "--key-bits", str(TEST_KEY_BITS), "--out", str(out), "--scores", str(scores),
         "--tables", str(folder), "--quiet"], capture_output=True, text=True, timeout=600)
    # Assert
    assert done.returncode == 0, done.stderr
    assert "party B's points table:" in done.stdout and "party A's points (kept by A): from" in done.stdout
    assert "reasons:" in done.stdout
    rows = pd.read_csv(scores)
    result = json.loads(out.read_text())
    assert len(rows) == result["aligned_rows"] == 1500
    assert (result["scorecard"]["base_points"] + rows["points_B"] + rows["points_A"] == rows["score"]).all()
    assert sorted(p.name for p in folder.iterdir()) == ["bins-A.csv", "bins-B.csv", "points-A.csv", "points-A.json",
                                                         "points-B.csv", "points-B.json"]
    # Every characteristic's reported IV, kept or dropped, from the bin edges its own party exported.
    y = pooled.set_index("id").loc[rows["id"], "y"].to_numpy()
    for party in ("A", "B"):
        exported = pd.read_csv(folder / f"bins-{party}.csv")
        for name, bins in exported.groupby("characteristic"):
            cuts = tuple(sorted(float(u) for u in bins["upper"].dropna()))
            values = pooled.set_index("id").loc[rows["id"], name].to_numpy(dtype=float)
            index = np.where(np.isnan(values), len(cuts) + 1, np.searchsorted(cuts, values, side="right"))
            _, iv = woe_iv(bin_events(index, len(cuts) + 2, y), bin_totals(index, len(cuts) + 2))
            reported = next(c["iv"] for c in result["scorecard"]["characteristics"]
                            if c["party"] == party and c["name"] == name)
            assert reported == pytest.approx(iv.sum(), abs=1e-6), (party, name)
    table_a = pd.read_csv(folder / "points-A.csv")
    assert set(table_a["characteristic"]) <= set(SPLITS[1][1]) and table_a["points"].dtype.kind == "i"


def test_backward_stepwise_across_parties_drops_what_does_not_pay_for_its_columns():
    # Arrange: every characteristic passes selection by IV (min_iv 0), pure noise included at both parties.
    tables, table_b, _ = federation(1, n=900, seed=5)
    config = TrainingConfig(key_bits=TEST_KEY_BITS, seed=1)
    settings = ScorecardConfig(binning={"max_bins": 4, "fine_bins": 8},
                               selection={"min_iv": 0.0, "max_correlation": None, "stepwise": "backward",
                                          "stepwise_max_steps": 2})
    # Act
    result = simulate_scorecard(tables[0], table_b, config, settings)
    # Assert
    steps = result["scorecard"]["stepwise"]
    bics = [s["bic"] for s in steps]
    assert len(steps) >= 2 and all(b < a for a, b in zip(bics, bics[1:]))  # each drop lowered BIC
    dropped = {(s["dropped"]["party"], s["dropped"]["name"]) for s in steps[1:]}
    kept = {(p, n) for p, card in result["cards"].items() for n in card.encoding.names}
    assert dropped and not dropped & kept
    assert all(card.encoding.names for card in result["cards"].values())  # every party keeps one at least
    assert {c["name"] for c in result["scorecard"]["characteristics"] if not c["selected"]} >= {n for _, n in dropped}
