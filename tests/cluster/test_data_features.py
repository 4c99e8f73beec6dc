"""FATE's ionosphere through the services: each party imputes, encodes and normalises its own data.

Party A's copy of the file has zero-padded IDs (``007``) and normalises them with
``ids = { strip_leading_zeros = true }``; party B's copy has a text column that it
one-hot encodes. Both fill missing numbers with their own training rows' means.
The job trains as the one-process simulation does, records each party's
preparation in its own model part, and serving prepares new rows the same way.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_KEY_BITS, fate_pair
from tests.helpers import demo_job, start_cluster, wait_for
from vfl.data.ids import IdRules
from vfl.data.table import load_csv
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig
from vfl.ml.prep import PrepConfig

TRAINING = {"epochs": 6, "validation_fraction": 0.2}


def _files(workdir):
    host, guest = fate_pair("ionosphere_scale")
    a = pd.read_csv(host, dtype=str, keep_default_na=False)
    a["sid"] = a["sid"].str.zfill(3)
    b = pd.read_csv(guest, dtype=str, keep_default_na=False)
    b["segment"] = np.where(b["sid"].astype(int) % 3 == 0, "retail", np.where(b["sid"].astype(int) % 3 == 1, "sme", ""))
    a.to_csv(workdir / "iono_a.csv", index=False)
    b.to_csv(workdir / "iono_b.csv", index=False)
    return workdir / "iono_a.csv", workdir / "iono_b.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, keypair):
    workdir = tmp_path_factory.mktemp("data-features")
    path_a, path_b = _files(workdir)
    extra = {
        "party-a": f'[datasets.iono]\npath = "{path_a}"\nid_column = "sid"\nimpute = "mean"\n'
                   "ids = { strip_leading_zeros = true }\n",
        "party-b": f'[datasets.iono]\npath = "{path_b}"\nid_column = "sid"\nlabel_column = "label"\n'
                   'impute = "mean"\nmissing_indicator = true\ncategorical = { segment = "onehot" }\n',
    }

    async def scenario():
        cluster = await start_cluster(workdir, extra=extra, **demo_job(**TRAINING))
        try:
            async with cluster.client() as b, cluster.client("party-a") as a:
                job = {**cluster.setup["job"], "job_id": "iono", "party_a": {"peer": "party-a", "dataset": "iono"},
                       "party_b": {"dataset": "iono"}}
                assert (await b.post("/v1/jobs", json=job)).status_code == 201
                record = await wait_for(b, "iono")
                query = {"ids": ["0", "79", "5"],  # 79: x17 is missing at A; 5 gets B's features from the request
                         "features": {"5": {"x1": 1.0, "x3": None, "segment": "private banking"}}}
                answer = (await b.post("/v1/jobs/iono/predict", json=query)).json()
                model_a = (await a.get("/v1/jobs/iono/model")).json()
                model_b = (await b.get("/v1/jobs/iono/model")).json()
        finally:
            await cluster.stop()
        return record, answer, model_a, model_b

    record, answer, model_a, model_b = asyncio.run(scenario())
    prep_a = PrepConfig(impute="mean")
    prep_b = PrepConfig(impute="mean", missing_indicator=True, categorical={"segment": "onehot"})
    table_a = load_csv(path_a, id_column="sid", prep=prep_a, id_rules=IdRules(strip_leading_zeros=True))
    table_b = load_csv(path_b, id_column="sid", label_column="label", model="logistic", prep=prep_b)
    config = TrainingConfig(model="logistic", key_bits=TEST_KEY_BITS, **TRAINING)
    simulated = simulate(table_a, table_b, config, keypair=keypair, workers=1)
    return record, answer, model_a, model_b, simulated


def test_the_service_job_trains_as_the_simulation_on_prepared_data(trained):
    record, _, _, _, simulated = trained

    assert record["state"] == "succeeded", record.get("error")
    assert record["alignment"]["intersection"] == 351  # every zero-padded ID of A matched after normalisation
    assert record["metrics"]["validation"]["auc"] == pytest.approx(simulated["metrics"]["validation"]["auc"], abs=1e-3)


def test_each_model_part_records_its_own_preparation(trained):
    _, _, model_a, model_b, _ = trained

    assert model_a["preparation"]["impute"] == "mean" and "x17" in model_a["preparation"]["fills"]
    assert "segment" not in model_a["preparation"]["inputs"]
    assert model_b["preparation"]["categories"]["segment"] == ["(missing)", "retail", "sme"]
    assert "x3 (missing)" in model_b["feature_names"]


def test_serving_fills_a_missing_cell_and_zeroes_an_unseen_category(trained):
    _, answer, _, _, _ = trained

    statuses = {p["id"]: p["status"] for p in answer["predictions"]}

    assert statuses == {"0": "ok", "79": "ok", "5": "ok"}


def test_a_partial_id_mismatch_at_the_services_names_the_likely_cause(tmp_path, keypair):
    host, guest = fate_pair("ionosphere_scale")
    a = pd.read_csv(host, dtype=str, keep_default_na=False)
    a["sid"] = a["sid"].str.zfill(3)  # '7' → '007': the 100 IDs below 100 no longer match, and no ids rules
    b = pd.read_csv(guest, dtype=str, keep_default_na=False)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    extra = {"party-a": f'[datasets.iono]\npath = "{tmp_path / "a.csv"}"\nid_column = "sid"\nimpute = "median"\n',
             "party-b": f'[datasets.iono]\npath = "{tmp_path / "b.csv"}"\nid_column = "sid"\nlabel_column = "label"\n'
                        'impute = "median"\n'}

    async def scenario():
        cluster = await start_cluster(tmp_path / "cluster", extra=extra, **demo_job(epochs=2))
        try:
            async with cluster.client() as client:
                job = {**cluster.setup["job"], "job_id": "padded", "party_a": {"peer": "party-a", "dataset": "iono"},
                       "party_b": {"dataset": "iono"}}
                assert (await client.post("/v1/jobs", json=job)).status_code == 201
                return await wait_for(client, "padded")
        finally:
            await cluster.stop()

    record = asyncio.run(scenario())

    assert record["state"] == "succeeded" and record["alignment"]["intersection"] == 251
    assert any("leading zeros" in w and "strip_leading_zeros" in w for w in record["warnings"]), record["warnings"]
