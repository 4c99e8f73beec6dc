"""A service's FastAPI app: which routers each role mounts (one table), its lifespan, its middleware.

The app is the table of contents of a service's API (as FastAPI's "bigger
applications" put it): :data:`ROUTERS` says which resources each role serves.
From the outside in, a request meets the gate (:mod:`.gate`: the caller's
credential and the route's body limit, checked before the body is read), then
FastAPI's own error middleware, then the routes, whose errors the handlers of
:mod:`.errors` turn into JSON with each error class's status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from vfl.api import ORCHESTRATION_API_VERSION
from vfl.protocol.roster import RoleKind
from vfl.service.config import ServiceConfig
from vfl.service.http import batches, binning, contract, errors, jobs, ledger, lending, models, ops, peer, predictions, ui
from vfl.service.http.auth import Sessions, Throttle, Window, cookie_name
from vfl.service.http.gate import Gate
from vfl.service.node import Node

#: The routers each role serves.
ROUTERS: dict[RoleKind, tuple[APIRouter, ...]] = {
    "label": (ops.router, jobs.router, jobs.label_router, jobs.parts_router, predictions.router, batches.router,
              models.router, models.label_router, peer.router, peer.label_router, ledger.router, lending.router,
              ui.router),
    "feature": (ops.router, jobs.router, jobs.parts_router, models.router, peer.router, peer.accept_router,
                peer.feature_router, binning.router, ledger.router, ledger.feature_router, lending.router, ui.router),
    "arbiter": (ops.router, jobs.router, peer.router, peer.accept_router, ledger.router, ui.router),
}

TITLES: dict[RoleKind, tuple[str, str]] = {
    "label": ("vfl party B (labels, initiator)",
              "Vertical federated learning: one party's service. Orchestration under /v1/jobs."),
    "feature": ("vfl party A (features)",
                "Vertical federated learning: one party's service. Orchestration under /v1/jobs."),
    "arbiter": ("vfl arbiter C", "Holds the Paillier private key; decrypts only masked gradients and the loss."),
}


def create_app(config: ServiceConfig, *, node: Node | None = None, transport: Any = None,
               after_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The app of one service; ``node`` may be given (tests that hold the Node), else it is built here.

    ``after_shutdown`` runs (in a thread) once the node has shut down: ``vfl serve`` stops the process's
    crypto worker pools there (see :func:`vfl.service.server.serve`).
    """
    node = node or Node(config, transport=transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.startup()
        yield
        await node.shutdown()
        if after_shutdown is not None:
            await asyncio.to_thread(after_shutdown)

    title, description = TITLES[config.kind]
    app = FastAPI(title=title, description=description, version=ORCHESTRATION_API_VERSION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # /docs without a CDN: see vfl.service.http.ui
                  generate_unique_id_function=contract.operation_id)
    app.state.node = node
    app.state.token = config.token()
    app.state.scrape_token = config.scrape_token()
    app.state.ui_sessions = Sessions()
    app.state.ui_cookie = cookie_name(config.party.id)
    app.state.throttle = Throttle(config.limits.auth_failures_per_minute)
    app.state.registrations = Window()  # jobs each party B registered here in the last minute
    errors.install(app)
    contract.install(app)
    app.add_middleware(Gate)  # authenticate and cap the body before any of it is read
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")
    for router in ROUTERS[config.kind]:
        app.include_router(router)
    return app


__all__ = ["ROUTERS", "create_app"]
