"""Models as things people manage: list, promote under a name, roll back, delete everywhere, scorecards.

Two jobs are trained once for the module (``trained``); every test works on its
own copy of the three services' folders, restarted as in-process services.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.helpers import Cluster, add_limits, demo_job, open_cluster, start_cluster, wait_for
from vfl.data.table import load_csv
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.service.config import load_config
from vfl.service.record import JobRecord
from vfl.service.serving.common import model_part
from vfl.service.store import JobStore

JOBS = ("job-1", "job-2")
FAILED = "job-failed"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A workdir with two succeeded jobs (different step sizes, so different scores) and one failed record at B."""
    workdir = tmp_path_factory.mktemp("trained")

    async def scenario():
        cluster = await start_cluster(workdir, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = cluster.setup["job"]
                # Different step sizes: the jobs keep their best validation epoch, so epochs alone may not differ.
                for job_id, step in zip(JOBS, (None, 0.2)):
                    spec = {**job, "job_id": job_id, "training": {**job["training"], "learning_rate": step}}
                    assert (await bank.post("/v1/jobs", json=spec)).status_code == 201
                for job_id in JOBS:
                    status = await wait_for(bank, job_id)
                    assert status["state"] == "succeeded", status["error"]
        finally:
            await cluster.stop()

    asyncio.run(scenario())
    JobStore(load_config(workdir / "party-b.toml").party.data_dir).create(
        JobRecord(job_id=FAILED, role="B", state="failed", stage="stopped", error="made up for the test"))
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> Path:
    """This test's own copy of the trained services."""
    return Path(shutil.copytree(trained, tmp_path / "services"))


def shared_ids(workdir: Path, n: int = 8) -> list[str]:
    bank = pd.read_csv(workdir / "party-b" / "bank.csv")["customer_id"]
    shop = set(pd.read_csv(workdir / "party-a" / "shop.csv")["customer_id"])
    return [i for i in bank if i in shop][:n]


def job_dirs(cluster: Cluster, job_id: str) -> dict[str, bool]:
    """Whether each service still holds the job's data (more than its record and audit log)."""
    kept = {"job.json", "audit.log"}
    return {name: node.store.job_dir(job_id).exists() and any(f.name not in kept for f in node.store.job_dir(job_id)
                                                               .iterdir())
            for name, node in cluster.nodes.items()}


def job_files(cluster: Cluster, name: str, job_id: str) -> list[str]:
    folder = cluster.nodes[name].store.job_dir(job_id)
    return sorted(f.name for f in folder.iterdir()) if folder.exists() else []


def scores(answer: httpx.Response) -> list[float]:
    assert answer.status_code == 200, answer.text
    return [p["score"] for p in answer.json()["predictions"]]


def test_models_are_listed_at_b_and_a(workdir, run):
    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                return (await bank.get("/v1/models")).json(), (await shop.get("/v1/models")).json()
        finally:
            await cluster.stop()

    at_b, at_a = run(scenario())

    assert [m["job_id"] for m in at_b["models"]] == list(JOBS)  # the failed job has no model
    assert [m["job_id"] for m in at_a["models"]] == list(JOBS)
    first = at_b["models"][0]
    assert first["model"] == "logistic" and first["dataset"] == "credit" and first["names"] == []
    assert first["metrics"]["train"]["auc"] > 0.5 and len(first["feature_names"]) == 6
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["trained_at"])
    assert first["vfl_version"]
    assert first["roster"] == {"features": ["party-a"], "label": "party-b", "arbiter": "arbiter"}
    assert at_a["models"][0]["metrics"] is None and at_a["models"][0]["dataset"] == "behaviour"
    assert at_b["served"] == {} and "served" not in at_a


