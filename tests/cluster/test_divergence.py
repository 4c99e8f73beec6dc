"""A diverging job fails at every service with party B's reason, as it does in `vfl simulate` (issue 15)."""

from __future__ import annotations

from tests.helpers import demo_job, start_cluster, wait_for


def test_a_diverging_job_fails_everywhere_with_the_reason(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=8, optimizer="sgd", learning_rate=100))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, cluster.client("arbiter") as arb:
                job = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()
                status = await wait_for(bank, job["job_id"])
                others = []
                for client in (shop, arb):
                    others.append(await wait_for(client, job["job_id"], timeout=30))
                return status, others
        finally:
            await cluster.stop()

    status, others = run(scenario())

    assert status["state"] == "failed", status
    assert "DivergedError" in status["error"] and "training diverged: the training loss rose from" in status["error"]
    assert "lower the learning rate (now 100, optimizer sgd)" in status["error"]
    assert status["epoch"] < 8  # it stopped at the epoch that blew up
    # Party A and the arbiter end failed too (on B's notice), never "succeeded" with a model.
    assert [o["state"] for o in others] == ["failed", "failed"]
    assert all("training diverged" in o["error"] for o in others)
