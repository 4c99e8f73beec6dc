"""Orchestration on jobs: ``/v1/jobs`` and ``/v1/jobs/{id}`` (list, status, cancel; at B submit, report,
resume; at a party with a model part, the part itself and its scorecard). Deleting a job is a model registry
operation (:mod:`.models`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import HTMLResponse

from vfl.api.models import JobList, JobStatus, ModelPart, Scorecard, Stability
from vfl.service.http.auth import Orchestrator
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.serving import common, registry, stability
from vfl.service.spec import JobSpec
from vfl.service.stages import evaluate, stop
from vfl.service.stages.resume import resume_job
from vfl.service.stages.submit import submit_once

#: Every role.
router = APIRouter(tags=["orchestration"], dependencies=[Orchestrator])
#: Party B, which submits, evaluates and owns the jobs.
label_router = APIRouter(tags=["orchestration"], dependencies=[Orchestrator])
#: The parties that hold a model part (a feature party and B).
parts_router = APIRouter(dependencies=[Orchestrator])


#: Every answer goes through its model without adding the fields a route did not send (the JSON stays as it was).
TYPED: dict[str, Any] = {"response_model_exclude_unset": True}


@router.get("/v1/jobs", summary="Every job this service knows", response_model=JobList, responses=errors(*AUTH),
            **TYPED)
async def list_jobs(node: NodeDep) -> dict[str, Any]:
    # Without each job's event log (up to 500 lines): the list is polled every second by the dashboard, and
    # only a job's own answer (GET /v1/jobs/{id}) needs its events.
    return {"jobs": [{k: v for k, v in node.status(r).items() if k != "events"} for r in node.jobs.records()]}


@router.get("/v1/jobs/{job_id}", summary="A job's state, stage, epoch, losses, metrics and error",
            response_model=JobStatus, responses=errors(*AUTH, 404), **TYPED)
async def job_status(job_id: str, node: NodeDep) -> dict[str, Any]:
    return node.status(node.job(job_id).record)


@router.get("/v1/jobs/{job_id}/stability",
            summary="A scorecard job's stability at this party (its own values only): party B the score's PSI, "
                    "a feature party its characteristics' CSI; status at 0.1 and 0.25",
            response_model=Stability, responses=errors(*AUTH, 404, 409, 422), **TYPED)
async def job_stability(job_id: str, node: NodeDep) -> dict[str, Any]:
    return stability.stability(node.job(job_id))


@router.post("/v1/jobs/{job_id}/cancel", summary="Cancel a job at every party; a finished job answers 409",
             response_model=JobStatus, responses=errors(*AUTH, 404, 409), **TYPED)
async def cancel(job_id: str, node: NodeDep) -> dict[str, Any]:
    return (await stop.cancel(node.job(job_id))).model_dump(mode="json")


@label_router.post("/v1/jobs", status_code=201,
                   summary="Submit a job; B registers it with party A and the arbiter. A repeat with the same "
                           "Idempotency-Key returns the first job (200)",
                   response_model=JobStatus, **TYPED,
                   responses={200: {"model": JobStatus, "description": "A repeat of an earlier submit with the "
                                    "same Idempotency-Key and spec: the first job (header Idempotent-Replayed: true)"},
                              201: {"description": "The job, registered at every party (state pending)"},
                              **errors(*AUTH, 404, 409, 413, 422, 429, 502)})
async def submit(spec: JobSpec, response: Response, node: NodeDep,
                 idempotency_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    record, repeated = await submit_once(node, spec, idempotency_key)
    if repeated:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return record.model_dump(mode="json")


@label_router.get("/v1/jobs/{job_id}/report", response_class=HTMLResponse, responses=errors(*AUTH, 404, 409),
                  summary="The job's HTML report: metrics, figures, privacy, timings")
async def report(job_id: str, node: NodeDep) -> HTMLResponse:
    return HTMLResponse(await asyncio.to_thread(evaluate.report, node.job(job_id)))


@label_router.post("/v1/jobs/{job_id}/resume",
                   summary="Continue a running or failed job from the newest checkpoint all parties share",
                   response_model=JobStatus, responses=errors(*AUTH, 404, 409, 502), **TYPED)
async def resume(job_id: str, node: NodeDep) -> dict[str, Any]:
    return (await resume_job(node, job_id)).model_dump(mode="json")


@parts_router.get("/v1/jobs/{job_id}/model", tags=["orchestration"],
                  summary="This party's own part of the trained model",
                  response_model=ModelPart, responses=errors(*AUTH, 404, 409), **TYPED)
async def model(job_id: str, node: NodeDep) -> dict[str, Any]:
    return common.model_part(node.job(job_id))


@parts_router.get("/v1/jobs/{job_id}/scorecard", tags=["models"],
                  summary="This party's own model part as plain numbers: coefficients (standardised and raw), scaler",
                  response_model=Scorecard, responses=errors(*AUTH, 404, 409, 422), **TYPED)
async def scorecard(job_id: str, node: NodeDep) -> dict[str, Any]:
    return registry.scorecard(node, job_id)