def test_promote_predict_by_name_and_roll_back(workdir, run):
    ids = shared_ids(workdir)

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                by_job = {j: scores(await bank.post(f"/v1/jobs/{j}/predict", json={"ids": ids})) for j in JOBS}
                first = await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                second = await bank.post("/v1/models/risk/promote", json={"job_id": "job-2"})
                info = (await bank.get("/v1/models/risk")).json()
                listed = (await bank.get("/v1/models")).json()
                after_promote = scores(await bank.post("/v1/models/risk/predict", json={"ids": ids}))
                back = await bank.post("/v1/models/risk/rollback")
                after_rollback = scores(await bank.post("/v1/models/risk/predict", json={"ids": ids}))
                again = await bank.post("/v1/models/risk/rollback")
            return by_job, first, second, info, listed, after_promote, back, after_rollback, again
        finally:
            await cluster.stop()

    by_job, first, second, info, listed, after_promote, back, after_rollback, again = run(scenario())

    assert not np.allclose(by_job["job-1"], by_job["job-2"])  # else the name could not tell them apart
    assert first.json() == {"name": "risk", "job_id": "job-1", "history": []}
    assert second.json() == {"name": "risk", "job_id": "job-2", "history": ["job-1"]}
    assert info["job_id"] == "job-2" and info["history"] == ["job-1"] and info["model"]["names"] == ["risk"]
    assert listed["served"] == {"risk": {"job_id": "job-2", "history": ["job-1"]}}
    assert after_promote == by_job["job-2"]
    assert back.status_code == 200 and back.json()["job_id"] == "job-1" and back.json()["history"] == []
    assert after_rollback == by_job["job-1"]
    assert again.status_code == 409 and "no earlier version" in again.json()["detail"]
    assert "/v1/models/risk/promote" in again.json()["detail"]


def test_promotion_refuses_failed_unknown_jobs_and_bad_names(workdir, run):
    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                return (
                    await bank.post("/v1/models/risk/promote", json={"job_id": FAILED}),
                    await bank.post("/v1/models/risk/promote", json={"job_id": "no-such-job"}),
                    await bank.post("/v1/models/-bad/promote", json={"job_id": "job-1"}),
                    await bank.post("/v1/models/other/predict", json={"ids": ["x"]}),
                    (await bank.get("/v1/models/risk")).json(),
                )
        finally:
            await cluster.stop()

    failed, unknown, bad_name, unknown_name, risk = run(scenario())

    assert failed.status_code == 409 and "failed" in failed.json()["detail"]
    assert unknown.status_code == 404 and "no-such-job" in unknown.json()["detail"]
    assert bad_name.status_code == 422
    assert unknown_name.status_code == 404 and "known names: risk" in unknown_name.json()["detail"]
    assert risk["job_id"] == "job-1" and risk["history"] == []  # the refusals changed nothing


def test_delete_is_refused_while_served_or_running(workdir, run):
    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                served = await bank.delete("/v1/jobs/job-1")
                spec = {**json.loads((workdir / "job.json").read_text()), "job_id": "job-3"}
                assert (await bank.post("/v1/jobs", json=spec)).status_code == 201
                running = await bank.delete("/v1/jobs/job-3")
                await bank.post("/v1/jobs/job-3/cancel")
                await wait_for(bank, "job-3")
            return served, running, job_dirs(cluster, "job-1")
        finally:
            await cluster.stop()

    served, running, dirs = run(scenario())

    assert served.status_code == 409 and "'risk'" in served.json()["detail"]
    assert served.json()["error"] == "ModelServed"  # a client can tell it from other refusals, and name its own fix
    assert "rollback" in served.json()["detail"] and "promote another version" in served.json()["detail"]
    assert running.status_code == 409 and "cancel it first" in running.json()["detail"]
    assert dirs == {"party-a": True, "party-b": True, "arbiter": True}


