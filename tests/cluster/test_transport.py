"""Idempotent message endpoints, cancellation, and peers that cannot be reached."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.helpers import demo_job, start_cluster, submit_until_epoch, wait_for
from vfl.errors import TransportError
from vfl.protocol.messages import KeyRequest
from vfl.protocol.wire import encode_message
from vfl.service.peers import PeerClient
from vfl.service.config import load_config


def test_messages_for_a_finished_job_are_refused_with_a_reason(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        arbiter = cluster.nodes["arbiter"]
        try:
            async with cluster.client() as bank:
                job = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()
                await wait_for(bank, job["job_id"])
            # Replay A's registration message to C the way a retrying peer would.
            record = arbiter.job(job["job_id"]).record
            runtime_calls = []
            headers = {"X-VFL-Party": "party-a", "Content-Type": "application/vnd.vfl.message"}
            async with httpx.AsyncClient(transport=cluster.router, base_url="http://arbiter.test") as raw:
                frame = encode_message(KeyRequest(job_id=job["job_id"], party="A", n_params=7, model="logistic", key_bits=1024, config_digest="x"))
                for _ in range(2):
                    runtime_calls.append(await raw.post(f"/v1/peer/jobs/{job['job_id']}/messages/key_request",
                                                        content=frame, headers=headers))
            return record, runtime_calls
        finally:
            await cluster.stop()

    record, answers = run(scenario())

    # The job is over, so the arbiter refuses any further message for it, every time, with a reason.
    assert record.state == "succeeded"
    assert [a.status_code for a in answers] == [409, 409]
    assert "already succeeded" in answers[0].json()["detail"]


def test_runtime_deduplicates_frames(tmp_path, run):
    from vfl.service.runtime import JobRuntime

    delivered = []

    async def scenario():
        async def handled(role, message, out):
            delivered.append(message)

        async def failure(reason):
            raise AssertionError(reason)

        runtime = JobRuntime("j", "C", send=None, on_handled=handled, on_failure=failure, synchronous=True)
        runtime.start()

        class Echo:
            def handle(self, message, sender):
                return []

        await runtime.add_role("train", Echo())
        frame = encode_message(KeyRequest(job_id="j", party="A", n_params=3, model="logistic", key_bits=1024, config_digest="x"))
        other = encode_message(KeyRequest(job_id="j", party="A", n_params=4, model="logistic", key_bits=1024, config_digest="x"))
        outcomes = [await runtime.receive("A", frame), await runtime.receive("A", frame)]
        try:
            await runtime.receive("A", other)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(type(exc).__name__)
        await runtime.close()
        return outcomes

    outcomes = run(scenario())

    assert outcomes == ["accepted", "duplicate", "ReplayError"]
    assert len(delivered) == 1  # the duplicate did no work


def test_cancel_stops_the_job_at_every_party(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=200, tol=0))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, cluster.client("arbiter") as arb:
                job = await submit_until_epoch(bank, cluster.setup["job"], 2)
                cancelled = await bank.post(f"/v1/jobs/{job['job_id']}/cancel")
                await asyncio.sleep(0.3)
                states = [(await c.get(f"/v1/jobs/{job['job_id']}")).json() for c in (bank, shop, arb)]
                again = await bank.post(f"/v1/jobs/{job['job_id']}/cancel")
            return cancelled, states, again
        finally:
            await cluster.stop()

    cancelled, states, again = run(scenario())

    assert cancelled.status_code == 200
    assert [s["state"] for s in states] == ["cancelled"] * 3
    assert all("cancelled" in s["error"] for s in states)
    assert states[0]["epoch"] < 200
    assert again.status_code == 409
    assert "is already cancelled; nothing to cancel" in again.json()["detail"]  # not "has already cancelled"


def test_an_unreachable_peer_fails_after_the_configured_timeout(tmp_path, run):
    async def scenario():
        from vfl.demo.services import write_demo_files

        write_demo_files(tmp_path, population=50, key_bits=1024, tls=False)
        text = (tmp_path / "party-b.toml").read_text().replace("[limits]", "[limits]\npeer_timeout = 1.5")
        (tmp_path / "party-b.toml").write_text(text)
        client = PeerClient(load_config(tmp_path / "party-b.toml"))  # nobody listens on those ports
        started = time.monotonic()
        try:
            await client.call_json("party-a", "GET", "/v1/health")
        except TransportError as exc:
            return str(exc), time.monotonic() - started
        finally:
            await client.aclose()
        raise AssertionError("no error")

    message, seconds = run(scenario())

    assert "has been unreachable for" in message and "peer_timeout = 1.5s" in message and "party-a" in message
    assert 0.5 < seconds < 5


@pytest.mark.parametrize("limit", [2048])
def test_oversized_bodies_get_413(tmp_path, run, limit):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        for node in cluster.nodes.values():  # the gate reads the limits at each request
            object.__setattr__(node.config.limits, "max_control_body_bytes", limit)
        try:
            async with cluster.client() as bank:
                return await bank.post("/v1/jobs", content=b"x" * (limit + 1), headers={"Content-Type": "application/json"})
        finally:
            await cluster.stop()

    answer = run(scenario())

    assert answer.status_code == 413 and "exceeds the limit" in answer.json()["detail"]


class EarlyThenReady:
    """A peer (a real ASGI app) that answers "not ready" (409 NotReady) ``early`` times, then accepts."""

    def __init__(self, early: int) -> None:
        self.early, self.calls = early, 0

    async def __call__(self, scope, receive, send) -> None:
        import json as _json

        if scope["type"] != "http":
            return
        self.calls += 1
        ready = self.calls > self.early
        status, body = (200, {"status": "accepted"}) if ready else (
            409, {"detail": "epoch 3 batch 1 is too far ahead of this party's progress", "error": "NotReady"})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": _json.dumps(body).encode()})


@pytest.mark.parametrize("early, outcome", [(3, "delivered"), (10_000, "peer_timeout = 1.5s; not ready")],
                         ids=["early-then-ready", "never-ready"])
def test_a_message_that_arrives_early_is_retried_until_the_peer_is_ready(tmp_path, run, early, outcome):
    import httpx

    from vfl.demo.services import write_demo_files

    write_demo_files(tmp_path, population=50, key_bits=1024, tls=False)
    text = (tmp_path / "party-b.toml").read_text().replace("[limits]", "[limits]\npeer_timeout = 1.5")
    (tmp_path / "party-b.toml").write_text(text)
    peer = EarlyThenReady(early)

    async def scenario():
        client = PeerClient(load_config(tmp_path / "party-b.toml"), transport=httpx.ASGITransport(app=peer))
        try:
            await client.call_json("party-a", "POST", "/v1/peer/jobs/j/messages/x", {})
            return "delivered"
        except TransportError as exc:
            return str(exc)
        finally:
            await client.aclose()

    result = run(scenario())

    assert outcome in result
    assert peer.calls == (early + 1 if outcome == "delivered" else peer.calls) and peer.calls > 3
