"""Issue 27's decisions that a service makes on its own: who may query a lender, what a delete may remove."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from vfl.errors import LimitExceeded
from vfl.service.record import JobRecord
from vfl.service.releases import Releases, direction, rank
from vfl.service.sections import LendingSection
from vfl.service.store import JobStore


@pytest.mark.parametrize("allowed, caller, kind, may", [
    (None, "bank", "label", True),
    (None, "arbiter", "arbiter", False),  # the arbiter holds the key of every job: it queries nobody by default
    (None, "shop", "feature", False),
    (["*"], "arbiter", "arbiter", True),
    (["shop"], "shop", "feature", True),
    (["shop"], "bank", "label", False),
])
def test_a_lender_answers_its_label_party_peers_unless_its_config_says_otherwise(allowed, caller, kind, may):
    settings = LendingSection(allowed_queriers=allowed)

    assert settings.allows(caller, kind) is may


def test_wrong_tokens_are_throttled_per_address_and_logged_once(service, run, caplog):
    bank = service("party-b")
    limit = bank.node.config.limits.auth_failures_per_minute

    async def guess():
        async with bank.orchestrator() as client:
            wrong = [await client.get("/v1/jobs", headers={"Authorization": f"Bearer guess-{n}"}) for n in range(limit)]
            return (wrong, await client.get("/v1/jobs", headers={"Authorization": "Bearer one-more"}),
                    await client.get("/v1/jobs"), await client.post("/ui/login", content=b"token=guess"))

    with caplog.at_level("INFO", logger="vfl.service"):
        wrong, next_guess, right_token, login = run(guess())

    assert [a.status_code for a in wrong] == [401] * limit
    assert next_guess.status_code == 429 and "limits.auth_failures_per_minute" in next_guess.json()["detail"]
    assert right_token.status_code == 429  # the address keeps guessing: it waits out the minute first
    assert login.status_code == 429
    lines = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert len(lines) == 1  # one line for the burst, not one per guess


def test_the_throttle_forgets_an_address_after_a_minute():
    from vfl.service.http.auth import Throttle

    now = [0.0]
    throttle = Throttle(limit=2, clock=lambda: now[0])
    throttle.failed("10.0.0.9", "a wrong token")
    throttle.failed("10.0.0.9", "a wrong token")

    with pytest.raises(Exception, match="retry in 60 s"):
        throttle.check("10.0.0.9")
    throttle.check("10.0.0.10")  # another address is not affected
    now[0] = 61.0
    throttle.check("10.0.0.9")


def part(weights, scale=None):
    from vfl.ml.parts import ModelPartA
    from vfl.ml.scaling import Standardizer

    weights = np.asarray(weights, dtype=float)
    scale = np.ones_like(weights) if scale is None else np.asarray(scale, dtype=float)
    return ModelPartA("logistic", [f"f{i}" for i in range(len(weights))], Standardizer(np.zeros_like(weights), scale),
                      weights)


def record(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, role="A", dataset="behaviour", peers={"A": "shop", "B": "bank", "C": "arbiter"})


def named_part(weights, names):
    from vfl.ml.parts import ModelPartA
    from vfl.ml.scaling import Standardizer

    weights = np.asarray(weights, dtype=float)
    return ModelPartA("logistic", list(names), Standardizer(np.zeros_like(weights), np.ones_like(weights)), weights)


def test_models_of_one_dataset_with_other_columns_share_the_narrowest_models_budget(tmp_path):
    """A job's "prepare" adds an indicator column: its direction is compared with the others by column name."""
    ledgers = Releases(JobStore(tmp_path))
    plain, indicated = ["f0", "f1", "f2"], ["f0", "f1", "f2", "f2 (missing)"]

    ledgers.admit(record("j1"), named_part([1.0, 0.0, 0.0], plain), 10, 1000, None)
    ledgers.admit(record("j2"), named_part([0.0, 1.0, 0.0, 0.0], indicated), 10, 1000, None)
    with pytest.raises(LimitExceeded, match="2 independent combinations"):  # 3 would do for a 4-column model alone
        ledgers.admit(record("j3"), named_part([0.0, 0.0, 0.0, 1.0], indicated), 10, 1000, None)
    with pytest.raises(LimitExceeded):
        ledgers.room_for_a_model("bank", "behaviour", 4, None, columns=indicated)
    ledgers.write("bank", "behaviour")
    reloaded = Releases(JobStore(tmp_path)).ledger("bank", "behaviour")

    assert reloaded["columns"] == {"j1": plain, "j2": indicated}


def test_a_feature_party_releases_fewer_directions_than_it_has_features(tmp_path):
    """Three features: by default two independent models' scores, then no more; a repeat of one is no new one."""
    ledgers = Releases(JobStore(tmp_path))

    first = ledgers.admit(record("j1"), part([1.0, 0.0, 0.5]), 10, 1000, None)
    again = ledgers.admit(record("j1"), part([1.0, 0.0, 0.5]), 10, 1000, None)
    same_direction = ledgers.admit(record("j2"), part([2.0, 0.0, 1.0]), 10, 1000, None)  # a multiple: no new one
    second = ledgers.admit(record("j3"), part([0.0, 1.0, 0.0]), 10, 1000, None)
    with pytest.raises(LimitExceeded, match="2 independent combinations"):
        ledgers.admit(record("j4"), part([0.0, 0.0, 1.0]), 10, 1000, None)
    ledgers.write("bank", "behaviour")
    reloaded = Releases(JobStore(tmp_path)).ledger("bank", "behaviour")

    assert (first, again, same_direction, second) == (True, False, True, True)
    assert reloaded["scored_ids"] == 40 and sorted(reloaded["directions"]) == ["j1", "j2", "j3"]
    with pytest.raises(LimitExceeded, match="score_directions"):
        Releases(JobStore(tmp_path)).room_for_a_model("bank", "behaviour", 3, None)


