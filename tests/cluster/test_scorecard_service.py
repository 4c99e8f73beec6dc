"""A scorecard job at the services (issue 28): federated binning, training on coded characteristics, points
kept by each party, served scores that add up, reasons only from a party that allows them, the binning budget."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.helpers import Router, start_cluster, wait_for
from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from vfl.demo.services import write_demo_files
from vfl.ml.scorecard.card import PartyCard
from vfl.service.config import load_config
from vfl.service.node import Node

SCORECARD = {"binning": {"max_bins": 4, "fine_bins": 8, "min_events": 2}, "reasons": 4}
TRAINING = {"epochs": 4, "validation_fraction": 0.25}
#: Words of a label statistic: none may appear in a feature party's job files.
LABEL_WORDS = ("woe", "iv", "event", "bad_rate", "nonevent")


def _job(setup, **extra):
    return {**setup["job"], "scorecard": SCORECARD, **extra}


async def _run(bank, job):
    answer = await bank.post("/v1/jobs", json=job)
    assert answer.status_code == 201, answer.text
    return await wait_for(bank, answer.json()["job_id"])


def _read(path):
    data = json.loads(path.read_text())
    return data.get("data", data) if isinstance(data, dict) and "sha256" in data else data


def _points(workdir, service, job_id, csv, id_column, ids):
    """A party's points for ``ids`` from its own stored card and its own file (what it would release)."""
    card = PartyCard.from_dict(_read(workdir / "data" / service / "jobs" / job_id / "card.json"))
    table = pd.read_csv(csv).set_index(id_column).loc[ids]
    return card.table.totals(card.encoding.bin_indices(table[list(card.encoding.names)].to_numpy(float)))


def _no_label_statistic(folder):
    for file in folder.rglob("*.json"):
        text = file.read_text()
        keys = set()

        def walk(value):
            if isinstance(value, dict):
                keys.update(k.lower() for k, v in value.items() if v not in ([], None))  # an empty list holds none
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(json.loads(text))
        assert not keys & set(LABEL_WORDS), f"{file} holds {keys & set(LABEL_WORDS)}"


def test_a_scorecard_job_with_one_feature_party_serves_scores_that_add_up(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, population=500, key_bits=1024, training=TRAINING,
                                      extra={"party-a": "[scorecard]\nmax_binning_runs = 1\n"})
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                status = await _run(bank, _job(cluster.setup, job_id="sc-1"))
                ids = _read(tmp_path / "data" / "party-b" / "jobs" / "sc-1" / "alignment.json")["ids"][:8]
                predicted = await bank.post("/v1/jobs/sc-1/predict", json={"ids": ids})
                again = await bank.post("/v1/jobs", json=_job(cluster.setup, job_id="sc-2"))
                shop_status = (await shop.get("/v1/jobs/sc-1")).json()
                stability = ((await bank.get("/v1/jobs/sc-1/stability")).json(),
                             (await shop.get("/v1/jobs/sc-1/stability")).json())
            return status, ids, predicted, again, shop_status, stability
        finally:
            await cluster.stop()

    status, ids, predicted, again, shop_status, stability = run(scenario())
    # Stability at each party, its own values: the served scores' PSI at B, the shop's CSI per characteristic.
    assert stability[0]["score"]["rows"] == 8 and stability[0]["score"]["status"] in ("stable", "watch", "alarm")
    # Only the 8 served IDs count: the job's evaluation on its aligned rows is not serving.
    assert stability[1]["characteristics"] and all(c["rows"] == 8 for c in stability[1]["characteristics"])
    assert stability[0]["characteristics"] and all(c["rows"] == 8 for c in stability[0]["characteristics"])
    assert status["state"] == "succeeded", status["error"]
    assert shop_status["state"] == "succeeded"
    section = status["scorecard"]
    assert {c["party"] for c in section["characteristics"]} == {"party-a", "party-b"}
    assert all(c["iv"] >= 0 for c in section["characteristics"])
    assert section["points"]["party-b"]["characteristics"] and 0 <= section["score"]["auc"] <= 1
    assert set(section["partner_ranges"]) == {"party-a"}
    # The served score is the base points plus every party's points, to the integer.
    assert predicted.status_code == 200, predicted.text
    served = predicted.json()["predictions"]
    assert all(p["status"] == "ok" for p in served)
    base = _read(tmp_path / "data" / "party-b" / "jobs" / "sc-1" / "scorecard.json")["base_points"]
    bank_points = _points(tmp_path, "party-b", "sc-1", tmp_path / "party-b" / "bank.csv", "customer_id", ids)
    shop_points = _points(tmp_path, "party-a", "sc-1", tmp_path / "party-a" / "shop.csv", "customer_id", ids)
    assert [p["score"] for p in served] == (base + bank_points + shop_points).tolist()
    assert all(0 < p["probability"] < 1 for p in served)
    # The shop did not allow reasons ([scorecard] share_reasons is off by default): only the bank's codes.
    assert all(r["code"].startswith("party-b:") for p in served for r in p["reasons"])
    assert any(p["reasons"] for p in served)
    # The feature party's stored files hold no label statistic.
    _no_label_statistic(tmp_path / "data" / "party-a" / "jobs" / "sc-1")
    # A second scorecard job asks for a second binning run: over the feature party's budget of one.
    assert again.status_code == 422 and "max_binning_runs" in again.text, again.text


