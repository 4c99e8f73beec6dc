"""Three services for tests: in one process through httpx's ASGI transport (tests/cluster), or as real
processes (tests/system)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from tests.contract import check_answer
from vfl.compute.childproc import ends_with_parent
from vfl.demo.services import write_demo_files
from vfl.service.config import load_config
from vfl.service.node import Node
from vfl.service.stages.pipeline import LABEL_PARTY, Step

NAMES = ("party-a", "party-b", "arbiter")
URLS = {name: f"http://{name}.test" for name in NAMES}


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app that owns its host name."""

    def __init__(self, check_contract: bool = True) -> None:
        self.apps: dict[str, Any] = {}
        #: Check every orchestration answer against the service's OpenAPI document (tests/contract.py).
        self.check_contract = check_contract

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self.apps.get(request.url.host)
        if app is None:
            raise httpx.ConnectError(f"no service at {request.url.host}", request=request)
        response = await httpx.ASGITransport(app=app).handle_async_request(request)
        if not self.check_contract:
            return response
        body = await response.aread()
        check_answer(app.openapi(), request, response.status_code, response.headers.get("content-type", ""), body)
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)


@dataclass
class Cluster:
    workdir: Path
    setup: dict[str, Any]
    router: Router
    nodes: dict[str, Node]

    @property
    def token(self) -> str:
        """Party B's token (the one the orchestrator uses); each service has its own."""
        return self.setup["token"]

    def client(self, name: str = "party-b", token: str | None = None) -> httpx.AsyncClient:
        """An orchestration client for service ``name``, with that service's own token unless told otherwise."""
        headers = {"Authorization": f"Bearer {token or self.setup['tokens'][name]}"}
        return httpx.AsyncClient(transport=self.router, base_url=URLS[name], headers=headers, timeout=120)

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.shutdown()


def demo_job(**training: Any) -> dict[str, Any]:
    defaults = {"epochs": 8}
    return {"population": 900, "key_bits": 1024, "training": {**defaults, **training}}


async def start_cluster(
    workdir: Path, extra: dict[str, str] | None = None, limits: dict[str, dict[str, Any]] | None = None,
    bank_steps: tuple[Step, ...] = LABEL_PARTY, **options: Any,
) -> Cluster:
    """Three in-process services on the demo files.

    ``extra`` appends TOML (say, more datasets) to a service's config; ``limits``
    adds keys to its ``[limits]`` table; ``bank_steps`` is party B's pipeline (another table plays a party B
    that deviates, with its own identity).
    """
    setup = write_demo_files(workdir, urls=URLS, tls=False, **options)
    for name, text in (extra or {}).items():
        path = workdir / f"{name}.toml"
        path.write_text(path.read_text() + "\n" + text)
    for name, values in (limits or {}).items():
        path = workdir / f"{name}.toml"
        lines = "".join(f"{key} = {value!r}\n" for key, value in values.items())
        path.write_text(path.read_text().replace("[limits]\n", "[limits]\n" + lines, 1))
    return await open_cluster(workdir, setup, bank_steps)


async def open_cluster(workdir: Path, setup: dict[str, Any] | None = None,
                       bank_steps: tuple[Step, ...] = LABEL_PARTY) -> Cluster:
    """The three services on the configs and folders in ``workdir`` as they are (also as after a restart)."""
    router = Router()
    nodes = {}
    for name in NAMES:
        config = load_config(workdir / f"{name}.toml")
        node = Node(config, transport=router, steps=bank_steps) if name == "party-b" else Node(config, transport=router)
        app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
        router.apps[f"{name}.test"] = app
        await node.startup()
        nodes[name] = node
    if setup is None:
        tokens = {name: node.config.token() for name, node in nodes.items()}
        setup = {"tokens": tokens, "token": tokens["party-b"]}
    return Cluster(workdir, setup, router, nodes)


async def wait_for(client: httpx.AsyncClient, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = (await client.get(f"/v1/jobs/{job_id}")).json()
        if status["state"] in ("succeeded", "failed", "cancelled", "damaged"):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job still {status['state']} after {timeout}s: {status}")
        await asyncio.sleep(0.05)


async def submit_until_epoch(client: httpx.AsyncClient, job: dict[str, Any], epoch: int) -> dict[str, Any]:
    """Submit ``job`` at party B and return B's answer once the job has finished ``epoch`` epochs."""
    submitted = (await client.post("/v1/jobs", json=job)).json()
    while (await client.get(f"/v1/jobs/{submitted['job_id']}")).json()["epoch"] < epoch:
        await asyncio.sleep(0.01)
    return submitted


def add_limits(workdir: Path, limits: dict[str, dict[str, Any]]) -> None:
    """Add keys to the ``[limits]`` table of each named service's config in ``workdir``."""
    for name, values in limits.items():
        path = workdir / f"{name}.toml"
        lines = "".join(f"{key} = {value!r}\n" for key, value in values.items())
        path.write_text(path.read_text().replace("[limits]\n", "[limits]\n" + lines, 1))


def misspell(config: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in the file ``config`` with ``new`` (which must be there)."""
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


def serve(workdir, name):
    """Start one `vfl serve` process from the config ``workdir/<name>.toml`` (as after a crash)."""
    with open(workdir / f"{name}.log", "ab") as log:  # the process has its own copy of the file descriptor
        return subprocess.Popen([sys.executable, "-m", "vfl.cli", "serve", "--config", str(workdir / f"{name}.toml")],
                                stdout=log, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=ends_with_parent())


def get(client, url, attempts=400):
    """GET that rides out a service being down for a moment."""
    for _ in range(attempts):
        try:
            return client.get(url).json()
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} stayed unreachable")
