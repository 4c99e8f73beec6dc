"""Issue 27's decisions that a service makes on its own: who may query a lender, what a delete may remove."""

from __future__ import annotations

import pytest

from vfl.service.sections import LendingSection


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
