"""ASGI middleware that refuses request bodies above the service's ``limits.max_body_bytes`` (413)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class BodyLimit:
    """Refuse bodies above ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, send, self.limit)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(scope, send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: dict, send: Callable, limit: int) -> None:
    node = getattr(getattr(scope.get("app"), "state", None), "node", None)
    if node is not None:
        node.telemetry.refused("BodyTooLarge")
    body = json.dumps({"detail": f"request body exceeds the limit of {limit} bytes", "error": "BodyTooLarge"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BodyLimit"]