def test_delete_removes_the_job_at_b_and_its_data_at_every_party_which_keeps_its_record_and_audit_log(workdir, run):
    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, cluster.client("arbiter") as arb:
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-2"})  # job-1 is history now
                before = job_dirs(cluster, "job-1")
                deleted = await bank.delete("/v1/jobs/job-1")
                after = job_dirs(cluster, "job-1")
                kept = {name: job_files(cluster, name, "job-1") for name in ("party-a", "arbiter")}
                views = [await c.get("/v1/jobs/job-1") for c in (bank, shop, arb)]
                rollback = await bank.post("/v1/models/risk/rollback")
                again = await bank.delete("/v1/jobs/job-1")
                listed = [m["job_id"] for m in (await shop.get("/v1/models")).json()["models"]]
                audit = (cluster.nodes["party-a"].store.job_dir("job-1") / "audit.log").read_text()
            return before, deleted, after, kept, views, rollback, again, listed, audit
        finally:
            await cluster.stop()

    before, deleted, after, kept, views, rollback, again, listed, audit = run(scenario())

    assert before == {"party-a": True, "party-b": True, "arbiter": True}
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted" and deleted.json()["pending"] == {}
    assert sorted(deleted.json()["deleted"]) == ["arbiter", "party-a", "party-b"]
    assert after == {"party-a": False, "party-b": False, "arbiter": False}  # no model, IDs or checkpoints left
    assert kept == {"party-a": ["audit.log", "job.json"], "arbiter": ["audit.log", "job.json"]}  # a request only
    assert views[0].status_code == 404  # B forgets its own job
    assert [(v.json()["state"], v.json()["stage"]) for v in views[1:]] == [("succeeded", "deleted")] * 2
    assert "party B (party-b) deleted the job" in audit and "peer_delete = 'drop-data'" in audit
    assert rollback.status_code == 409  # the deleted version left the name's history
    assert again.status_code == 404
    assert listed == ["job-2"]


def test_delete_with_a_peer_down_is_partial_and_a_retry_finishes_it(workdir, run):
    add_limits(workdir, {"party-b": {"peer_timeout": 0.5}})  # give up on the missing arbiter quickly

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                arbiter = cluster.router.apps.pop("arbiter.test")
                partial = await bank.delete("/v1/jobs/job-1")
                during = job_dirs(cluster, "job-1")
                status = (await bank.get("/v1/jobs/job-1")).json()
                promote = await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                cluster.router.apps["arbiter.test"] = arbiter
                finished = await bank.delete("/v1/jobs/job-1")
                after = job_dirs(cluster, "job-1")
            return partial, during, status, promote, finished, after
        finally:
            await cluster.stop()

    partial, during, status, promote, finished, after = run(scenario())

    assert partial.status_code == 502
    body = partial.json()
    assert body["status"] == "partial" and body["deleted"] == ["party-a"] and list(body["pending"]) == ["arbiter"]
    assert "arbiter" in body["detail"] and "again" in body["detail"]
    assert during == {"party-a": False, "party-b": True, "arbiter": True}  # marked at B, not lost
    assert status["stage"] == "deleting"
    assert promote.status_code == 409
    assert finished.status_code == 200, finished.text
    assert sorted(finished.json()["deleted"]) == ["arbiter", "party-a", "party-b"]
    assert after == {"party-a": False, "party-b": False, "arbiter": False}


def test_peer_delete_only_from_the_jobs_party_b(workdir, run):
    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with httpx.AsyncClient(transport=cluster.router, base_url="http://party-a.test",
                                         headers={"X-VFL-Party": "arbiter"}) as as_arbiter:
                refused = await as_arbiter.post("/v1/peer/jobs/job-1/delete", json={})
            return refused, job_dirs(cluster, "job-1")
        finally:
            await cluster.stop()

    refused, dirs = run(scenario())

    assert refused.status_code == 403
    assert dirs["party-a"]


