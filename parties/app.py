"""The HTTP service of party A and party B: HTTP in, calls into the service layer out, nothing more."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import FastAPI, Header, Response
from fastapi.responses import FileResponse
from fastapi.responses import HTMLResponse, JSONResponse

from vfl.service import coordinator, lending, registration, registry, scoring
from vfl.service import batch
from vfl.service.api import Peer, Token, base_app
from vfl.service.config import ServiceConfig
from vfl.service.node import Node
from vfl.service.spec import BatchRequest
from vfl.service.spec import FailureNotice, JobSpec, PredictQuery, PromoteRequest, Registration, ScoreQuery, TrainingStart


def create_app(config: ServiceConfig, *, node: Node | None = None) -> FastAPI:
    node = node or Node(config)
    role = config.role
    if role not in ("A", "B"):
        raise ValueError(f"parties.app serves party A or B, not {role}")
    title = "vfl party B (labels, initiator)" if role == "B" else "vfl party A (features)"
    app = base_app(node, title, "Vertical federated learning: one party's service. Orchestration under /v1/jobs.")
    lending.install(app, node)  # multi-lender queries: GET/POST /v1/peer/lending/..., POST /v1/lending-query

    @app.get("/v1/jobs/{job_id}/model", tags=["orchestration"], dependencies=[Token],
             summary="This party's own part of the trained model")
    async def model(job_id: str) -> dict[str, Any]:
        return node.model_part(job_id)

    @app.get("/v1/models", tags=["models"], dependencies=[Token],
             summary="Every trained model version at this party (and, at B, the names that serve them)")
    async def models() -> dict[str, Any]:
        listed: dict[str, Any] = {"models": registry.list_models(node)}
        if role == "B":
            listed["served"] = registry.served(node)
        return listed

    @app.get("/v1/jobs/{job_id}/scorecard", tags=["models"], dependencies=[Token],
             summary="This party's own model part as plain numbers: coefficients (standardised and raw), scaler")
    async def scorecard(job_id: str) -> dict[str, Any]:
        return registry.scorecard(node, job_id)

    if role == "B":

        @app.post("/v1/jobs", tags=["orchestration"], dependencies=[Token], status_code=201,
                  summary="Submit a job; B registers it with party A and the arbiter. A repeat with the same "
                          "Idempotency-Key returns the first job (200)")
        async def submit(spec: JobSpec, response: Response,
                         idempotency_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
            record, repeated = await coordinator.submit_once(node, spec, idempotency_key)
            if repeated:
                response.status_code = 200
                response.headers["Idempotent-Replayed"] = "true"
            return record.model_dump(mode="json")

        @app.get("/v1/jobs/{job_id}/report", tags=["orchestration"], dependencies=[Token],
                 response_class=HTMLResponse, summary="The job's HTML report: metrics, figures, privacy, timings")
        async def report(job_id: str) -> HTMLResponse:
            return HTMLResponse(await asyncio.to_thread(coordinator.report, node, job_id))

        @app.post("/v1/jobs/{job_id}/predict", tags=["orchestration"], dependencies=[Token],
                  summary="Federated prediction for IDs; party A adds its partial scores, only B sees the result")
        async def predict(job_id: str, query: PredictQuery) -> dict[str, Any]:
            with node.telemetry.prediction_seconds.labels(kind="predict").time():
                return await scoring.predict(node, job_id, query.ids, query.features)

        @app.post("/v1/jobs/{job_id}/score-batch", tags=["orchestration"], dependencies=[Token], status_code=202,
                  summary="Score a file or dataset of IDs in the background, in chunks; a repeat resumes or returns it")
        async def score_batch(job_id: str, request: BatchRequest) -> dict[str, Any]:
            return await batch.submit(node, job_id, request)

        @app.get("/v1/jobs/{job_id}/score-batch", tags=["orchestration"], dependencies=[Token],
                 summary="The job's batches and their progress")
        async def list_batches(job_id: str) -> dict[str, Any]:
            return {"batches": batch.list_batches(node, job_id)}

        @app.get("/v1/jobs/{job_id}/score-batch/{batch_id}", tags=["orchestration"], dependencies=[Token],
                 summary="A batch's state and progress")
        async def batch_status(job_id: str, batch_id: str) -> dict[str, Any]:
            return batch.status(node, job_id, batch_id)

        @app.post("/v1/jobs/{job_id}/score-batch/{batch_id}/cancel", tags=["orchestration"], dependencies=[Token],
                  summary="Stop a batch after the chunk in hand; nothing is published")
        async def cancel_batch(job_id: str, batch_id: str) -> dict[str, Any]:
            return batch.cancel(node, job_id, batch_id)

        @app.get("/v1/jobs/{job_id}/score-batch/{batch_id}/result", tags=["orchestration"], dependencies=[Token],
                 response_class=FileResponse, summary="Download a finished batch's output file")
        async def batch_result(job_id: str, batch_id: str) -> FileResponse:
            path, media_type = batch.result(node, job_id, batch_id)
            return FileResponse(path, media_type=media_type, filename=path.name)

        @app.post("/v1/models/{name}/promote", tags=["models"], dependencies=[Token],
                  summary="Serve a succeeded job under a model name (the version it served goes on its history)")
        async def promote(name: str, body: PromoteRequest) -> dict[str, Any]:
            return registry.promote(node, name, body.job_id)

        @app.post("/v1/models/{name}/rollback", tags=["models"], dependencies=[Token],
                  summary="Serve the version promoted before the current one again")
        async def rollback(name: str) -> dict[str, Any]:
            return registry.rollback(node, name)

        @app.get("/v1/models/{name}", tags=["models"], dependencies=[Token],
                 summary="The job a model name serves, its history, and that version")
        async def model_by_name(name: str) -> dict[str, Any]:
            return registry.model_info(node, name)

        @app.post("/v1/models/{name}/predict", tags=["models"], dependencies=[Token],
                  summary="Federated prediction with the version a model name serves")
        async def predict_by_name(name: str, query: PredictQuery) -> dict[str, Any]:
            job_id = registry.resolve(node, name)
            with node.telemetry.prediction_seconds.labels(kind="predict").time():
                return {"name": name, **await scoring.predict(node, job_id, query.ids, query.features)}

        @app.delete("/v1/jobs/{job_id}", tags=["models"], dependencies=[Token],
                    summary="Delete a finished, unserved job at every party; 502 'partial' names the parties left")
        async def delete(job_id: str) -> JSONResponse:
            result = await registry.delete_job(node, job_id)
            return JSONResponse(result, status_code=200 if result["status"] == "deleted" else 502)

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
            with node.telemetry.prediction_seconds.labels(kind="partial_scores").time():
                return await scoring.partial_scores(node, job_id, query.ids, caller)

        @app.get("/v1/peer/jobs/{job_id}/convergence", tags=["peer"],
                 summary="Norms of party A's weights and of their change per epoch, for party B's report")
        async def convergence(job_id: str, caller: Peer) -> dict[str, Any]:
            return scoring.convergence(node, job_id, caller)

        @app.post("/v1/peer/jobs/{job_id}/delete", tags=["peer"],
                  summary="Party B deletes the job: its folder (model, alignment, checkpoints, audit log) goes")
        async def peer_delete(job_id: str, caller: Peer) -> dict[str, str]:
            return await registry.peer_delete(node, job_id, caller)

    return app


__all__ = ["create_app"]
