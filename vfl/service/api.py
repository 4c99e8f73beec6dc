"""What the three FastAPI apps share: errors, authentication, limits, common routes.

Errors are translated here, once, from the VFLError tree to HTTP::

    ConfigError, DataError, EncodingError, KeyMismatch,
    LimitExceeded                                        422  (or 404 for unknown IDs)
    RateLimited (a LimitExceeded)                        429
    UnknownJobError                                      404
    OutOfOrderError, ReplayError, ScheduleViolation,
    JobError, JobCancelled                               409
    PeerNotAllowed (the caller is not the expected party) 403
    ProtocolError, CiphertextError, PSIError             400
    TransportError, PeerRefused                          502
    a body above the size limit                          413

A peer's error answer names the problem but not our local paths or dataset
file names (:mod:`vfl.service.redact`); the log line written before it keeps
the full message. Orchestration callers get the full message.

Orchestration routes (``/v1/jobs...``) need ``Authorization: Bearer <token>``,
compared in constant time and never logged. ``GET /metrics`` (Prometheus, see
:mod:`vfl.service.telemetry`) takes that token or the ``[metrics]`` scrape token,
which opens nothing else. Peer routes (``/v1/peer/...``)
know the caller by its party id; see :func:`peer_id`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from vfl.errors import (
    CiphertextError,
    ConfigError,
    CryptoError,
    DataError,
    JobError,
    KeyMismatch,
    LedgerConflict,
    LedgerError,
    LimitExceeded,
    NotReady,
    OutOfOrderError,
    PeerNotAllowed,
    ProtocolError,
    PSIError,
    RateLimited,
    ReplayError,
    ScheduleViolation,
    TransportError,
    UnknownJobError,
    VFLError,
)
from vfl.service import dashboard, ledger, registration
from vfl.service import resume as resuming  # the routes below include one named resume
from vfl.service.client import PARTY_HEADER
from vfl.service.tls import common_name
from vfl.service.node import Node
from vfl.service.redact import local_paths, peer_message, redact
from vfl.service.spec import FailureNotice, InterruptionNotice, ResumeRequest
from vfl.service.telemetry import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger("vfl.service")


def status_for(exc: VFLError) -> int:
    if isinstance(exc, UnknownJobError):
        return 404
    if isinstance(exc, PeerNotAllowed):
        return 403
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, (OutOfOrderError, ReplayError, ScheduleViolation, JobError, LedgerConflict)):
        return 409
    if isinstance(exc, LedgerError):
        return 422
    if isinstance(exc, DataError) and "unknown ID" in str(exc):
        return 404
    if isinstance(exc, (ConfigError, DataError, KeyMismatch, LimitExceeded)):
        return 422
    if isinstance(exc, (ProtocolError, CiphertextError, PSIError, CryptoError)):
        return 400
    if isinstance(exc, TransportError):
        return 502
    return 500


PEER_PREFIX = "/v1/peer/"
_JOB_IN_PATH = re.compile(r"^/v1/(?:peer/)?jobs/([^/]+)")


def is_peer_path(path: str) -> bool:
    """Peer endpoints are called by other organisations; everything else by this party's own operators."""
    return path.startswith(PEER_PREFIX)


def install_error_handlers(app: FastAPI) -> None:
    """VFLError → JSON ``{"detail", "error"}`` with the status of :func:`status_for`.

    A peer (another organisation) gets the problem without our local paths
    (:func:`vfl.service.redact.peer_message`); our log keeps the full message.
    Orchestration callers are this party's own operators and get it all.
    """

    @app.exception_handler(VFLError)
    async def _vfl_error(request: Request, exc: VFLError) -> JSONResponse:
        status = status_for(exc)
        name = type(exc).__name__
        job = _JOB_IN_PATH.match(request.url.path)
        extra = {"job_id": job.group(1)} if job else {}
        if 400 <= status < 500 and not isinstance(exc, NotReady):
            _refused(request, name)
        if is_peer_path(request.url.path):
            # An early message is answered "not ready" and sent again: per-message detail, not a problem.
            level = logging.DEBUG if isinstance(exc, NotReady) else logging.WARNING
            log.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, status, name, exc, extra=extra)
            node = getattr(request.app.state, "node", None)
            detail = peer_message(exc, node.config if node is not None else None)
        else:
            log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, name, exc, extra=extra)
            detail = str(exc)
        return JSONResponse({"detail": detail, "error": name}, status_code=status)


