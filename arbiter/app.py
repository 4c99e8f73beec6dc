"""The HTTP service of the arbiter C: HTTP in, calls into the service layer out, nothing more."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from vfl.service import registration, registry
from vfl.service.api import Peer, base_app
from vfl.service.config import ServiceConfig
from vfl.service.node import Node
from vfl.service.spec import FailureNotice, Registration, TrainingStart


def create_app(config: ServiceConfig, *, node: Node | None = None) -> FastAPI:
    if config.role != "C":
        raise ValueError(f"arbiter.app serves the arbiter (role C), not {config.role}")
    node = node or Node(config)
    app = base_app(node, "vfl arbiter C", "Holds the Paillier private key; decrypts only masked gradients and the loss.")

    @app.post("/v1/peer/jobs", tags=["peer"], status_code=201, summary="Party B registers a job")
    async def register(body: Registration, caller: Peer) -> dict[str, Any]:
        return (await registration.register(node, body, caller)).peer_view()

    @app.post("/v1/peer/jobs/{job_id}/forget", tags=["peer"], summary="Party B withdraws a registration")
    async def forget(job_id: str, notice: FailureNotice, caller: Peer) -> dict[str, str]:
        await registration.forget(node, job_id, caller)
        return {"status": "forgotten"}

    @app.post("/v1/peer/jobs/{job_id}/start", tags=["peer"], summary="Party B starts training: C makes the key pair")
    async def start(job_id: str, body: TrainingStart, caller: Peer) -> dict[str, Any]:
        return (await registration.start_training(node, job_id, body, caller)).peer_view()

    @app.post("/v1/peer/jobs/{job_id}/delete", tags=["peer"],
              summary="Party B deletes the job: its folder (ledger, checkpoints, audit log) goes")
    async def peer_delete(job_id: str, caller: Peer) -> dict[str, str]:
        return await registry.peer_delete(node, job_id, caller)

    return app