SERVICES = ("arbiter", "shop", "telco", "party-b")
URLS = {name: f"http://{name}.test" for name in SERVICES}


def test_a_scorecard_job_with_two_feature_parties_and_reasons_from_one(tmp_path, run):
    setup = write_demo_files(tmp_path, population=600, key_bits=1024, training=TRAINING, urls=URLS, tls=False,
                             feature_parties=2)
    telco = tmp_path / "telco.toml"
    telco.write_text(telco.read_text() + "\n[scorecard]\nshare_reasons = true\n")

    async def scenario():
        router, nodes = Router(), {}
        for name in SERVICES:
            config = load_config(tmp_path / f"{name}.toml")
            node = Node(config, transport=router)
            app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
            router.apps[f"{name}.test"] = app
            await node.startup()
            nodes[name] = node
        token = nodes["party-b"].config.token()
        try:
            async with httpx.AsyncClient(transport=router, base_url=URLS["party-b"], timeout=120,
                                         headers={"Authorization": f"Bearer {token}"}) as bank:
                status = await _run(bank, _job(setup, job_id="sc-k"))
                ids = _read(tmp_path / "data" / "party-b" / "jobs" / "sc-k" / "alignment.json")["ids"][:10]
                predicted = await bank.post("/v1/jobs/sc-k/predict", json={"ids": ids})
            return status, ids, predicted
        finally:
            for node in nodes.values():
                await node.shutdown()

    status, ids, predicted = run(scenario())
    assert status["state"] == "succeeded", status["error"]
    assert {c["party"] for c in status["scorecard"]["characteristics"]} == {"shop", "telco", "party-b"}
    # B reports each partner's range of totals on its own (each sends its own totals), never a table.
    assert set(status["scorecard"]["partner_ranges"]) == {"shop", "telco"}
    assert set(status["scorecard"]["points"]) == {"party-b"}
    served = predicted.json()["predictions"]
    assert predicted.status_code == 200 and all(p["status"] == "ok" for p in served), predicted.text
    datasets = {"shop": "behaviour", "telco": "usage"}
    base = _read(tmp_path / "data" / "party-b" / "jobs" / "sc-k" / "scorecard.json")["base_points"]
    bank_csv = next((tmp_path / "party-b").glob("*.csv"))
    total = base + _points(tmp_path, "party-b", "sc-k", bank_csv, "customer_id", ids)
    for name in datasets:
        total = total + _points(tmp_path, name, "sc-k", next((tmp_path / name).glob("*.csv")), "customer_id", ids)
    assert [p["score"] for p in served] == total.tolist()
    codes = {r["code"].split(":")[0] for p in served for r in p["reasons"]}
    assert "shop" not in codes  # the shop does not share reasons; the telco does
    assert codes <= {"telco", "party-b"}
    for name in datasets:
        _no_label_statistic(tmp_path / "data" / name / "jobs" / "sc-k")


def test_a_scorecard_batch_writes_each_applicants_score_probability_and_reasons_as_predict_does(tmp_path, run):
    # Arrange: a scorecard job; party B may read batch inputs from, and write outputs to, its workdir.
    async def scenario():
        cluster = await start_cluster(tmp_path, population=400, key_bits=1024, training=TRAINING,
                                      extra={"party-a": "[scorecard]\nshare_reasons = true\n",
                                             "party-b": '[scoring]\nbatch_inputs = "."\nbatch_outputs = "."\n'})
        try:
            async with cluster.client() as bank:
                status = await _run(bank, {**_job(cluster.setup), "job_id": "sc-batch"})
                bank_ids = pd.read_csv(tmp_path / "party-b" / "bank.csv", dtype=str)["customer_id"].tolist()
                shop_ids = set(pd.read_csv(tmp_path / "party-a" / "shop.csv", dtype=str)["customer_id"])
                ids = [i for i in bank_ids if i in shop_ids][:25]
                pd.DataFrame({"id": ids}).to_csv(tmp_path / "ids.csv", index=False)
                request = {"input": {"path": str(tmp_path / "ids.csv"), "id_column": "id"},
                           "output": {"path": str(tmp_path / "scores.csv")}, "chunk_rows": 10}
                # Act
                batch = (await bank.post("/v1/jobs/sc-batch/score-batch", json=request)).json()
                for _ in range(600):
                    final = (await bank.get(f"/v1/jobs/sc-batch/score-batch/{batch['batch_id']}")).json()
                    if final["state"] in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.05)
                direct = (await bank.post("/v1/jobs/sc-batch/predict", json={"ids": ids})).json()
            return status, final, ids, direct
        finally:
            await cluster.stop()

    status, final, ids, direct = run(scenario())

    # Assert: the file holds what predict answers, reasons flattened to their codes.
    assert status["state"] == "succeeded", status["error"]
    assert final["state"] == "succeeded", final.get("error")
    rows = pd.read_csv(tmp_path / "scores.csv", dtype={"id": str})
    assert rows["id"].tolist() == ids
    assert {"score", "probability", "reason_1", "reason_4"} <= set(rows.columns)
    for (_, row), predicted in zip(rows.iterrows(), direct["predictions"]):
        assert int(row["score"]) == predicted["score"]
        assert row["probability"] == pytest.approx(predicted["probability"])
        codes = [r["code"] for r in predicted["reasons"]]
        written = [row[f"reason_{k}"] for k in range(1, 5) if isinstance(row[f"reason_{k}"], str)]
        assert written == codes
