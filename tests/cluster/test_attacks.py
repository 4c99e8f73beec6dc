"""The live services against a partner who bends the rules with its own legitimate identity.

Each attack uses only what a party really has: its own place in the job, its
peer identity (here the header of the insecure test set-up; over mTLS its
certificate) and a few changed lines in its own copy of the code.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.helpers import URLS, demo_job, open_cluster, start_cluster, wait_for
from vfl.service.peers import PARTY_HEADER
from vfl.service.config import load_config
from vfl.service import training_roles
from vfl.service.node import Node


def as_peer(cluster, target: str, caller: str) -> httpx.AsyncClient:
    """A client that calls ``target``'s peer endpoints as party ``caller``."""
    return httpx.AsyncClient(transport=cluster.router, base_url=URLS[target], headers={PARTY_HEADER: caller},
                             timeout=60)


def shared(workdir) -> list[str]:
    """Customers both the shop and the bank hold."""
    return sorted(set(dataset_ids(workdir, "party-a")) & set(dataset_ids(workdir, "party-b")))


def dataset_ids(workdir, service: str) -> list[str]:
    config = load_config(workdir / f"{service}.toml")
    (dataset,) = config.datasets.values()
    return pd.read_csv(dataset.path, dtype=str)[dataset.id_column].tolist()


def audit_lines(cluster, service: str, job_id: str) -> list[str]:
    file = cluster.nodes[service].store.job_dir(job_id) / "audit.log"
    return file.read_text().splitlines() if file.is_file() else []


async def cluster_with(tmp_path, service: str, node_class: type[Node], limits=None, **options):
    """Three in-process services where ``service`` runs a changed ``node_class``."""
    from parties.app import create_app

    cluster = await start_cluster(tmp_path, limits=limits, **options)
    honest = cluster.nodes[service]
    deviant = node_class(honest.config, transport=cluster.router)
    await honest.shutdown()
    cluster.router.apps[f"{service}.test"] = create_app(deviant.config, node=deviant)
    cluster.nodes[service] = deviant
    await deviant.startup()
    return cluster


async def job_against(tmp_path, service: str, node_class: type[Node], job_id: str, limits=None, **training):
    """Run one job with a deviating ``service``: B's status, the arbiter's audit log and its record."""
    cluster = await cluster_with(tmp_path, service, node_class, limits=limits, **demo_job(**training))
    try:
        async with cluster.client() as bank:
            submitted = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": job_id})
            assert submitted.status_code == 201, submitted.text
            status = await wait_for(bank, job_id, timeout=120)
        arbiter = cluster.nodes["arbiter"].job(job_id).record
        for _ in range(100):  # B tells its peers right after it records the failure
            if arbiter.finished:
                break
            await asyncio.sleep(0.05)
        return status, audit_lines(cluster, "arbiter", job_id), arbiter
    finally:
        await cluster.stop()


def test_b_cannot_use_party_as_scores_to_list_its_customers(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=3), limits={"party-a": {"score_requests_per_minute": 4}})
        try:
            async with cluster.client() as bank, as_peer(cluster, "party-a", "party-b") as b_as_peer:
                job = {**cluster.setup["job"], "job_id": "oracle"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, "oracle")
                aligned = cluster.nodes["party-a"].store.load_alignment("oracle")
                outside = sorted(set(dataset_ids(tmp_path, "party-a")) - set(aligned))[:5]
                asked = aligned[:3] + outside + ["NOBODY-1", "NOBODY-2"]
                answer = await b_as_peer.post("/v1/peer/jobs/oracle/scores", json={"ids": asked})
                answers = [await b_as_peer.post("/v1/peer/jobs/oracle/scores", json={"ids": aligned[:1]})
                           for _ in range(4)]
            return status, asked, outside, answer, answers, audit_lines(cluster, "party-a", "oracle")
        finally:
            await cluster.stop()

    status, asked, outside, answer, answers, audit = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    assert outside, "the demo data must hold customers of A outside the intersection"
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # A customer of A outside the intersection looks exactly like an ID A never had.
    assert body["status"] == ["ok"] * 3 + ["not available"] * (len(asked) - 3)
    assert body["u_a"][3:] == [None] * (len(asked) - 3) and all(isinstance(v, float) for v in body["u_a"][:3])
    assert "shop.csv" not in answer.text and str(tmp_path) not in answer.text
    # The evaluation request, the probe and three more fit the rate; the next is refused.
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert "score_requests_per_minute" in answers[-1].json()["detail"]
    assert sum("scored" in line for line in audit) == 4 and sum("refused to score" in line for line in audit) == 2
    assert any(f"scored 3 IDs for party-b ({len(asked) - 3} not available)" in line for line in audit)


