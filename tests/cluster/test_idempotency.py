"""POST /v1/jobs with an Idempotency-Key: a repeat gets the first job, also after a restart."""

from __future__ import annotations

import asyncio

from tests.helpers import demo_job, open_cluster, start_cluster, wait_for


def test_a_repeated_submit_returns_the_first_job_also_after_a_restart(tmp_path, run):
    async def scenario():
        seen = {}
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        spec = {k: v for k, v in cluster.setup["job"].items() if k != "job_id"}  # B names the job
        other = {**spec, "training": {**spec["training"], "epochs": 3}}
        try:
            async with cluster.client() as bank:
                key = {"Idempotency-Key": "order-2024-0001"}
                seen["first"] = await bank.post("/v1/jobs", json=spec, headers=key)
                seen["again"] = await bank.post("/v1/jobs", json=spec, headers=key)
                seen["other_spec"] = await bank.post("/v1/jobs", json=other, headers=key)
                # Two at once with a new key (a client that timed out and retried): one job.
                seen["racing"] = await asyncio.gather(*(
                    bank.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "order-2024-0002"})
                    for _ in range(2)))
                seen["bad_key"] = await bank.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "x" * 256})
                for answer in (seen["first"], seen["racing"][0]):
                    assert (await wait_for(bank, answer.json()["job_id"]))["state"] == "succeeded"
                seen["jobs"] = len((await bank.get("/v1/jobs")).json()["jobs"])
        finally:
            await cluster.stop()
        restarted = await open_cluster(tmp_path)  # the same folders: as after a restart of all three
        try:
            async with restarted.client() as bank:
                seen["after_restart"] = await bank.post("/v1/jobs", json=spec, headers=key)
                seen["other_after_restart"] = await bank.post("/v1/jobs", json=other, headers=key)
        finally:
            await restarted.stop()
        return seen

    seen = run(scenario())

    first = seen["first"]
    assert first.status_code == 201, first.text
    job_id = first.json()["job_id"]
    assert first.json()["idempotency_key"] == "order-2024-0001"
    assert "Idempotent-Replayed" not in first.headers
    for repeat in (seen["again"], seen["after_restart"]):
        assert repeat.status_code == 200, repeat.text
        assert repeat.json()["job_id"] == job_id and repeat.headers["Idempotent-Replayed"] == "true"
    assert seen["after_restart"].json()["state"] == "succeeded"
    for conflict in (seen["other_spec"], seen["other_after_restart"]):
        assert conflict.status_code == 422, conflict.text
        detail = conflict.json()["detail"]
        assert conflict.json()["error"] == "IdempotencyKeyReused"
        assert "Idempotency-Key 'order-2024-0001' was used for job " + job_id in detail
        assert "different job spec" in detail
    racing = seen["racing"]
    assert sorted(r.status_code for r in racing) == [200, 201], [r.text for r in racing]
    assert racing[0].json()["job_id"] == racing[1].json()["job_id"] != job_id
    assert seen["bad_key"].status_code == 422 and "Idempotency-Key" in seen["bad_key"].json()["detail"]
    assert seen["jobs"] == 2  # one job per key, whatever was repeated


def test_a_failed_submit_leaves_its_key_free(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=1))
        spec = cluster.setup["job"]
        bad = {**spec, "party_a": {**spec["party_a"], "dataset": "no-such-dataset"}}
        try:
            async with cluster.client() as bank:
                key = {"Idempotency-Key": "retry-me"}
                refused = await bank.post("/v1/jobs", json=bad, headers=key)  # A refuses: nothing is kept
                fixed = await bank.post("/v1/jobs", json=spec, headers=key)
                await wait_for(bank, fixed.json()["job_id"])
                return refused, fixed
        finally:
            await cluster.stop()

    refused, fixed = run(scenario())
    assert refused.status_code == 422, refused.text
    assert fixed.status_code == 201, fixed.text
