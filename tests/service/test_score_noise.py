"""Noise on a feature party's released scores ([scoring] score_noise): what B gets, and what the ledger keeps."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vfl.errors import JobError
from vfl.ml.parts import ModelPartA
from vfl.ml.scaling import Standardizer
from vfl.ml.score_noise import FeatureBox, epsilon, key_fingerprint
from vfl.service.lifecycle import JobState, Stage
from vfl.service.record import JobRecord
from vfl.service.releases import Releases
from vfl.files import read_json
from vfl.service.store import JobStore

SHOP_FEATURES = ["monthly_spend", "orders_per_month", "bnpl_share", "returns_rate", "night_order_share",
                 "cart_abandonment", "discount_share"]


def shop_rows(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "party-a" / "shop.csv", dtype={"customer_id": str}).set_index("customer_id")


def trained_part(rows: pd.DataFrame, weights: np.ndarray) -> ModelPartA:
    X = rows[SHOP_FEATURES].to_numpy(dtype=float)
    return ModelPartA("logistic", SHOP_FEATURES, Standardizer.fit(X), weights, feature_box=FeatureBox.fit(X))


def stored_rows(shop, ids: list[str]) -> np.ndarray:
    """The rows as the service reads them to score (its own parser: the last bits may differ from pandas')."""
    return shop.node.data.lookup("behaviour", ids, SHOP_FEATURES).features


def with_scoring(tmp_path: Path, table: str) -> None:
    with open(tmp_path / "party-a.toml", "a") as config:
        config.write(f"\n[scoring]\n{table}\n")


def add_succeeded_job(node, job_id: str, part: ModelPartA, ids: list[str]) -> None:
    """A job as party A holds it once trained: its record, model part and aligned IDs."""
    record = JobRecord(job_id=job_id, role="A", state=JobState.SUCCEEDED, stage=Stage.DONE, dataset="behaviour",
                       peers={"A": "party-a", "B": "party-b", "C": "arbiter"})
    node.store.create(record)
    node.store.save_model(job_id, {**part.to_dict(), "dataset": "behaviour", "job_id": job_id})
    node.store.save_alignment(job_id, ids)
    node.jobs.add(record).trained.set()


def ask(shop, job_id: str, ids: list[str]):
    async def call():
        async with shop.peer("party-b") as bank:
            return await bank.post(f"/v1/peer/jobs/{job_id}/scores", json={"ids": ids})
    return call()


WEIGHTS = np.array([0.8, -0.5, 1.2, 0.3, -0.7, 0.4, 0.9])


def test_without_noise_b_gets_exactly_the_scores_of_the_model(service, run, tmp_path):
    rows = shop_rows(tmp_path)
    ids = rows.index[:20].tolist()
    part = trained_part(rows, WEIGHTS)
    shop = service("party-a")
    add_succeeded_job(shop.node, "j1", part, ids)

    answer = run(ask(shop, "j1", ids))

    assert answer.status_code == 200, answer.text
    assert answer.json()["u_a"] == part.partial_scores(stored_rows(shop, ids)).tolist()
    assert shop.node.jobs.get("j1").record.score_noise is None


def test_with_noise_b_gets_noisy_scores_and_the_same_ones_when_it_asks_again(service, run, tmp_path):
    rows = shop_rows(tmp_path)
    ids = rows.index[:30].tolist()
    part = trained_part(rows, WEIGHTS)
    with_scoring(tmp_path, "score_noise = 0.5")
    shop = service("party-a")
    exact = part.partial_scores(stored_rows(shop, ids))
    add_succeeded_job(shop.node, "j1", part, ids)

    first = run(ask(shop, "j1", ids)).json()
    again = run(ask(shop, "j1", ids[::-1])).json()  # another request, in another order

    noisy = np.array(first["u_a"])
    assert np.all(np.abs(noisy - exact) > 1e-6)  # every score carries noise
    assert again["u_a"][::-1] == first["u_a"]  # the same noise: averaging repeats gains nothing
    assert set(first) == {"u_a", "status"}  # nothing about the noise goes to B
    report = shop.node.jobs.get("j1").record.score_noise
    assert report["multiplier"] == 0.5 and report["n_features"] == 7 and report["exact_jobs"] == []
    assert report["rho_per_person"] == pytest.approx(7 / (2 * 0.5**2))
    assert report["epsilon_per_person"] == pytest.approx(epsilon(14.0, 1e-6))
    # σ of a score is the spread of the noise over rows: z·‖θ ⊙ width‖ in raw units
    width = part.feature_box.width
    assert report["score_sigma"] == pytest.approx(0.5 * np.linalg.norm(WEIGHTS / part.scaler.scale * width))


def test_a_second_model_scores_the_same_noisy_rows_so_it_brings_no_fresh_noise(service, run, tmp_path):
    """Model 2 = 2 × model 1 (same standardisation): its noisy scores are exactly twice model 1's."""
    rows = shop_rows(tmp_path)
    ids = rows.index[:10].tolist()
    with_scoring(tmp_path, "score_noise = 1.0")
    shop = service("party-a")
    add_succeeded_job(shop.node, "j1", trained_part(rows, WEIGHTS), ids)
    add_succeeded_job(shop.node, "j2", trained_part(rows, 2 * WEIGHTS), ids)

    one = np.array(run(ask(shop, "j1", ids)).json()["u_a"])
    two = np.array(run(ask(shop, "j2", ids)).json()["u_a"])

    assert two == pytest.approx(2 * one, rel=1e-12)


def test_the_ledger_keeps_the_boxes_the_multipliers_and_the_key_fingerprint(service, run, tmp_path):
    rows = shop_rows(tmp_path)
    ids = rows.index[:5].tolist()
    with_scoring(tmp_path, "score_noise = 2.0\nscore_noise_delta = 1e-5")
    shop = service("party-a")
    add_succeeded_job(shop.node, "j1", trained_part(rows, WEIGHTS), ids)

    run(ask(shop, "j1", ids))

    releases = shop.node.store.data_dir / "releases"
    ledger = read_json(releases / "party-b" / "behaviour.json")
    key = releases / "noise.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ledger["noise"]["key"] == key_fingerprint(key.read_bytes())
    assert [entry["name"] for entry in ledger["noise"]["features"]] == SHOP_FEATURES
    assert ledger["noise"]["multipliers"] == [2.0] and ledger["exact_jobs"] == []
    assert ledger["noise"]["epsilon_per_person"] == pytest.approx(epsilon(7 / 8, 1e-5))
    assert key.read_bytes().hex() not in json.dumps(ledger)


def record(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, role="A", dataset="behaviour", peers={"A": "shop", "B": "bank", "C": "arbiter"})


def part(weights, box=None) -> ModelPartA:
    weights = np.asarray(weights, dtype=float)
    return ModelPartA("logistic", [f"f{i}" for i in range(len(weights))],
                      Standardizer(np.zeros_like(weights), np.ones_like(weights)), weights, feature_box=box)


BOX = FeatureBox(np.zeros(3), np.ones(3))


def test_a_model_without_feature_ranges_cannot_release_noisy_scores_of_new_features(tmp_path):
    ledgers = Releases(JobStore(tmp_path))

    with pytest.raises(JobError, match="keeps no feature ranges"):
        ledgers.admit(record("old"), part([1.0, 0.0, 0.5]), 10, 1000, None, noise=1.0)
    ledgers.admit(record("new"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=1.0)
    ledgers.admit(record("old"), part([1.0, 0.0, 0.5]), 10, 1000, None, noise=1.0)  # its features have boxes now

    assert ledgers.ledger("bank", "behaviour")["scored_ids"] == 20  # the refused request charged nothing


def test_a_feature_keeps_the_box_of_the_first_model_that_released_it(tmp_path):
    ledgers = Releases(JobStore(tmp_path))
    ledgers.admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=1.0)

    ledgers.admit(record("j2"), part([1.0, 0.0, 0.5], FeatureBox(-np.ones(3), 5 * np.ones(3))), 10, 1000, None,
                  noise=1.0)

    box = ledgers.score_noise(record("j2"), part([1.0, 0.0, 0.5]), 1.0).box
    assert box.lo.tolist() == [0.0] * 3 and box.hi.tolist() == [1.0] * 3


def test_a_changed_multiplier_is_independent_noise_and_adds_to_rho(tmp_path):
    ledgers = Releases(JobStore(tmp_path))
    ledgers.admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=1.0)

    changed = ledgers.admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=2.0)

    report = ledgers.noise_accounting(record("j1"), part([1.0, 0.0, 0.5], BOX), 2.0, 1e-6)
    assert changed and report["multipliers_used"] == [1.0, 2.0]
    assert report["rho_per_release"] == pytest.approx(3 / 8)
    assert report["rho_per_person"] == pytest.approx(3 / 2 + 3 / 8)