def test_a_party_cannot_force_resumes(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=12, tol=0, batch_size=150, optimizer="adam"),
                                      limits={"party-b": {"max_resumes": 1}})
        try:
            async with cluster.client() as bank, as_peer(cluster, "party-b", "party-a") as a_as_peer:
                job = {**cluster.setup["job"], "job_id": "forced"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                while (await bank.get("/v1/jobs/forced")).json()["epoch"] < 2:
                    await asyncio.sleep(0.05)
                generation = cluster.nodes["party-b"].job("forced").record.generation
                claims = []
                for claimed in (generation, generation + 1, generation + 50):
                    claims.append(await a_as_peer.post(
                        "/v1/peer/jobs/forced/interrupted", json={"reason": "I restarted", "generation": claimed}))
                    # Until a resume the claim started has asked every party: a claim that arrives meanwhile
                    # joins that resume (200) instead of meeting the budget (a fixed 0.3 s was too short on a
                    # busy machine).
                    for _ in range(1200):
                        if not cluster.nodes["party-b"].job("forced").job.coordinating:
                            break
                        await asyncio.sleep(0.05)
                status = await wait_for(bank, "forced")
            return claims, status
        finally:
            await cluster.stop()

    claims, status = run(scenario())

    no_restart, first, over_budget = claims
    assert no_restart.status_code == 409 and "this is no restart" in no_restart.json()["detail"]
    assert first.status_code == 200
    assert over_budget.status_code == 409 and "limits.max_resumes" in over_budget.json()["detail"]
    # The one resume that was allowed recomputed bit-identical values: the arbiter served them again.
    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] == 1


def test_non_finite_numbers_are_refused_and_leave_nothing_behind(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "inf"}
                text = json.dumps(job).replace('"epochs": 8', '"epochs": 8, "l2": 1e999')
                answer = await bank.post("/v1/jobs", content=text, headers={"Content-Type": "application/json"})
                nan = await bank.post("/v1/jobs", content=text.replace("1e999", "NaN"),
                                      headers={"Content-Type": "application/json"})
                listed = {name: [r.job_id for r in node.jobs.records()] for name, node in cluster.nodes.items()}
            return answer, nan, listed
        finally:
            await cluster.stop()

    answer, nan, listed = run(scenario())

    assert '"l2": 1e999' not in json.dumps({"l2": 1.0})  # the probe really carried an overflowing float
    assert answer.status_code == 422 and "training.l2" in answer.json()["detail"]
    assert nan.status_code == 422
    assert listed == {"party-a": [], "party-b": [], "arbiter": []}


def test_a_submit_that_fails_at_the_arbiter_is_withdrawn_at_party_a(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(), limits={"party-b": {"peer_timeout": 1.0}})
        try:
            del cluster.router.apps["arbiter.test"]  # C is down while B registers the job
            async with cluster.client() as bank:
                answer = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "half"})
            return answer, {name: [r.job_id for r in node.jobs.records()] for name, node in cluster.nodes.items()}, cluster
        finally:
            await cluster.stop()

    answer, records, cluster = run(scenario())

    assert answer.status_code == 502 and "arbiter" in answer.json()["detail"]
    assert records["party-a"] == [] and records["party-b"] == []
    assert not cluster.nodes["party-a"].store.exists("half") and not cluster.nodes["party-b"].store.exists("half")


