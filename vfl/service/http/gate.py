"""The gate of a service's app: who may send a body, and how large, decided before a single body byte is read.

FastAPI reads and parses a request's JSON body before it runs a route's
dependencies, so a caller with no token and no certificate could make a service
parse a very large body only to be refused after it. This ASGI middleware runs
first, on the request's head alone:

1. it authenticates the caller as the route requires (the same checks as the
   route's dependencies in :mod:`.auth`): a configured peer's certificate for
   ``/v1/peer/...``, the orchestration token or a dashboard session for the
   other ``/v1/...`` routes, the token or the scrape token for ``/metrics``;
2. it limits how often one party B may register jobs here
   (``limits.registrations_per_minute``);
3. it caps the body by the route: a protocol message may be as large as
   ``limits.max_body_bytes``, a request that carries IDs or entries
   ``limits.max_data_body_bytes``, anything else ``limits.max_control_body_bytes``;
   a larger one is answered 413 whether it declares its length or streams it.

Refusals answer and count exactly as the routes' own errors do (:mod:`.errors`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from vfl.errors import RateLimited, VFLError
from vfl.service.http.auth import peer_id, require_orchestrator, require_scraper
from vfl.service.http.errors import vfl_error

#: Routes whose body carries IDs or entries (method, path pattern).
DATA_ROUTES = tuple(re.compile(p) for p in (
    r"^/v1/jobs/[^/]+/predict$", r"^/v1/models/[^/]+/predict$", r"^/v1/peer/jobs/[^/]+/scores$",
    r"^/v1/peer/jobs/[^/]+/start$", r"^/v1/peer/jobs/[^/]+/binning/rows$", r"^/v1/peer/ledger/append$", r"^/v1/peer/ledger/sign$",
    r"^/v1/lending-query$", r"^/v1/peer/lending/blind-sign$",
))
MESSAGE_ROUTE = re.compile(r"^/v1/peer/jobs/[^/]+/messages/[^/]+$")
#: A scorecard's binning request: a protocol message too (party B's encrypted labels, one per aligned row).
BINNING_ROUTE = re.compile(r"^/v1/peer/jobs/[^/]+/binning$")


def body_limit(path: str, limits: Any) -> int:
    if MESSAGE_ROUTE.match(path) or BINNING_ROUTE.match(path):
        return limits.max_body_bytes
    if any(route.match(path) for route in DATA_ROUTES):
        return limits.max_data_body_bytes
    return limits.max_control_body_bytes


class Gate:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # the head only: nothing here reads the body
        try:
            await self._admit(request)
        except VFLError as exc:
            await (await vfl_error(request, exc))(scope, receive, send)
            return
        limit = body_limit(scope["path"], request.app.state.node.config.limits)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(request, scope, send, limit)
            return
        received, refused, started = 0, False, False

        async def limited_receive() -> dict:
            # Past the cap, the 413 goes out at once and the app sees the client leave: FastAPI would turn
            # an exception raised here into its own 400 "error parsing the body".
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _too_large(request, scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if refused:
                return  # the answer was the 413; the app's own, to a "client" that left, is dropped
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _admit(self, request: Request) -> None:
        path = request.url.path
        headers = request.headers
        if path.startswith("/v1/peer/"):
            caller = await peer_id(request, headers.get("x-vfl-party"))
            if request.method == "POST" and path == "/v1/peer/jobs":
                self._count_registration(request, caller)
        elif path == "/metrics":
            await require_scraper(request, headers.get("authorization"))
        elif path.startswith("/v1/") and path != "/v1/health":
            await require_orchestrator(request, headers.get("authorization"))
        # Anything else (health, the dashboard's pages and login, /docs, static files) needs no credential:
        # its body is capped by the control limit.

    @staticmethod
    def _count_registration(request: Request, caller: str) -> None:
        window = request.app.state.registrations
        limit = request.app.state.node.config.limits.registrations_per_minute
        if window.count(caller) >= limit:
            raise RateLimited(f"{caller} registered {limit} jobs here in the last minute "
                              "(limits.registrations_per_minute); retry later")
        window.add(caller)


async def _too_large(request: Request, scope: dict, send: Callable[[dict], Awaitable[None]], limit: int) -> None:
    node = getattr(request.app.state, "node", None)
    if node is not None:
        node.telemetry.refused("BodyTooLarge")
    body = json.dumps({"detail": f"request body exceeds the limit of {limit} bytes for {scope['path']}",
                       "error": "BodyTooLarge"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Gate", "body_limit"]
