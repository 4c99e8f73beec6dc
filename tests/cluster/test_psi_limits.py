"""Party A's caps on the PSI, through real HTTP between the three in-process services.

An honest party B registers the job with its set size, so a set larger than A
allows is refused when B submits the job. A party B that bends the rules (it
leaves the size out of the registration, declares another size in the PSI, or
declares one size and sends more) gets nothing signed: the job fails at every
party with a reason naming the limit, and A's audit log keeps the refusal. In
the demo data A (the shop) has 593 IDs and B (the bank) 527.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psi.messages import DeclaredSize
from tests.helpers import demo_job, start_cluster, wait_for
from vfl.service import psi_roles

SHOP_IDS, BANK_IDS = 593, 527


def audit_log(workdir: Path, service: str, job_id: str) -> str:
    path = workdir / "data" / service / "jobs" / job_id / "audit.log"
    return path.read_text() if path.exists() else ""


def registers_no_size(monkeypatch) -> None:
    """Make party B leave its set size out of the job's registration (a changed B)."""
    from vfl.service.stages import submit

    stock = submit.Registration
    monkeypatch.setattr(submit, "Registration", lambda **fields: stock(**{**fields, "psi_ids": None}))


def keep_key_holders(monkeypatch) -> list[psi_roles.AuditedKeyHolder]:
    """Record the key holders party A makes, to count what they signed."""
    made: list[psi_roles.AuditedKeyHolder] = []
    original = psi_roles._key_holder

    def make(*args: Any) -> psi_roles.AuditedKeyHolder:
        made.append(original(*args))
        return made[-1]

    monkeypatch.setattr(psi_roles, "_key_holder", make)
    return made


async def run_job(workdir: Path, limits: dict[str, dict[str, Any]], job_id: str) -> dict[str, dict[str, Any]]:
    """Submit the demo job at B; its status at each party once it has ended at B."""
    cluster = await start_cluster(workdir, limits=limits, **demo_job(epochs=1))
    try:
        async with cluster.client() as bank, cluster.client("party-a") as shop:
            submitted = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": job_id})
            assert submitted.status_code == 201, submitted.text
            status_b = await wait_for(bank, job_id)
            status_a = await wait_for(shop, job_id)
        return {"A": status_a, "B": status_b}
    finally:
        await cluster.stop()


@pytest.mark.parametrize(
    "limits, named",
    [({"max_psi_ids": 500}, "at most 500 (limits.max_psi_ids)"),
     ({"max_psi_ratio": 0.8}, "more than 0.8 × party A's 593 (limits.max_psi_ratio)")],
    ids=["max_psi_ids", "max_psi_ratio"],
)
def test_a_bank_set_above_party_a_caps_is_refused_at_submit(tmp_path, run, limits, named):
    async def scenario():
        cluster = await start_cluster(tmp_path, limits={"party-a": limits}, **demo_job(epochs=1))
        try:
            async with cluster.client() as bank:
                answer = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "too-big"})
            return answer, {name: [r.job_id for r in node.jobs.records()] for name, node in cluster.nodes.items()}
        finally:
            await cluster.stop()

    answer, records = run(scenario())

    assert answer.status_code == 422
    assert f"party B declares {BANK_IDS} IDs" in answer.json()["detail"] and named in answer.json()["detail"]
    assert records == {"party-a": [], "party-b": [], "arbiter": []}


@pytest.mark.parametrize(
    "limits, named",
    [({"max_psi_ids": 500}, "at most 500 (limits.max_psi_ids)"),
     ({"max_psi_ratio": 0.8}, "more than 0.8 × party A's 593 (limits.max_psi_ratio)")],
    ids=["max_psi_ids", "max_psi_ratio"],
)
def test_a_bank_that_hides_its_size_at_registration_fails_the_job_and_is_audited(
    tmp_path, run, monkeypatch, limits, named
):
    registers_no_size(monkeypatch)
    holders = keep_key_holders(monkeypatch)

    status = run(run_job(tmp_path, {"party-a": limits}, "too-big"))

    audit = audit_log(tmp_path, "party-a", "too-big")
    for party in ("A", "B"):
        assert status[party]["state"] == "failed"
        assert f"party B declares {BANK_IDS} IDs" in status[party]["error"] and named in status[party]["error"]
        assert "raise" in status[party]["error"]  # the fix is named
    assert status["B"]["alignment"] is None
    assert "refused psi_declared_size" in audit and "LimitExceeded" in audit and named in audit
    assert holders[0].declared_size_b is None and holders[0].size_b == 0  # refused before anything was signed


class UnderDeclaringRequester(psi_roles.AuditedRequester):
    """A party B that declares 10 IDs, then blinds its whole set."""

    def declaration(self) -> DeclaredSize:
        return DeclaredSize(job_id=self.job_id, size_b=10)


def test_a_bank_that_declares_another_size_than_it_registered_gets_nothing_signed(tmp_path, run, monkeypatch):
    holders = keep_key_holders(monkeypatch)
    monkeypatch.setattr(psi_roles, "AuditedRequester", UnderDeclaringRequester)

    status = run(run_job(tmp_path, {}, "two-sizes"))

    for party in ("A", "B"):
        assert status[party]["state"] == "failed"
        assert f"declares 10 IDs for the PSI, but registered the job with {BANK_IDS}" in status[party]["error"]
    assert holders[0].declared_size_b is None and holders[0].size_b == 0


def test_a_bank_that_sends_more_than_it_declared_gets_nothing_signed(tmp_path, run, monkeypatch):
    registers_no_size(monkeypatch)
    holders = keep_key_holders(monkeypatch)
    monkeypatch.setattr(psi_roles, "AuditedRequester", UnderDeclaringRequester)

    status = run(run_job(tmp_path, {}, "lying-bank"))

    audit = audit_log(tmp_path, "party-a", "lying-bank")
    for party in ("A", "B"):
        assert status[party]["state"] == "failed"
        assert "Refusing to sign more than party B declared" in status[party]["error"]
    assert "refused psi_blinded_chunk" in audit and f"has {BANK_IDS} values; party B declared 10 IDs" in audit
    assert holders[0].declared_size_b == 10 and holders[0].size_b == 0


def test_an_honest_job_within_the_caps_succeeds_and_both_sides_see_the_declared_sizes(tmp_path, run):
    limits = {"party-a": {"max_psi_ids": BANK_IDS, "max_psi_ratio": 0.9}, "party-b": {"max_psi_ids": SHOP_IDS}}

    status = run(run_job(tmp_path, limits, "within-caps"))

    for party in ("A", "B"):
        summary = status[party]["alignment"]
        assert summary["declared_size_a"] == SHOP_IDS and summary["declared_size_b"] == BANK_IDS
        assert 0 < summary["intersection"] <= BANK_IDS
    assert "refused" not in audit_log(tmp_path, "party-a", "within-caps")  # (A also logs what it scores)
    assert status["B"]["state"] == "succeeded", status["B"]["error"]  # and training ran on the aligned rows


def test_the_bank_caps_what_the_shop_declares_too(tmp_path, run):
    status = run(run_job(tmp_path, {"party-b": {"max_psi_ids": 500}}, "shop-too-big"))

    audit = audit_log(tmp_path, "party-b", "shop-too-big")
    for party in ("A", "B"):
        assert status[party]["state"] == "failed"
        assert f"party A declares {SHOP_IDS} IDs" in status[party]["error"]
        assert "at most 500 (limits.max_psi_ids)" in status[party]["error"]
    assert "refused psi_public_key" in audit and "LimitExceeded" in audit
    assert status["B"]["alignment"] is None