class LyingB(Node):
    """Party B that tells the arbiter a longer gradient length for A than A stated.

    With a long enough length C would decrypt a masked [[u_A]] sent in A's name.
    A length that could hold a batch or the validation rows is refused when C
    starts; a shorter lie is caught by A's own key request, which carries the
    lengths A was told.
    """

    claimed_a_length = 150

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        honest_call = self.client.call_json

        async def tamper(peer_id, method, path, body=None, **options):
            if path == "/v1/peer/jobs" and self.config.peers[peer_id].role == "C":
                body = {**body, "gradient_lengths": {**body["gradient_lengths"], "A": self.claimed_a_length}}
            return await honest_call(peer_id, method, path, body, **options)

        self.client.call_json = tamper


# A slightly longer lie is caught by whichever key request reaches C first: A's own length
# differs from the one B gave C, or B's copy of the lengths differs from C's.
@pytest.mark.parametrize("claimed, refusal", [(150, "validation split has only"),
                                              (9, "the job fixes 9|told the two different jobs")],
                         ids=["batch-sized", "slightly-longer"])
def test_a_b_that_lies_to_the_arbiter_about_as_length_fails_the_job(tmp_path, run, claimed, refusal):
    LyingB.claimed_a_length = claimed

    status, audit, arbiter_record = run(job_against(tmp_path, "party-b", LyingB, "lie", batch_size=400))

    assert status["state"] == "failed" and arbiter_record.state == "failed"
    assert re.search(refusal, status["error"])
    if claimed == 9:  # refused at a key request: the arbiter's audit log has it
        assert any("refused key_request" in line and re.search(refusal, line) for line in audit)


def thieving_party_a(monkeypatch, role_class: type) -> list:
    """Party A's service runs a changed feature-party role; returns the roles it makes.

    Party A is the only feature party of these jobs, so only its service builds this role.
    """
    made: list = []

    class Recorded(role_class):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training_roles, "FeatureParty", Recorded)
    return made




def test_a_party_a_that_sends_the_residual_as_its_gradient_is_refused_and_audited(tmp_path, run, monkeypatch):
    from tests.protocol.test_deviating_parties import ResidualThiefA
    from vfl.protocol.messages import EncryptedResidual

    class WholeResidualA(ResidualThiefA):
        """Sends all of [[d]]: the vector that would give away every label of the batch."""

        def process(self, message):
            if isinstance(message, EncryptedResidual):
                self.weights = np.zeros(self.schedule.batch_length(message.batch))  # k = the batch's rows
                try:
                    return super().process(message)
                finally:
                    self.weights = np.zeros(self.design.shape[1])
            return super().process(message)

    roles = thieving_party_a(monkeypatch, WholeResidualA)

    status, audit, arbiter_record = run(job_against(tmp_path, "party-a", Node, "whole", batch_size=200, tol=0))

    assert status["state"] == "failed" and arbiter_record.state == "failed"
    assert roles and roles[0].stolen == {}
    assert any("refused masked_gradient from party-a" in line and "registered a gradient of length" in line
               for line in audit)


def test_a_party_a_that_steals_k_residuals_gets_k_and_the_job_fails_instead_of_hanging(tmp_path, run, monkeypatch):
    from tests.protocol.test_deviating_parties import ResidualThiefA

    class QuietThiefA(ResidualThiefA):
        """Steals k residuals of the first batch, then simply stops taking part."""

        def process(self, message):
            out = super().process(message)
            self.finished = False  # it does not announce anything: it goes quiet
            return out

    roles = thieving_party_a(monkeypatch, QuietThiefA)
    fast = {"heartbeat": 0.3, "idle_timeout": 2.0}

    limits = {"party-b": fast, "arbiter": fast, "party-a": fast}

    status, _, _ = run(job_against(tmp_path, "party-a", Node, "quiet", limits, batch_size=200, tol=0))

    thief = roles[0]
    assert len(thief.stolen) == len(thief.weights)  # the documented bound: k_A residuals, once
    assert status["state"] == "failed" and "limits.idle_timeout" in status["error"]


