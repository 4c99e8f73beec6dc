"""Every error to HTTP in one place: a ``VFLError`` answers ``{"detail", "error"}`` with its class's ``http_status``.

The status travels with the error class (:mod:`vfl.errors` draws the tree with
each status), as h11's protocol errors carry their status hint; this module
never reads a message to choose one. A peer (another organisation) gets the
problem without our local paths (:func:`vfl.service.redact.peer_message`);
our log keeps the full message. Orchestration callers are this party's own
operators and get it all. Every 4xx is counted for ``GET /metrics``
(``vfl_refusals_total{reason}``), except an early message answered "not
ready", which its sender simply sends again.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from vfl.errors import NotReady, Unauthorized, VFLError
from vfl.ml.validation import describe, json_problem
from vfl.service.redact import peer_message

log = logging.getLogger("vfl.service")

PEER_PREFIX = "/v1/peer/"
_JOB_IN_PATH = re.compile(r"^/v1/(?:peer/)?jobs/([^/]+)")


def is_peer_path(path: str) -> bool:
    """Peer endpoints are called by other organisations; everything else by this party's own operators."""
    return path.startswith(PEER_PREFIX)


def refused(request: Request, reason: str) -> None:
    """Count a refusal for GET /metrics (vfl_refusals_total{reason})."""
    node = getattr(request.app.state, "node", None)
    if node is not None:
        node.telemetry.refused(reason)


async def vfl_error(request: Request, exc: VFLError) -> JSONResponse:
    status = exc.http_status
    name = type(exc).__name__
    job = _JOB_IN_PATH.match(request.url.path)
    extra = {"job_id": job.group(1)} if job else {}
    if 400 <= status < 500 and not isinstance(exc, NotReady):
        refused(request, name)
    if is_peer_path(request.url.path):
        # An early message is answered "not ready" and sent again: per-message detail, not a problem.
        level = logging.DEBUG if isinstance(exc, NotReady) else logging.WARNING
        log.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, status, name, exc, extra=extra)
        node = getattr(request.app.state, "node", None)
        detail = peer_message(exc, node.config if node is not None else None)
    else:
        if not getattr(request.state, "quiet", False):  # wrong tokens: the throttle logs them, collapsed
            log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, name, exc, extra=extra)
        detail = str(exc)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": detail, "error": name}, status_code=status, headers=headers)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the body of the route that refused the request (to name the keys valid there)."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    annotation = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422s, with one readable sentence instead of a list of dicts."""
    refused(request, "ValidationError")
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:  # FastAPI gives only the character offset: say where, and what the parser expected
        offset = next((p for p in broken.get("loc", ()) if isinstance(p, int)), 0)
        problems = json_problem(exc.body if isinstance(exc.body, (str, bytes)) else "", offset,
                                str((broken.get("ctx") or {}).get("error") or broken.get("msg")))
    else:
        problems = describe(errors, _body_model(request), skip=("body",))
    return JSONResponse({"detail": f"invalid request: {problems}", "error": "ValidationError"}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(VFLError, vfl_error)  # found through the class's MRO: one handler for the tree
    app.add_exception_handler(RequestValidationError, invalid_request)


__all__ = ["PEER_PREFIX", "install", "is_peer_path", "refused"]
