"""A submit while a peer is down is refused within limits.connect_timeout (502, naming the peer), not after minutes."""

from __future__ import annotations

import json
import time

import httpx

from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from tests.helpers import NAMES, URLS, Router, add_limits
from vfl.demo.services import free_port, write_demo_files
from vfl.service.config import load_config
from vfl.service.node import Node


class RouterAndNetwork(Router):
    """The in-process services by host name; any other address over the real network (here: loopback)."""

    def __init__(self) -> None:
        super().__init__()
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.apps:
            return await super().handle_async_request(request)
        return await self.network.handle_async_request(request)


async def services(workdir, dead: str, limits: dict | None) -> tuple[dict[str, Node], RouterAndNetwork, str]:
    """The demo's three services in process, with party B's peer ``dead`` at a loopback port nothing listens on."""
    write_demo_files(workdir, urls=URLS, tls=False, population=300, key_bits=1024, training={"epochs": 1})
    if limits:
        add_limits(workdir, {"party-b": limits})
    nowhere = f"http://127.0.0.1:{free_port()}"
    bank = workdir / "party-b.toml"
    bank.write_text(bank.read_text().replace(f'url = "{URLS[dead]}"', f'url = "{nowhere}"'))
    router = RouterAndNetwork()
    nodes = {}
    for name in NAMES:
        config = load_config(workdir / f"{name}.toml")
        node = Node(config, transport=router)
        app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
        if name != dead:
            router.apps[f"{name}.test"] = app
        await node.startup()
        nodes[name] = node
    return nodes, router, nowhere


async def submit_timed(workdir, dead: str, limits: dict | None = None):
    nodes, router, nowhere = await services(workdir, dead, limits)
    token = nodes["party-b"].config.token()
    try:
        async with httpx.AsyncClient(transport=router, base_url=URLS["party-b"], timeout=120,
                                     headers={"Authorization": f"Bearer {token}"}) as bank:
            job = json.loads((workdir / "job.json").read_text())
            started = time.monotonic()
            answer = await bank.post("/v1/jobs", json={**job, "job_id": "too-soon"})
            seconds = time.monotonic() - started
            listed = (await bank.get("/v1/jobs")).json()["jobs"]
        return answer, seconds, nowhere, listed, nodes
    finally:
        for node in nodes.values():
            await node.shutdown()


def test_a_dead_feature_party_refuses_the_submit_within_the_default_connect_timeout(tmp_path, run):
    answer, seconds, nowhere, listed, nodes = run(submit_timed(tmp_path, "party-a"))

    assert answer.status_code == 502, answer.text
    assert seconds < 10, seconds  # limits.connect_timeout = 5 s by default; before, about peer_timeout (120 s)
    body = answer.json()
    assert body["error"] == "PeerUnreachable"
    assert "job too-soon was not submitted" in body["detail"]
    assert "party A 'party-a' is unreachable" in body["detail"] and nowhere in body["detail"]
    assert "limits.connect_timeout" in body["detail"]
    assert listed == [] and "too-soon" not in nodes["arbiter"].jobs  # nothing left anywhere


def test_a_dead_arbiter_refuses_the_submit_and_the_feature_party_forgets_it(tmp_path, run):
    answer, seconds, nowhere, listed, nodes = run(submit_timed(tmp_path, "arbiter", {"connect_timeout": 1.5}))

    assert answer.status_code == 502, answer.text
    assert seconds < 6, seconds
    assert "party C (the arbiter) 'arbiter' is unreachable" in answer.json()["detail"]
    assert nowhere in answer.json()["detail"]
    assert listed == []
    assert "too-soon" not in nodes["party-a"].jobs  # A had registered it; B withdrew it