def test_scorecards_reproduce_each_partys_partial_score(workdir, run):
    ids = shared_ids(workdir, 50)

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                return ((await shop.get("/v1/jobs/job-1/scorecard")).json(),
                        (await bank.get("/v1/jobs/job-1/scorecard")).json(),
                        model_part(cluster.nodes["party-a"].job("job-1")), model_part(cluster.nodes["party-b"].job("job-1")))
        finally:
            await cluster.stop()

    card_a, card_b, model_a, model_b = run(scenario())
    shop = load_csv(workdir / "party-a" / "shop.csv", id_column="customer_id")
    bank = load_csv(workdir / "party-b" / "bank.csv", id_column="customer_id", label_column="default",
                    model="logistic")
    x_a, x_b = shop.features[shop.rows_for(ids)], bank.features[bank.rows_for(ids)]

    def from_card(card, x):
        return card["raw_offset"] + x @ np.array([f["raw_coefficient"] for f in card["features"]])

    assert card_a["party"] == "party-a" and card_a["job_id"] == "job-1" and "intercept" not in card_a
    assert [f["name"] for f in card_a["features"]] == model_a["feature_names"]
    assert [f["coefficient"] for f in card_a["features"]] == model_a["weights"]
    assert card_a["row_clip"] is None and card_a["trained_at"] and card_a["vfl_version"]
    assert np.allclose(from_card(card_a, x_a), ModelPartA.from_dict(model_a).partial_scores(x_a), atol=1e-9)
    assert card_b["intercept"] == model_b["intercept"] and card_b["threshold"] == model_b.get("threshold", 0.5)
    assert card_b["calibration"] == model_b.get("calibration")
    u_b = ModelPartB.from_dict(model_b).scores(x_b, np.zeros(len(ids)))  # B's own part, intercept included
    assert np.allclose(from_card(card_b, x_b), u_b, atol=1e-9)


def test_the_registry_survives_a_restart(workdir, run):
    ids = shared_ids(workdir)

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-1"})
                await bank.post("/v1/models/risk/promote", json={"job_id": "job-2"})
                expected = scores(await bank.post("/v1/jobs/job-1/predict", json={"ids": ids}))
        finally:
            await cluster.stop()
        cluster = await open_cluster(workdir)  # new Nodes on the same data dirs
        try:
            async with cluster.client() as bank:
                info = (await bank.get("/v1/models/risk")).json()
                back = (await bank.post("/v1/models/risk/rollback")).json()
                predicted = scores(await bank.post("/v1/models/risk/predict", json={"ids": ids}))
            return info, back, predicted, expected
        finally:
            await cluster.stop()

    info, back, predicted, expected = run(scenario())

    assert info["job_id"] == "job-2" and info["history"] == ["job-1"]
    assert back["job_id"] == "job-1"
    assert predicted == expected


def test_a_feature_party_that_keeps_its_data_keeps_it_when_b_deletes_and_scores_no_more(workdir, run):
    """A party B's delete is a request: a feature party whose policy says "keep" keeps its model part."""
    config = workdir / "party-a.toml"
    config.write_text(config.read_text() + '\n[retention]\npeer_delete = "keep"\n')

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank, as_peer(cluster, "party-a", "party-b") as b_as_peer:
                deleted = await bank.delete("/v1/jobs/job-2")
                scored = await b_as_peer.post("/v1/peer/jobs/job-2/scores", json={"ids": shared_ids(workdir, 2)})
            return deleted, scored, job_files(cluster, "party-a", "job-2"), job_files(cluster, "arbiter", "job-2")
        finally:
            await cluster.stop()

    deleted, scored, at_a, at_c = run(scenario())

    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted", deleted.text
    assert "model.json" in at_a and "alignment.json" in at_a  # kept by A's own policy
    assert at_c == ["audit.log", "job.json"]  # the arbiter's default: drop the data, keep record and audit log
    assert scored.status_code == 409 and "deleted at party B's request" in scored.json()["detail"]


def as_peer(cluster: Cluster, target: str, caller: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=cluster.router, base_url=f"http://{target}.test", headers={"X-VFL-Party": caller})