def test_directions_are_compared_in_raw_feature_units():
    """Models standardised differently but scoring the same raw combination count as one direction."""
    assert rank([direction(part([1.0, 2.0], scale=[1.0, 2.0])), direction(part([2.0, 2.0], scale=[2.0, 1.0]))]) == 2
    assert rank([direction(part([1.0, 2.0], scale=[1.0, 2.0])), direction(part([2.0, 4.0], scale=[2.0, 4.0]))]) == 1


def test_the_ids_scored_for_a_partner_are_counted_over_all_its_jobs(tmp_path):
    ledgers = Releases(JobStore(tmp_path))
    ledgers.admit(record("j1"), part([1.0, 0.0, 0.5]), 60, 100, 2)

    with pytest.raises(LimitExceeded, match="over all its jobs"):
        ledgers.admit(record("j2"), part([1.0, 0.0, 0.5]), 41, 100, 2)  # another job: the same budget
    ledgers.admit(record("j2"), part([1.0, 0.0, 0.5]), 40, 100, 2)

    assert ledgers.ledger("bank", "behaviour")["scored_ids"] == 100


class _CountedBody:
    """A streamed request body that remembers how many of its chunks the server pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self):
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * self.size


def test_a_caller_without_credentials_is_refused_before_its_body_is_read(service, run):
    shop = service("party-a")
    bodies = {"stranger": _CountedBody(64), "no token": _CountedBody(64)}

    async def send():
        async with shop.peer("mallory") as stranger, shop.orchestrator() as client:
            return (await stranger.post("/v1/peer/jobs/j/messages/psi_key", content=bodies["stranger"]),
                    await client.post("/v1/jobs/j/cancel", content=bodies["no token"],
                                      headers={"Authorization": "Bearer wrong"}))

    as_stranger, without_token = run(send())

    assert as_stranger.status_code == 403 and as_stranger.json()["error"] == "NotAPeer"
    assert without_token.status_code == 401
    assert bodies["stranger"].pulled == 0 and bodies["no token"].pulled == 0


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_is_capped_by_what_its_route_carries(service, run, declared):
    bank = service("party-b")
    limits = bank.node.config.limits
    control = _CountedBody(chunks=64)  # 4 MiB: above the 1 MiB of a control request, far below a message's cap

    async def send():
        async with bank.orchestrator() as client:
            if declared:
                return await client.post("/v1/jobs", content=b"x" * (limits.max_control_body_bytes + 1),
                                         headers={"Content-Type": "application/json"})
            return await client.post("/v1/jobs", content=control, headers={"Content-Type": "application/json"})

    answer = run(send())

    assert answer.status_code == 413 and answer.json()["error"] == "BodyTooLarge"
    assert f"limit of {limits.max_control_body_bytes} bytes for /v1/jobs" in answer.json()["detail"]
    if not declared:  # a streamed body is cut off once it passes the cap, not read to its end
        assert control.pulled <= limits.max_control_body_bytes // control.size + 1


def test_a_party_b_registers_at_most_its_quota_of_jobs_a_minute(service, run):
    shop = service("party-a")
    object.__setattr__(shop.node.config.limits, "registrations_per_minute", 3)

    async def register():
        async with shop.peer("party-b") as bank:
            return [await bank.post("/v1/peer/jobs", json={"job_id": f"j{n}"}) for n in range(4)]

    answers = run(register())

    assert [a.status_code for a in answers[:3]] == [422] * 3  # malformed, but counted: the quota bounds the work
    assert answers[3].status_code == 429 and "limits.registrations_per_minute" in answers[3].json()["detail"]


def test_an_id_longer_than_the_limit_is_refused_by_name(service, run):
    bank = service("party-b")

    async def predict():
        async with bank.orchestrator() as client:
            return await client.post("/v1/jobs/j/predict", json={"ids": ["x" * 257]})

    answer = run(predict())

    assert answer.status_code == 422 and "at most 256 characters" in answer.text


def test_a_job_with_a_key_above_the_ceiling_is_refused(service):
    from vfl.errors import ConfigError
    from vfl.ml.config import TrainingConfig
    from vfl.service.training_roles import check_key_sizes

    config = service("party-a").node.config
    ceiling = config.limits.max_key_bits

    with pytest.raises(ConfigError, match="limits.max_key_bits"):
        check_key_sizes(config, TrainingConfig(key_bits=2048), psi_bits=ceiling * 2)
    check_key_sizes(config, TrainingConfig(key_bits=2048), psi_bits=ceiling)


@pytest.mark.parametrize("declared", [True, False])
def test_a_peer_answer_above_the_response_cap_is_not_read_to_its_end(service, run, declared):
    from vfl.errors import ProtocolError

    bank = service("party-b")
    limit = bank.node.config.limits.max_response_bytes
    pulled = []

    async def huge():
        for _ in range(limit // (1024**2) + 8):
            pulled.append(1)
            yield b"y" * 1024**2

    bank.peers.script[("GET", "/v1/peer/ledger/head")] = lambda request: (
        httpx.Response(200, content=b"z" * (limit + 1)) if declared else httpx.Response(200, content=huge()))

    async def ask():
        try:
            await bank.node.client.call_json("party-a", "GET", "/v1/peer/ledger/head")
        finally:
            await bank.node.client.aclose()

    with pytest.raises(ProtocolError, match="limits.max_response_bytes"):
        run(ask())
    assert len(pulled) <= limit // (1024**2) + 1
