"""The three services in one process, talking HTTP through httpx's ASGI transport."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.helpers import demo_job, start_cluster, wait_for
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.service.config import load_config
from vfl.service.node import Node
from vfl.service.serving.common import model_part
from vfl.local.simulate import simulate


def test_a_job_runs_to_success_and_serves_predictions(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(validation_fraction=0.2))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, cluster.client("arbiter") as arb:
                job = {**cluster.setup["job"], "job_id": "test-job"}
                submitted = await bank.post("/v1/jobs", json=job)
                assert submitted.status_code == 201, submitted.text
                status = await wait_for(bank, job["job_id"])
                shop_status = (await shop.get(f"/v1/jobs/{job['job_id']}")).json()
                arb_status = (await arb.get(f"/v1/jobs/{job['job_id']}")).json()
                shop_model = (await shop.get(f"/v1/jobs/{job['job_id']}/model")).json()
                bank_model = (await bank.get(f"/v1/jobs/{job['job_id']}/model")).json()
                known = pd.read_csv(tmp_path / "party-b" / "bank.csv")["customer_id"].head(5).tolist()
                in_both = sorted(set(known) & set(pd.read_csv(tmp_path / "party-a" / "shop.csv")["customer_id"]))
                predicted = await bank.post(f"/v1/jobs/{job['job_id']}/predict", json={"ids": in_both})
                unknown = await bank.post(f"/v1/jobs/{job['job_id']}/predict", json={"ids": ["NOBODY-1"]})
            return status, shop_status, arb_status, shop_model, bank_model, predicted, unknown, in_both
        finally:
            await cluster.stop()

    status, shop_status, arb_status, shop_model, bank_model, predicted, unknown, in_both = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    assert shop_status["state"] == arb_status["state"] == "succeeded"
    assert status["alignment"]["intersection"] > 0 and status["alignment"]["method"] == "rsa-blind-signature-psi"
    assert len(status["loss_history"]) == status["epoch"] > 0
    assert status["metrics"]["validation"]["auc"] > status["baseline"]["metrics"]["validation"]["auc"]
    assert shop_model["party"] == "A" and "intercept" not in shop_model  # each party sees only its part
    assert bank_model["party"] == "B" and len(bank_model["weights"]) == 6
    assert predicted.status_code == 200, predicted.text
    scores = predicted.json()["predictions"]
    assert [p["id"] for p in scores] == in_both and all(0 < p["score"] < 1 for p in scores)
    # An ID no party holds is one entry with a status, not a failed request.
    assert unknown.status_code == 200, unknown.text
    assert unknown.json()["predictions"] == [{"id": "NOBODY-1", "score": None, "label": None, "status": "unknown id"}]


def test_service_metrics_match_the_simulation(tmp_path, run, keypair):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=6))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "test-job"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                return await wait_for(bank, job["job_id"]), job
        finally:
            await cluster.stop()

    status, job = run(scenario())
    shop = load_csv(tmp_path / "party-a" / "shop.csv", id_column="customer_id")
    bank = load_csv(tmp_path / "party-b" / "bank.csv", id_column="customer_id", label_column="default", model="logistic")
    simulated = simulate(shop, bank, TrainingConfig(**job["training"]), keypair=keypair)

    assert status["state"] == "succeeded", status["error"]
    for name, value in simulated["metrics"]["train"].items():
        if isinstance(value, float):
            assert abs(status["metrics"]["train"][name] - value) < 0.005, name
    assert np.allclose(status["loss_history"], simulated["loss_history"], atol=1e-9)


def test_jobs_and_models_survive_a_restart(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=3))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "test-job"}
                await bank.post("/v1/jobs", json=job)
                await wait_for(bank, job["job_id"])
        finally:
            await cluster.stop()
        restarted = Node(load_config(tmp_path / "party-b.toml"))
        await restarted.startup()
        ctx = restarted.job(job["job_id"])
        return ctx.record, model_part(ctx)

    record, model = run(scenario())

    assert record.state == "succeeded" and record.metrics is not None
    assert model["party"] == "B"
