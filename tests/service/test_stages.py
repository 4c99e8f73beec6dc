"""The stages of a job against one real service whose peers are fakes: submit, accept, the pipeline, stop."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from vfl.errors import ConfigError
from vfl.service.lifecycle import Stage
from vfl.service.stages.pipeline import LABEL_PARTY, Step

A_REGISTERS = {("POST", "/v1/peer/jobs"): {"job_id": "j", "state": "aligning", "stage": "psi",
                                           "gradient_lengths": {"A": 4, "B": 3}}}


async def idle(ctx) -> None:
    await asyncio.Event().wait()  # the job stays at its first stage: these tests look at what came before


#: Party B's pipeline reduced to one step that never ends.
IDLE = (Step(Stage.PSI, idle),)


def spec(demo_files, **changes):
    return {**demo_files["job"], "job_id": "j", **changes}


def test_a_submit_the_arbiter_refuses_leaves_nothing_anywhere(service, run, demo_files):
    bank = service("party-b", A_REGISTERS)
    bank.peers.script[("POST", "/v1/peer/jobs")] = lambda request: (
        httpx.Response(422, json={"detail": "psi.key_bits=1024 is below this service's minimum", "error": "ConfigError"})
        if request.url.host == "arbiter.test" else httpx.Response(200, json=A_REGISTERS[("POST", "/v1/peer/jobs")]))
    bank.peers.script[("POST", "/v1/peer/jobs/j/forget")] = {"status": "forgotten"}

    async def submit():
        async with bank.orchestrator() as client:
            answer = await client.post("/v1/jobs", json=spec(demo_files))
            return answer, (await client.get("/v1/jobs")).json()

    answer, listed = run(submit())

    assert answer.status_code == 422 and answer.json()["error"] == "ConfigError"
    assert "job refused" in answer.json()["detail"] and "below this service's minimum" in answer.json()["detail"]
    assert bank.peers.paths("POST") == [("party-a", "/v1/peer/jobs"), ("arbiter", "/v1/peer/jobs"),
                                        ("party-a", "/v1/peer/jobs/j/forget"), ("arbiter", "/v1/peer/jobs/j/forget")]
    assert listed == {"jobs": []} and not bank.node.store.exists("j")


def test_the_arbiter_hears_every_gradient_length_and_the_feature_party_only_its_own_and_bs(service, run, demo_files):
    bank = service("party-b", {**A_REGISTERS, ("POST", "/v1/peer/jobs/j/fail"): {"status": "failed"}})
    bank.node.steps = IDLE  # only the registration is looked at

    async def submit():
        async with bank.orchestrator() as client:
            return await client.post("/v1/jobs", json=spec(demo_files))

    answer = run(submit())

    assert answer.status_code == 201, answer.text
    registrations = {peer: body for peer, method, path, body in bank.peers.calls if path == "/v1/peer/jobs"}
    assert set(registrations["party-a"]["gradient_lengths"]) == {"B"}  # A states its own count
    b_length = registrations["party-a"]["gradient_lengths"]["B"]  # B's features and its intercept
    assert registrations["arbiter"]["gradient_lengths"] == {"A": 4, "B": b_length}
    assert registrations["arbiter"]["dataset"] is None and registrations["party-a"]["dataset"] == "behaviour"


def test_each_feature_party_hears_only_its_own_prepare_entry_and_the_arbiter_none(service, run, demo_files):
    bank = service("party-b", {**A_REGISTERS, ("POST", "/v1/peer/jobs/j/fail"): {"status": "failed"}})
    bank.node.steps = IDLE
    prepare = {"party-a": {"impute": "median", "categorical": {"segment": "ordinal"}},
               "party-b": {"unseen_category": "refuse"}}

    async def submit():
        async with bank.orchestrator() as client:
            return await client.post("/v1/jobs", json=spec(demo_files, prepare=prepare))

    answer = run(submit())

    assert answer.status_code == 201, answer.text
    registrations = {peer: body for peer, method, path, body in bank.peers.calls if path == "/v1/peer/jobs"}
    assert registrations["party-a"]["prepare"] == {"impute": "median", "categorical": {"segment": "ordinal"}}
    assert "prepare" not in registrations["arbiter"]
    assert "refuse" not in json.dumps(registrations)  # party B's own entry stays at party B


def test_a_job_without_prepare_registers_without_the_key(service, run, demo_files):
    bank = service("party-b", {**A_REGISTERS, ("POST", "/v1/peer/jobs/j/fail"): {"status": "failed"}})
    bank.node.steps = IDLE

    async def submit():
        async with bank.orchestrator() as client:
            return await client.post("/v1/jobs", json=spec(demo_files))

    assert run(submit()).status_code == 201
    registrations = [body for peer, method, path, body in bank.peers.calls if path == "/v1/peer/jobs"]
    assert registrations and all("prepare" not in body for body in registrations)  # older parties accept it


def test_an_error_in_any_step_fails_the_job_once_and_tells_every_peer(service, run, demo_files):
    async def broken(ctx):
        raise ConfigError("the step found something wrong")

    bank = service("party-b", {**A_REGISTERS, ("POST", "/v1/peer/jobs/j/fail"): {"status": "failed"}})
    bank.node.steps = (Step(Stage.PSI, broken), *LABEL_PARTY[2:])

    async def submit_and_wait():
        async with bank.orchestrator() as client:
            assert (await client.post("/v1/jobs", json=spec(demo_files))).status_code == 201
            for _ in range(200):
                status = (await client.get("/v1/jobs/j")).json()
                if status["state"] == "failed":
                    return status
                await asyncio.sleep(0.01)
            raise AssertionError(status)

    status = run(submit_and_wait())

    assert (status["state"], status["stage"]) == ("failed", "stopped")
    assert status["error"] == "ConfigError: the step found something wrong"
    told = [(peer, path) for peer, path in bank.peers.paths("POST") if path.endswith("/fail")]
    assert told == [("party-a", "/v1/peer/jobs/j/fail"), ("arbiter", "/v1/peer/jobs/j/fail")]
    notice = next(body for peer, method, path, body in bank.peers.calls if path.endswith("/fail"))
    assert notice["reason"].startswith("party B (party-b): ConfigError")


def test_a_cancelled_job_says_so_and_cannot_be_cancelled_or_resumed_again(service, run, demo_files):
    bank = service("party-b", {**A_REGISTERS, ("POST", "/v1/peer/jobs/j/cancel"): {"status": "cancelled"}})
    bank.node.steps = IDLE

    async def cancel_twice():
        async with bank.orchestrator() as client:
            await client.post("/v1/jobs", json=spec(demo_files))
            first = await client.post("/v1/jobs/j/cancel")
            return first, await client.post("/v1/jobs/j/cancel"), await client.post("/v1/jobs/j/resume")

    first, second, resumed = run(cancel_twice())

    assert first.status_code == 200 and (first.json()["state"], first.json()["stage"]) == ("cancelled", "stopped")
    assert second.status_code == 409 and "already cancelled" in second.json()["detail"]
    assert resumed.status_code == 409 and "nothing to resume" in resumed.json()["detail"]


@pytest.mark.parametrize("caller, registration, status, says", [
    ("arbiter", {}, 403, "only the job's party B may register it"),
    ("party-b", {"parties": {"A": "somebody-else", "B": "party-b", "C": "arbiter"}}, 422, "names this service as"),
    ("party-b", {"parties": {"A": "party-a", "B": "party-b", "C": "mallory"}}, 422, "is not a configured peer here"),
    ("party-b", {"psi": {"key_bits": 512}}, 422, "psi.key_bits"),
    ("party-b", {"gradient_lengths": {"B": 3, "A": 99}}, 422, "expects 99 features at party A"),
    ("party-b", {"psi_ids": 10_000_001}, 422, "limits.max_psi_ids"),
], ids=["not-from-b", "wrong-service", "unknown-arbiter", "small-key", "feature-count", "psi-size-cap"])
def test_a_feature_party_refuses_a_registration_that_does_not_fit_its_config(service, run, demo_files, caller,
                                                                              registration, status, says):
    shop = service("party-a")
    job = json.loads(json.dumps(demo_files["job"]))
    body = {"job_id": "j", "parties": {"A": "party-a", "B": "party-b", "C": "arbiter"}, "dataset": "behaviour",
            "training": job["training"], "psi": {"key_bits": 1024}, "psi_ids": 80, "gradient_lengths": {"B": 3}}
    body.update(registration)

    async def register():
        async with shop.peer(caller) as client:
            return await client.post("/v1/peer/jobs", json=body)

    answer = run(register())

    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert "j" not in shop.node.jobs and not shop.node.store.exists("j")


def test_a_coalition_training_keeps_the_prepare_entries_of_its_own_parties_only():
    from vfl.service.spec import JobSpec
    from vfl.service.stages.contributions import _prepare_of

    spec = JobSpec.parse({"feature_parties": [{"peer": "shop", "dataset": "s"}, {"peer": "telco", "dataset": "t"}],
                          "party_b": {"dataset": "credit"},
                          "prepare": {"shop": {"impute": "median"}, "telco": {"missing_indicator": True},
                                      "bank": {"impute": "mean"}}})

    kept = _prepare_of(spec, ["telco", "bank"])

    assert sorted(kept) == ["bank", "telco"]
    assert _prepare_of(spec.model_copy(update={"prepare": None}), ["telco", "bank"]) is None
