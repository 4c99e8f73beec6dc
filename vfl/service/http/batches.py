"""Party B's batch scoring: ``/v1/jobs/{id}/score-batch`` (start or resume, list, status, cancel, result)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vfl.api.models import BatchList, BatchStatus
from vfl.service.http.auth import Orchestrator
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.serving import batch
from vfl.service.spec import BatchRequest

router = APIRouter(tags=["orchestration"], dependencies=[Orchestrator])


@router.post("/v1/jobs/{job_id}/score-batch", status_code=202,
             summary="Score a file or dataset of IDs in the background, in chunks; a repeat resumes or returns it",
             response_model=BatchStatus, response_model_exclude_unset=True,
             responses=errors(*AUTH, 404, 409, 422))
async def score_batch(job_id: str, request: BatchRequest, node: NodeDep) -> dict[str, Any]:
    return await batch.submit(node.job(job_id), request)


@router.get("/v1/jobs/{job_id}/score-batch", summary="The job's batches and their progress",
            response_model=BatchList, response_model_exclude_unset=True, responses=errors(*AUTH, 404, 409))
async def list_batches(job_id: str, node: NodeDep) -> dict[str, Any]:
    return {"batches": batch.list_batches(node.job(job_id))}


@router.get("/v1/jobs/{job_id}/score-batch/{batch_id}", summary="A batch's state and progress",
            response_model=BatchStatus, response_model_exclude_unset=True, responses=errors(*AUTH, 404, 409))
async def batch_status(job_id: str, batch_id: str, node: NodeDep) -> dict[str, Any]:
    return batch.status(node.job(job_id), batch_id)


@router.post("/v1/jobs/{job_id}/score-batch/{batch_id}/cancel",
             summary="Stop a batch after the chunk in hand; nothing is published",
             response_model=BatchStatus, response_model_exclude_unset=True, responses=errors(*AUTH, 404, 409))
async def cancel_batch(job_id: str, batch_id: str, node: NodeDep) -> dict[str, Any]:
    return batch.cancel(node.job(job_id), batch_id)


@router.get("/v1/jobs/{job_id}/score-batch/{batch_id}/result", response_class=FileResponse,
            summary="Download a finished batch's output file",
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                             "description": "The output file (CSV or Parquet)"}, **errors(*AUTH, 404, 409)})
async def batch_result(job_id: str, batch_id: str, node: NodeDep) -> FileResponse:
    path, media_type = batch.result(node.job(job_id), batch_id)
    return FileResponse(path, media_type=media_type, filename=path.name)
