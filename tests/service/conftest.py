"""The service tier: one real Node and its app, whose peers are fakes (httpx.MockTransport), in milliseconds.

No crypto runs here: a test plays the peers by answering the Node's calls
itself, and talks to the Node's app through httpx's ASGI transport, as an
orchestrator or as a peer would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from vfl.demo.services import write_demo_files
from vfl.service.config import load_config
from vfl.service.http.app import create_app
from vfl.service.node import Node

URLS = {name: f"http://{name}.test" for name in ("party-a", "party-b", "arbiter")}

#: (method, path) → a JSON answer, or a function of the request that returns an httpx.Response.
Script = dict[tuple[str, str], Any]


@dataclass
class FakePeers:
    """Answers a Node's calls to its peers from a script, and remembers every call."""

    script: Script = field(default_factory=dict)
    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)  # (peer host, method, path, body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        json_body = request.headers.get("content-type", "").startswith("application/json")
        body = json.loads(request.content) if request.content and json_body else request.content
        self.calls.append((request.url.host.removesuffix(".test"), request.method, request.url.path, body))
        answer = self.script.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"detail": f"no job at {request.url.host}", "error": "UnknownJobError"})
        if callable(answer):
            return answer(request)
        return httpx.Response(200, json=answer)

    def paths(self, method: str | None = None) -> list[tuple[str, str]]:
        return [(peer, path) for peer, m, path, _ in self.calls if method in (None, m)]


@dataclass
class Service:
    """One real service (its Node and app) with fake peers."""

    node: Node
    app: Any
    peers: FakePeers
    token: str

    def orchestrator(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://service.test",
                                 headers={"Authorization": f"Bearer {self.token}"})

    def peer(self, caller: str) -> httpx.AsyncClient:
        """A client that calls the service's peer routes as party ``caller`` (the insecure set-up's header)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://service.test",
                                 headers={"X-VFL-Party": caller})


@pytest.fixture
def demo_files(tmp_path: Path) -> dict[str, Any]:
    return write_demo_files(tmp_path, population=80, key_bits=1024, urls=URLS, tls=False,
                            training={"epochs": 2})


@pytest.fixture
def service(tmp_path: Path, demo_files: dict[str, Any]) -> Iterator[Callable[[str], Service]]:
    """``service("party-b")``: that service of the demo files, built but not started, with fake peers."""

    built: list[Node] = []

    def build(name: str, script: Script | None = None) -> Service:
        peers = FakePeers(dict(script or {}))
        config = load_config(tmp_path / f"{name}.toml")
        node = Node(config, transport=httpx.MockTransport(peers.handle))
        built.append(node)
        return Service(node, create_app(config, node=node), peers, config.token())

    yield build
    for node in built:  # as the service would at exit: counters flushed, audit logs and pools closed
        asyncio.run(node.shutdown())


@pytest.fixture
def run():
    """Run a coroutine to completion (the tests are plain functions)."""
    return asyncio.run