def test_exact_releases_are_noted_and_an_older_ledger_counts_all_its_models_as_exact(tmp_path):
    ledgers = Releases(JobStore(tmp_path))
    ledgers.admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None)  # noise off
    ledgers.admit(record("j2"), part([0.0, 1.0, 0.0], BOX), 10, 1000, None, noise=1.0)
    path = tmp_path / "releases" / "bank" / "behaviour.json"
    ledgers.write("bank", "behaviour")
    written = read_json(path)
    older = tmp_path / "older"
    older_ledger = older / "releases" / "bank" / "behaviour.json"
    older_ledger.parent.mkdir(parents=True)
    from vfl.files import atomic_write_json
    atomic_write_json(older_ledger, {"directions": written["directions"], "scored_ids": 20})

    report = ledgers.noise_accounting(record("j2"), part([0.0, 1.0, 0.0], BOX), 1.0, 1e-6)

    assert written["exact_jobs"] == ["j1"] and report["exact_jobs"] == ["j1"]
    assert "only the people never scored" in report["covers"]
    assert Releases(JobStore(older)).ledger("bank", "behaviour")["exact_jobs"] == ["j1", "j2"]


def test_a_noise_key_other_than_the_one_the_ledger_was_noised_with_is_refused(tmp_path):
    ledgers = Releases(JobStore(tmp_path))
    ledgers.admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=1.0)
    ledgers.write("bank", "behaviour")
    (tmp_path / "releases" / "noise.key").write_bytes(bytes(32))  # lost and made afresh

    with pytest.raises(JobError, match="restore it from a backup"):
        Releases(JobStore(tmp_path)).admit(record("j1"), part([1.0, 0.0, 0.5], BOX), 10, 1000, None, noise=1.0)
