"""The HTTP service of party A and party B: HTTP in, calls into the service layer out, nothing more."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from vfl.service import coordinator, registration, scoring
from vfl.service.api import Peer, Token, base_app
from vfl.service.config import ServiceConfig
from vfl.service.node import Node
from vfl.service.spec import FailureNotice, JobSpec, Registration, ScoreQuery, TrainingStart


def create_app(config: ServiceConfig, *, node: Node | None = None) -> FastAPI:
    node = node or Node(config)
    role = config.role
    if role not in ("A", "B"):
        raise ValueError(f"parties.app serves party A or B, not {role}")
    title = "vfl party B (labels, initiator)" if role == "B" else "vfl party A (features)"
    app = base_app(node, title, "Vertical federated learning: one party's service. Orchestration under /v1/jobs.")

    @app.get("/v1/jobs/{job_id}/model", tags=["orchestration"], dependencies=[Token],
             summary="This party's own part of the trained model")
    async def model(job_id: str) -> dict[str, Any]:
        return node.model_part(job_id)

    if role == "B":

        @app.post("/v1/jobs", tags=["orchestration"], dependencies=[Token], status_code=201,
                  summary="Submit a job; B registers it with party A and the arbiter")
        async def submit(spec: JobSpec) -> dict[str, Any]:
            return (await coordinator.submit(node, spec)).model_dump(mode="json")

        @app.get("/v1/jobs/{job_id}/report", tags=["orchestration"], dependencies=[Token],
                 response_class=HTMLResponse, summary="The job's HTML report: metrics, figures, privacy, timings")
        async def report(job_id: str) -> HTMLResponse:
            return HTMLResponse(await asyncio.to_thread(coordinator.report, node, job_id))

        @app.post("/v1/jobs/{job_id}/predict", tags=["orchestration"], dependencies=[Token],
                  summary="Federated prediction for IDs; party A adds its partial scores, only B sees the result")
        async def predict(job_id: str, query: ScoreQuery) -> dict[str, Any]:
            return await scoring.predict(node, job_id, query.ids)

    if role == "A":

        @app.post("/v1/peer/jobs", tags=["peer"], status_code=201, summary="Party B registers a job")
        async def register(body: Registration, caller: Peer) -> dict[str, Any]:
            return (await registration.register(node, body, caller)).peer_view()

        @app.post("/v1/peer/jobs/{job_id}/forget", tags=["peer"], summary="Party B withdraws a registration")
        async def forget(job_id: str, notice: FailureNotice, caller: Peer) -> dict[str, str]:
            await registration.forget(node, job_id, caller)
            return {"status": "forgotten"}

        @app.post("/v1/peer/jobs/{job_id}/start", tags=["peer"], summary="Party B starts training")
        async def start(job_id: str, body: TrainingStart, caller: Peer) -> dict[str, Any]:
            return (await registration.start_training(node, job_id, body, caller)).peer_view()

        @app.post("/v1/peer/jobs/{job_id}/scores", tags=["peer"],
                  summary="Party A's plaintext partial scores u_A for IDs, for party B only")
        async def scores(job_id: str, query: ScoreQuery, caller: Peer) -> dict[str, Any]:
            return await scoring.partial_scores(node, job_id, query.ids, caller)

        @app.get("/v1/peer/jobs/{job_id}/convergence", tags=["peer"],
                 summary="Norms of party A's weights and of their change per epoch, for party B's report")
        async def convergence(job_id: str, caller: Peer) -> dict[str, Any]:
            return scoring.convergence(node, job_id, caller)

    return app


__all__ = ["create_app"]
