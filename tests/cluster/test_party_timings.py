"""Per-party timings on party B's job answer, and the PSI's inner progress while a job aligns.

In-process services (1024-bit keys, the 900-row demo data). Party B asks each feature party and the
arbiter for its durations per stage (``GET /v1/peer/jobs/{id}/timings``) once the job has run its stages;
a peer that does not answer is listed as not available and the job still succeeds.
"""

from __future__ import annotations

import asyncio

import pytest

from psi import ec
from tests.helpers import demo_job, start_cluster, submit_until_epoch, wait_for
from vfl.errors import ConfigError, PeerRefused
from vfl.service.stages.pipeline import LABEL_PARTY, Step


def _by_role(status: dict) -> dict[str, dict]:
    return {entry["role"]: entry for entry in status["party_timings"]}


def test_party_b_shows_each_partys_stage_durations_after_a_job(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=3))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                job = {**cluster.setup["job"], "job_id": "timed-job"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, job["job_id"])
                shop_status = (await shop.get(f"/v1/jobs/{job['job_id']}")).json()
                listed = (await bank.get("/v1/jobs")).json()["jobs"]
                computed = {name: node.jobs.get(job["job_id"]).record.timings.get("training_compute")
                            for name, node in cluster.nodes.items()}
                try:  # party A asks the arbiter for its timings: refused
                    stranger: object = await cluster.nodes["party-a"].client.request(
                        "arbiter", "GET", f"/v1/peer/jobs/{job['job_id']}/timings")
                except PeerRefused as exc:
                    stranger = exc
            return status, shop_status, listed, stranger, computed
        finally:
            await cluster.stop()

    status, shop_status, listed, stranger, computed = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    timings = _by_role(status)
    assert set(timings) == {"A", "B", "C"}
    assert timings["A"]["party"] == "party-a" and timings["C"]["party"] == "arbiter"
    for role, entry in timings.items():
        assert entry["available"] is True, entry
        assert entry["stages"]["training"] > 0, (role, entry)
        training = entry["training"]
        assert 0 <= training["compute"] <= training["seconds"], (role, training)
        assert abs(training["compute"] + training["waiting"] - training["seconds"]) <= 0.11, (role, training)
        # durations only, to 0.1 s
        assert all(round(v, 1) == v for v in entry["stages"].values())
    # Each party measured its roles' time (unrounded in its own record: the arbiter's may round to 0.0).
    assert all(seconds is not None and seconds > 0 for seconds in computed.values()), computed
    assert "psi" in timings["A"]["stages"] and "psi" in timings["B"]["stages"]
    assert "evaluating" in timings["B"]["stages"] and "ledger" in timings["B"]["stages"]
    assert "peer_timings" not in status  # shown once, in party_timings
    # A feature party's own answer lists itself only.
    assert [e["party"] for e in shop_status["party_timings"]] == ["party-a"]
    assert any(j["job_id"] == "timed-job" and len(j["party_timings"]) == 3 for j in listed)
    # Only the job's label party may ask for a party's timings.
    assert isinstance(stranger, PeerRefused) and "not party B" in str(stranger), stranger


