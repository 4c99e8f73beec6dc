"""Party A reuses its own PSI signatures across jobs only when configured (in process; the kill-mid-PSI tests
are in tests/system/test_psi_resume.py)."""

from __future__ import annotations


def test_party_a_reuses_its_own_signatures_across_jobs_only_when_configured(tmp_path, run):
    from tests.helpers import demo_job, start_cluster, wait_for

    async def scenario():
        cluster = await start_cluster(tmp_path, extra={"party-a": "[psi]\nreuse_own_signatures = true\n"},
                                      **demo_job(epochs=1))
        try:
            summaries = []
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                for _ in range(2):
                    job = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()
                    status = await wait_for(bank, job["job_id"])
                    assert status["state"] == "succeeded", status["error"]
                    summaries.append((await shop.get(f"/v1/jobs/{job['job_id']}")).json()["alignment"])
            return summaries
        finally:
            await cluster.stop()

    first, second = run(scenario())

    assert (first["reused_own_signatures"], second["reused_own_signatures"]) == (False, True)
    assert first["intersection"] == second["intersection"]
    assert any((tmp_path / "data").rglob("psi-reuse/*/*/key.json"))
