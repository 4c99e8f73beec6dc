"""A whole job with noise on the shop's released scores ([scoring] score_noise): evaluation, predictions, accounting."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.helpers import URLS, demo_job, start_cluster, wait_for
from vfl.ml.parts import ModelPartA
from vfl.ml.score_noise import epsilon


def test_a_job_with_score_noise_evaluates_and_predicts_on_fixed_noisy_scores(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, extra={"party-a": "[scoring]\nscore_noise = 0.2"}, **demo_job(epochs=3))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, httpx.AsyncClient(
                    transport=cluster.router, base_url=URLS["party-a"], headers={"X-VFL-Party": "party-b"}) as b_peer:
                job = {**cluster.setup["job"], "job_id": "noisy"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, "noisy")
                ids = cluster.nodes["party-a"].store.load_alignment("noisy")[:20]
                first = (await b_peer.post("/v1/peer/jobs/noisy/scores", json={"ids": ids})).json()
                again = (await b_peer.post("/v1/peer/jobs/noisy/scores", json={"ids": ids})).json()
                predictions = [(await bank.post("/v1/jobs/noisy/predict", json={"ids": ids})).json() for _ in range(2)]
                shop_status = (await shop.get("/v1/jobs/noisy")).json()
                model = ModelPartA.from_dict(cluster.nodes["party-a"].store.load_model("noisy"))
                rows = cluster.nodes["party-a"].data.lookup("behaviour", ids, model.feature_names).features
            return status, first, again, predictions, shop_status, model, rows
        finally:
            await cluster.stop()

    status, first, again, predictions, shop_status, model, rows = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    assert status["metrics"]["train"]["auc"] is not None  # B evaluated on the noisy scores
    assert model.feature_box is not None  # training kept the shop's feature ranges with its part
    exact = model.partial_scores(rows)
    assert np.all(np.abs(np.array(first["u_a"]) - exact) > 1e-9)  # B never sees an exact score
    assert first == again and predictions[0] == predictions[1]  # a repeat is the same noisy value
    report = shop_status["score_noise"]
    n = len(model.feature_names)
    assert report["multiplier"] == 0.2 and report["n_features"] == n and report["exact_jobs"] == []
    assert report["epsilon_per_person"] == pytest.approx(epsilon(n / (2 * 0.2**2), 1e-6))
