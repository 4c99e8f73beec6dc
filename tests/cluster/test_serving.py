"""Online scoring over HTTP: a database-backed feature party, new customers, B's own features, statuses.

Party A's dataset is a SQLite table; rows are added to it after training, as
a shop's database grows. One job lets A score new IDs ([scoring]
allow_new_ids names it), the other does not.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from tests.helpers import demo_job, start_cluster, wait_for
from vfl.ml.parts import ModelPartA, ModelPartB

pytest.importorskip("sqlalchemy", reason="the database-backed dataset needs vfl[sql]")

OPEN, CLOSED = "open-job", "closed-job"


def _shop_database(workdir) -> tuple[list[str], list[str]]:
    """Party A's CSV as a SQLite table; returns A's feature columns and IDs."""
    shop = pd.read_csv(workdir / "party-a" / "shop.csv", dtype={"customer_id": str})
    with sqlite3.connect(workdir / "shop.db") as db:
        shop.to_sql("customers", db, index=False)
    return [c for c in shop.columns if c != "customer_id"], shop["customer_id"].tolist()


def _add_customer(workdir, row: dict) -> None:
    with sqlite3.connect(workdir / "shop.db") as db:
        columns = ", ".join(row)
        db.execute(f"INSERT INTO customers ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two trained jobs on a SQLite-backed party A, then the predictions the tests look at."""
    import asyncio

    workdir = tmp_path_factory.mktemp("serving")
    extra = {"party-a": (
        '[datasets.shopdb]\nurl = "sqlite:///shop.db"\ntable = "customers"\nid_column = "customer_id"\n\n'
        f'[scoring]\nallow_new_ids = ["{OPEN}"]\n'
    )}

    async def scenario():
        cluster = await start_cluster(workdir, extra=extra, **demo_job(epochs=6))
        shop_columns, shop_ids = _shop_database(workdir)
        bank = pd.read_csv(workdir / "party-b" / "bank.csv", dtype={"customer_id": str})
        bank_columns = [c for c in bank.columns if c not in ("customer_id", "default")]
        try:
            async with cluster.client() as b, cluster.client("party-a") as a:
                for job_id, threshold in ((OPEN, {"pick": "max_f1"}), (CLOSED, 0.35)):
                    job = {**cluster.setup["job"], "job_id": job_id, "party_a": {"peer": "party-a", "dataset": "shopdb"}}
                    job["training"] = {**job["training"], "threshold": threshold}
                    assert (await b.post("/v1/jobs", json=job)).status_code == 201
                    assert (await wait_for(b, job_id))["state"] == "succeeded"
                # After training the shop's database grows: two new customers, one with a missing value.
                new_row = dict(zip(shop_columns, [120.0, 2, 0.1, 0.2, 0.1, 0.3, 0.2]))
                _add_customer(workdir, {"customer_id": "NEW-1", **new_row})
                _add_customer(workdir, {"customer_id": "NEW-3", **new_row})
                _add_customer(workdir, {"customer_id": "NEW-BAD", **{**new_row, shop_columns[0]: None}})
                in_both = sorted(set(bank["customer_id"]) & set(shop_ids))
                applicant = dict(zip(bank_columns, [41000.0, 0.3, 1, 0.2, 3.5, 9000.0]))
                query = {
                    "ids": [in_both[0], "NEW-1", "NEW-2", "NEW-BAD", "NEW-3", in_both[1]],
                    "features": {"NEW-1": applicant, "NEW-BAD": applicant,
                                 "NEW-3": {**applicant, bank_columns[0]: None}},  # one of B's values missing
                }
                answers = {job_id: (await b.post(f"/v1/jobs/{job_id}/predict", json=query)).json()
                           for job_id in (OPEN, CLOSED)}
                parts = {job_id: (ModelPartA.from_dict((await a.get(f"/v1/jobs/{job_id}/model")).json()),
                                  ModelPartB.from_dict((await b.get(f"/v1/jobs/{job_id}/model")).json()))
                         for job_id in (OPEN, CLOSED)}
                records = {job_id: (await b.get(f"/v1/jobs/{job_id}")).json() for job_id in (OPEN, CLOSED)}
                audit = (workdir / "data" / "party-a" / "jobs" / OPEN / "audit.log").read_text()
        finally:
            await cluster.stop()
        return dict(answers=answers, parts=parts, records=records, query=query, new_row=new_row, applicant=applicant,
                    shop=pd.read_csv(workdir / "party-a" / "shop.csv", dtype={"customer_id": str}).set_index("customer_id"),
                    bank=bank.set_index("customer_id"), shop_columns=shop_columns, bank_columns=bank_columns, audit=audit)

    return asyncio.run(scenario())


