"""A hostile frame at in-process services: a deeply nested message header is a 400, and the service carries on
(the connection tests against a real `vfl serve` are in tests/system/test_connections.py)."""

from __future__ import annotations

from tests.helpers import start_cluster
from vfl.protocol.wire import MAGIC, MAX_HEADER_DEPTH, MEDIA_TYPE


def test_a_frame_with_a_deeply_nested_header_is_a_400(tmp_path, run):
    job_id = "nested"
    registration = {"job_id": job_id, "parties": {"A": "party-a", "B": "party-b", "C": "arbiter"},
                    "training": {"key_bits": 1024}, "psi": {"key_bits": 1024}, "gradient_lengths": {"A": 3, "B": 4}}
    beyond_the_parser = b"[" * 100_000 + b"]" * 100_000
    within_the_parser = b'{"kind":"masked_gradient","fields":' + b"[" * 200 + b"]" * 200 + b',"blobs":[]}'
    answers = {}

    async def scenario() -> None:
        cluster = await start_cluster(tmp_path, population=100, key_bits=1024)
        try:
            async with cluster.client("arbiter") as arbiter:
                # Registered at the arbiter only: enough for its message endpoint to decode frames.
                registered = await arbiter.post("/v1/peer/jobs", json=registration,
                                                headers={"X-VFL-Party": "party-b"})
                assert registered.status_code == 201, registered.text
                for name, header in [("beyond", beyond_the_parser), ("within", within_the_parser)]:
                    frame = MAGIC + len(header).to_bytes(4, "big") + header
                    answers[name] = await arbiter.post(
                        f"/v1/peer/jobs/{job_id}/messages/masked_gradient", content=frame,
                        headers={"X-VFL-Party": "party-b", "Content-Type": MEDIA_TYPE})
                health = await arbiter.get("/v1/health")
        finally:
            await cluster.stop()
        answers["health"] = health

    run(scenario())

    for name in ("beyond", "within"):
        assert answers[name].status_code == 400, answers[name].text
        assert answers[name].json() == {"detail": f"message header nests deeper than {MAX_HEADER_DEPTH} levels",
                                        "error": "ProtocolError"}
    assert answers["health"].status_code == 200  # and the service carries on