def test_a_bank_training_many_models_with_a_shop_cannot_solve_for_the_shops_features(tmp_path, run):
    """Issue 27, class 1: each model adds one direction of A's data to what B sees; A caps their rank."""

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        config = tmp_path / "party-a.toml"
        config.write_text(config.read_text() + "\n[scoring]\nscore_directions = 2\n")
        await cluster.stop()
        cluster = await open_cluster(tmp_path, cluster.setup)
        try:
            async with cluster.client() as bank:
                statuses = []
                for n, training in enumerate(({"epochs": 2}, {"epochs": 3, "l2": 0.5}), start=1):
                    job = {**cluster.setup["job"], "job_id": f"model-{n}",
                           "training": {**cluster.setup["job"]["training"], **training}}
                    assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                    statuses.append(await wait_for(bank, f"model-{n}"))
                third = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "model-3",
                                                          "training": {**cluster.setup["job"]["training"],
                                                                       "epochs": 4, "l2": 2.0}})
                again = await bank.post("/v1/jobs/model-1/predict", json={"ids": shared(tmp_path)[:3]})
            return statuses, third, again
        finally:
            await cluster.stop()

    statuses, third, again = run(scenario())

    assert [s["state"] for s in statuses] == ["succeeded", "succeeded"], [s["error"] for s in statuses]
    assert third.status_code == 422 and "score_directions" in third.json()["detail"], third.text
    assert "combinations of dataset 'behaviour'" in third.json()["detail"]
    assert again.status_code == 200  # a model already released keeps scoring


def test_concurrent_score_requests_cannot_overrun_the_partners_id_budget(tmp_path, run):
    """The budget is charged when a request is admitted: 16 requests at once, room for 2, get 2 answers."""

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                assert (await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "budget"})).status_code == 201
                assert (await wait_for(bank, "budget"))["state"] == "succeeded"
            used = cluster.nodes["party-a"].releases.ledger("party-b", "behaviour")["scored_ids"]
            config = tmp_path / "party-a.toml"
            config.write_text(config.read_text().replace("[limits]\n", f"[limits]\nmax_scored_ids = {used + 10}\n", 1))
            await cluster.stop()
            cluster2 = await open_cluster(tmp_path, cluster.setup)
            try:
                ids = cluster2.nodes["party-a"].store.load_alignment("budget")[:5]
                async with as_peer(cluster2, "party-a", "party-b") as b_as_peer:
                    answers = await asyncio.gather(*(b_as_peer.post("/v1/peer/jobs/budget/scores", json={"ids": ids})
                                                     for _ in range(16)))
            finally:
                await cluster2.stop()
            return answers, used
        finally:
            await cluster.stop()

    answers, used = run(scenario())

    codes = [a.status_code for a in answers]
    assert codes.count(200) == 2 and codes.count(422) == 14, codes
    refusal = next(a for a in answers if a.status_code == 422).json()["detail"]
    assert "over all its jobs" in refusal and "limits.max_scored_ids" in refusal


def test_a_bank_cannot_renew_budgets_by_reusing_an_alignment_without_the_shops_consent(tmp_path, run):
    """reuse_alignment needs the feature party's consent ([scoring] reuse_alignment); by default only for the
    coalition trainings of a job it took part in."""

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank, as_peer(cluster, "party-a", "party-b") as b_as_peer:
                assert (await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "first"})).status_code == 201
                assert (await wait_for(bank, "first"))["state"] == "succeeded"
                minted = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "minted",
                                                           "reuse_alignment": "first"})
                registration = {"job_id": "minted-2", "parties": {"A": "party-a", "B": "party-b", "C": "arbiter"},
                                "dataset": "behaviour", "training": cluster.setup["job"]["training"],
                                "psi": {"key_bits": 1024}, "gradient_lengths": {"B": 7},
                                "reuse_alignment": "first", "measures": "someone-else"}
                claimed = await b_as_peer.post("/v1/peer/jobs", json=registration)
            return minted, claimed
        finally:
            await cluster.stop()

    minted, claimed = run(scenario())

    assert minted.status_code == 422 and "reuse_alignment = 'contributions'" in minted.json()["detail"], minted.text
    assert claimed.status_code == 403 and "coalition trainings" in claimed.json()["detail"]