def _by_id(answer: dict) -> dict[str, dict]:
    return {p["id"]: p for p in answer["predictions"]}


def test_each_id_gets_a_status_and_only_the_rest_are_scored(served):
    # Arrange
    answer = _by_id(served["answers"][OPEN])
    aligned = served["query"]["ids"][0]

    # Act: nothing; the fixture asked once for every case.

    # Assert
    assert answer[aligned]["status"] == "ok" and 0 < answer[aligned]["score"] < 1
    assert answer["NEW-1"]["status"] == "ok"  # new at A (its database) and at B (features in the request)
    assert answer["NEW-2"] == {"id": "NEW-2", "score": None, "label": None, "status": "unknown id"}
    assert answer["NEW-BAD"]["status"] == "not available at party-a" and answer["NEW-BAD"]["score"] is None
    assert answer["NEW-3"]["status"].startswith("invalid features: ") and served["bank_columns"][0] in answer["NEW-3"]["status"]
    assert [p["id"] for p in served["answers"][OPEN]["predictions"]] == served["query"]["ids"]


def test_a_new_customer_is_scored_from_the_rows_of_both_databases(served):
    # Arrange: the score computed by hand from each party's own part of the model.
    part_a, part_b = served["parts"][OPEN]
    u_a = part_a.partial_scores(np.array([[served["new_row"][c] for c in part_a.feature_names]]))
    x_b = np.array([[served["applicant"][c] for c in part_b.feature_names]])

    # Act
    expected = part_b.predict(x_b, u_a)[0]

    # Assert
    assert _by_id(served["answers"][OPEN])["NEW-1"]["score"] == pytest.approx(expected, abs=1e-12)


def test_a_feature_party_scores_new_ids_only_for_the_jobs_its_config_names(served):
    # Arrange
    closed = _by_id(served["answers"][CLOSED])

    # Act / Assert: the same new customer is not scored for the job A did not open up.
    assert closed["NEW-1"]["status"] == "not available at party-a"
    assert closed[served["query"]["ids"][0]]["status"] == "ok"
    # A was asked only about the IDs B could score itself, and its log keeps the reason per ID.
    assert served["audit"].splitlines()[-1].endswith("scored 3 IDs for party-b (1 not available); 1 invalid features")


def test_labels_follow_the_threshold_the_model_stores(served):
    for job_id, rule in ((OPEN, "max_f1"), (CLOSED, "fixed")):
        # Arrange
        answer = served["answers"][job_id]
        stored = served["parts"][job_id][1].threshold
        decision = served["records"][job_id]["decision"]

        # Act
        scored = [p for p in answer["predictions"] if p["status"] == "ok"]

        # Assert
        assert answer["threshold"] == stored.value == decision["threshold"]["value"] and stored.rule == rule
        assert answer["calibrated"] is True and decision["calibration"]["method"] == "platt"
        assert scored and all(p["label"] == int(p["score"] >= stored.value) for p in scored)
    assert served["parts"][CLOSED][1].threshold.value == 0.35


def test_a_picked_threshold_is_the_best_f1_on_the_validation_rows(served):
    # Arrange: the job's validation metrics at its own threshold, and the model without a decision layer.
    record = served["records"][OPEN]

    # Act
    f1_picked = record["metrics"]["validation"]["f1"]

    # Assert: F1 at the picked threshold is at least F1 at 0.5 before calibration (same rows).
    assert f1_picked >= record["decision"]["uncalibrated"]["validation"]["f1"] - 1e-12
    assert record["decision"]["fitted_on"] == "validation"
