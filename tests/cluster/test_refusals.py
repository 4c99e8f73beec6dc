"""Bad submissions are refused with a 4xx and a readable message, leaving nothing behind."""

from __future__ import annotations

import copy

import pytest

from tests.helpers import demo_job, start_cluster


def broken(job: dict, path: str, value) -> dict:
    job = copy.deepcopy(job)
    *parents, leaf = path.split(".")
    target = job
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return job


CASES = [
    ("party_b.dataset", "nope", 422, "no dataset named 'nope'"),
    ("party_a.dataset", "nope", 422, "no dataset named 'nope'"),
    ("party_a.peer", "stranger", 422, "not a configured party A peer"),
    ("arbiter.peer", "party-a", 422, "not a configured arbiter peer"),
    ("training.model", "poisson", 422, "training.model"),
    ("training.epochs", 0, 422, "training.epochs"),
    ("training.surprise", 1, 422, "surprise"),
    ("party_a", KeyError, 422, "party_a"),
    ("job_id", "bad id with spaces", 422, "job_id"),
    ("training.key_bits", 512, 422, "key_bits"),
]


@pytest.mark.parametrize("path, value, status, message", CASES, ids=[c[0] + "=" + str(c[1]) for c in CASES])
def test_bad_job_specs_are_refused_and_leave_nothing(tmp_path, run, path, value, status, message):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                answer = await bank.post("/v1/jobs", json=broken(cluster.setup["job"], path, value))
                listed = {name: (await c.get("/v1/jobs")).json()["jobs"]
                          for name in ("party-a", "party-b", "arbiter")
                          for c in [cluster.client(name)]}
            return answer, listed, {n: list((tmp_path / "data" / n / "jobs").glob("*")) for n in listed}
        finally:
            await cluster.stop()

    answer, listed, folders = run(scenario())

    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert listed == {"party-a": [], "party-b": [], "arbiter": []}
    assert folders == {"party-a": [], "party-b": [], "arbiter": []}


def test_wrong_or_missing_token_is_refused(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client(token="x" * 24) as wrong, cluster.client() as right:
                bad = await wrong.post("/v1/jobs", json=cluster.setup["job"])
                del right.headers["Authorization"]
                missing = await right.get("/v1/jobs")
                health = await right.get("/v1/health")
            return bad, missing, health
        finally:
            await cluster.stop()

    bad, missing, health = run(scenario())

    assert bad.status_code == 401 and "token" in bad.json()["detail"]
    assert missing.status_code == 401
    assert health.status_code == 200  # health needs no token


def test_unknown_jobs_and_malformed_json(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                return (
                    await bank.get("/v1/jobs/nope"),
                    await bank.post("/v1/jobs/nope/cancel"),
                    await bank.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
                    await bank.post("/v1/jobs/nope/predict", json={"ids": ["a"]}),
                )
        finally:
            await cluster.stop()

    status, cancel, garbage, predict = run(scenario())

    assert status.status_code == cancel.status_code == predict.status_code == 404
    assert "no job 'nope'" in status.json()["detail"]
    assert garbage.status_code == 422


def test_a_duplicate_job_id_is_refused(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "twice"}
                first = await bank.post("/v1/jobs", json=job)
                second = await bank.post("/v1/jobs", json=job)
                return first, second
        finally:
            await cluster.stop()

    first, second = run(scenario())

    assert first.status_code == 201
    assert second.status_code == 409 and "already exists" in second.json()["detail"]