def test_a_peer_that_does_not_answer_is_listed_as_not_available(tmp_path, run):
    async def scenario():
        holder: dict = {}

        async def arbiter_goes_away(ctx) -> None:  # after the ledger: the arbiter is needed no more
            holder["cluster"].router.apps.pop("arbiter.test")

        steps = (*LABEL_PARTY, Step(None, arbiter_goes_away))
        cluster = holder["cluster"] = await start_cluster(tmp_path, bank_steps=steps, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "half-timed"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                return await wait_for(bank, job["job_id"])
        finally:
            await cluster.stop()

    status = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    timings = _by_role(status)
    assert timings["A"]["available"] is True and timings["B"]["available"] is True
    missing = timings["C"]
    assert missing["available"] is False and missing["party"] == "arbiter"
    assert missing["reason"].startswith("not available: ") and "arbiter" in missing["reason"]
    assert "stages" not in missing or missing["stages"] is None


async def _poll_alignment(cluster, job: dict) -> tuple[list[dict], list[dict], dict]:
    """Submit ``job`` and keep every PSI progress B and A show while it aligns; then the final status."""
    seen_b: list[dict] = []
    seen_a: list[dict] = []
    async with cluster.client() as bank, cluster.client("party-a") as shop:
        assert (await bank.post("/v1/jobs", json=job)).status_code == 201
        while True:
            status = (await bank.get(f"/v1/jobs/{job['job_id']}")).json()
            if status["state"] not in ("pending", "aligning"):
                break
            if status["progress"].get("psi"):
                seen_b.append(status["progress"])
            shop_progress = (await shop.get(f"/v1/jobs/{job['job_id']}")).json()["progress"]
            if shop_progress.get("psi"):
                seen_a.append(shop_progress)
            await asyncio.sleep(0.005)
        return seen_b, seen_a, await wait_for(bank, job["job_id"])


@pytest.mark.parametrize("protocol", ["rsa", "ecdh"])
def test_the_progress_advances_bucket_by_bucket_during_the_alignment(tmp_path, run, protocol):
    if protocol == "ecdh":
        try:
            ec._sodium()
        except ConfigError as exc:
            pytest.skip(f"no usable libsodium: {exc}")

    async def scenario():
        # the larger set in buckets of at most 100 IDs: several buckets
        cluster = await start_cluster(tmp_path, extra={"party-a": "[psi]\nbucket_ids = 100\n"},
                                      **demo_job(epochs=1))
        try:
            job = {**cluster.setup["job"], "job_id": f"bucketed-{protocol}",
                   "psi": {"protocol": protocol, "key_bits": 1024}}
            return await _poll_alignment(cluster, job)
        finally:
            await cluster.stop()

    seen_b, seen_a, final = run(scenario())

    assert final["state"] == "succeeded", final["error"]
    assert seen_b, "party B's status never showed the PSI's progress"
    entries = [p["psi"][0] for p in seen_b]
    assert {e["peer"] for e in entries} == {"party-a"}
    counted = [e for e in entries if e["buckets"]]
    buckets = counted[0]["buckets"] if counted else 0
    assert buckets > 2 and all(e["buckets"] == buckets for e in counted), counted
    done = [e["buckets_done"] for e in counted]
    steps = {(e["buckets_done"], e["chunks_done"]) for e in counted}
    assert done == sorted(done) and len(steps) >= 2, counted  # it moves, and its buckets never go back
    assert all(0 <= e["chunks_done"] <= e["chunks"] for e in counted)
    assert any(p["text"].startswith("PSI with party-a: bucket ") and f" of {buckets}" in p["text"] for p in seen_b)
    if seen_a:  # party A shows its side too (its PSI may be over before a poll reaches it)
        assert {p["psi"][0]["peer"] for p in seen_a} == {"party-b"}
    assert "psi" not in final["progress"]


def test_a_cancelled_job_still_shows_each_partys_timings(tmp_path, run):
    # Arrange: a long job, cancelled during training (a failure takes the same path)
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=400, tol=0))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, cluster.setup["job"], 2)
                assert (await bank.post(f"/v1/jobs/{job['job_id']}/cancel")).status_code == 200
                for _ in range(100):  # the peers' timings are asked in the background, after they were told
                    status = (await bank.get(f"/v1/jobs/{job['job_id']}")).json()
                    if all(entry["available"] for entry in status["party_timings"]):
                        break
                    await asyncio.sleep(0.1)
                return status
        finally:
            await cluster.stop()

    # Act
    status = run(scenario())

    # Assert: where did the time go, at every party, although the job did not succeed
    assert status["state"] == "cancelled"
    timings = _by_role(status)
    assert set(timings) == {"A", "B", "C"}
    for role, entry in timings.items():
        assert entry["available"] is True, (role, entry)
        assert entry["stages"].get("training", 0) > 0, (role, entry)