def _refused(request: Request, reason: str) -> None:
    """Count a refusal for GET /metrics (vfl_refusals_total{reason})."""
    node = getattr(request.app.state, "node", None)
    if node is not None:
        node.telemetry.refused(reason)


def node_of(request: Request) -> Node:
    return request.app.state.node


NodeDep = Annotated[Node, Depends(node_of)]


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Orchestration calls carry the service's bearer token; anything else is 401."""
    expected: str = request.app.state.token
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        _refused(request, "BadToken")
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_scraper(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """GET /metrics: the orchestration token, or the scrape token ([metrics] scrape_token_file) if one is set."""
    tokens = [request.app.state.token] + [t for t in (request.app.state.scrape_token,) if t]
    scheme, _, given = (authorization or "").partition(" ")
    matches = [hmac.compare_digest(given.encode(), t.encode()) for t in tokens]  # each compared, in constant time
    if scheme.lower() != "bearer" or not any(matches):
        _refused(request, "BadToken")
        raise HTTPException(401, "missing or wrong bearer token (the orchestration or the scrape token)",
                            headers={"WWW-Authenticate": "Bearer"})


def peer_id(request: Request, x_vfl_party: Annotated[str | None, Header(alias=PARTY_HEADER)] = None) -> str:
    """The calling peer's party id, which must be one of this service's configured peers.

    With TLS (the default) the identity is the common name of the client
    certificate the caller presented, which the TLS layer has verified against
    the CA; without one the call is refused. Only a service configured with
    ``insecure = true`` takes the ``X-VFL-Party`` header's word for it.
    """
    node: Node = request.app.state.node
    if node.config.tls is None:
        claimed = x_vfl_party
    else:
        der = getattr(request.state, "peer_certificate", None)
        if not der:
            _refused(request, "NoClientCertificate")
            raise HTTPException(403, "peer endpoints need a client certificate signed by the federation's CA")
        claimed = common_name(der)
        if x_vfl_party is not None and x_vfl_party != claimed:
            _refused(request, "NotAPeer")
            raise HTTPException(403, f"the X-VFL-Party header says {x_vfl_party!r}, the certificate {claimed!r}")
    if not claimed or claimed not in node.config.peers:
        _refused(request, "NotAPeer")
        raise HTTPException(403, f"caller {claimed!r} is not a configured peer of this service")
    return claimed


Peer = Annotated[str, Depends(peer_id)]
Token = Depends(require_token)


class BodyLimit:
    """ASGI middleware: refuse bodies above ``limit`` bytes with 413, declared or streamed."""

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


def install_validation_handler(app: FastAPI) -> None:
    """FastAPI's own 422s, with one readable sentence instead of a list of dicts."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _refused(request, "ValidationError")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": f"invalid request: {problems}", "error": "ValidationError"}, status_code=422)


# -- the app every service starts from ------------------------------------------------------

BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/vnd.vfl.message": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def base_app(node: Node, title: str, description: str) -> FastAPI:
    """A FastAPI app for ``node`` with error handling, limits and the routes all roles share."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's signature
        await node.startup()
        yield
        await node.shutdown()

    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # /docs without a CDN: see vfl.service.dashboard
    app.state.node = node
    app.state.token = node.config.token()
    app.state.scrape_token = node.config.scrape_token()
    install_error_handlers(app)
    install_validation_handler(app)
    app.add_middleware(BodyLimit, limit=node.config.limits.max_body_bytes)
    dashboard.install(app)  # /ui, its login (cookie sessions for /v1/jobs...), /static, offline /docs
    ledger.install(app, node)  # the job ledger's peer routes: /v1/peer/ledger/..., /v1/peer/jobs/{id}/ledger-view

    @app.get("/v1/health", tags=["orchestration"], summary="Liveness: this service is up")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "party": node.config.party.id, "role": node.party}

    @app.get("/metrics", tags=["monitoring"], dependencies=[Depends(require_scraper)], response_class=Response,
             summary="Prometheus metrics (the orchestration token or [metrics] scrape_token)")
    async def metrics() -> Response:
        return Response(node.telemetry.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/jobs", tags=["orchestration"], dependencies=[Token], summary="Every job this service knows")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": [r.model_dump(mode="json") for r in node.records.values()]}

    @app.get("/v1/jobs/{job_id}", tags=["orchestration"], dependencies=[Token],
             summary="A job's state, stage, epoch, losses, metrics and error")
    async def job_status(job_id: str) -> dict[str, Any]:
        return node.record(job_id).model_dump(mode="json")

    @app.post("/v1/jobs/{job_id}/cancel", tags=["orchestration"], dependencies=[Token],
              summary="Cancel a job at every party")
    async def cancel(job_id: str) -> dict[str, Any]:
        return (await node.cancel(job_id)).model_dump(mode="json")

    @app.post("/v1/peer/jobs/{job_id}/messages/{kind}", tags=["peer"], openapi_extra=BINARY_BODY,
              summary="A protocol message (binary frame) from a peer")
    async def message(job_id: str, kind: str, request: Request, caller: Peer, generation: int = 0) -> JSONResponse:
        outcome = await node.receive(job_id, caller, await request.body(), kind, generation)
        return JSONResponse({"status": outcome}, status_code=202 if outcome == "accepted" else 200)

    @app.get("/v1/peer/jobs/{job_id}/state", tags=["peer"], summary="Is the job alive here (for peers' watchdogs)")
    async def peer_state(job_id: str, caller: Peer) -> dict[str, Any]:
        state = node.peer_state(job_id, caller)
        if state.get("error"):  # our record's reason, as a peer may read it
            state["error"] = redact(state["error"], local_paths(node.config))
        return state

    @app.post("/v1/peer/jobs/{job_id}/fail", tags=["peer"], summary="A peer reports that the job failed there")
    async def peer_failed(job_id: str, notice: FailureNotice, caller: Peer) -> dict[str, str]:
        await node.peer_stopped(job_id, caller, notice.reason, cancelled=False, generation=notice.generation)
        return {"status": "failed"}

    @app.post("/v1/peer/jobs/{job_id}/cancel", tags=["peer"], summary="A peer cancelled the job")
    async def peer_cancelled(job_id: str, notice: FailureNotice, caller: Peer) -> dict[str, str]:
        await node.peer_stopped(job_id, caller, notice.reason, cancelled=True, generation=notice.generation)
        return {"status": "cancelled"}

    if node.party == "B":

        @app.post("/v1/jobs/{job_id}/resume", tags=["orchestration"], dependencies=[Token],
                  summary="Continue a running or failed job from the newest checkpoint all parties share")
        async def resume(job_id: str) -> dict[str, Any]:
            return (await resuming.resume(node, job_id)).model_dump(mode="json")

        @app.post("/v1/peer/jobs/{job_id}/interrupted", tags=["peer"],
                  summary="A restarted peer lost its place in the job: party B resumes it")
        async def interrupted(job_id: str, notice: InterruptionNotice, caller: Peer) -> dict[str, str]:
            await resuming.peer_interrupted(node, job_id, caller, notice.reason, notice.generation)
            return {"status": "resuming"}

    else:

        @app.get("/v1/peer/jobs/{job_id}/checkpoints", tags=["peer"], summary="Epochs this party can resume from")
        async def checkpoints(job_id: str, caller: Peer) -> dict[str, Any]:
            return resuming.checkpoint_info(node, job_id, caller)

        @app.post("/v1/peer/jobs/{job_id}/resume", tags=["peer"], summary="Party B: continue from a checkpoint")
        async def resume_role(job_id: str, body: ResumeRequest, caller: Peer) -> dict[str, Any]:
            return (await resuming.resume_role(node, job_id, body, caller)).peer_view()

        @app.post("/v1/peer/jobs/{job_id}/finished", tags=["peer"],
                  summary="Party B has the final model: drop checkpoints")
        async def finished(job_id: str, notice: FailureNotice, caller: Peer) -> dict[str, str]:
            await registration.finished(node, job_id, caller)
            return {"status": "done"}

    return app
