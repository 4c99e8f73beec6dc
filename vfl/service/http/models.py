"""Model versions and names: ``GET /v1/models`` at a party with model parts; at B, names that serve versions,
and deleting a job (a version) at every party."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vfl.service.http.auth import Orchestrator
from vfl.service.http.deps import NodeDep
from vfl.service.serving import registry
from vfl.service.spec import PromoteRequest

#: A feature party and B: every model version here.
router = APIRouter(tags=["models"], dependencies=[Orchestrator])
#: Party B: names that serve versions.
label_router = APIRouter(tags=["models"], dependencies=[Orchestrator])


@router.get("/v1/models", summary="Every trained model version at this party (and, at B, the names that serve them)")
async def models(node: NodeDep) -> dict[str, Any]:
    listed: dict[str, Any] = {"models": registry.list_models(node)}
    if node.kind == "label":
        listed["served"] = registry.served(node)
    return listed


@label_router.post("/v1/models/{name}/promote",
                   summary="Serve a succeeded job under a model name (the version it served goes on its history)")
async def promote(name: str, body: PromoteRequest, node: NodeDep) -> dict[str, Any]:
    return registry.promote(node, name, body.job_id)


@label_router.post("/v1/models/{name}/rollback", summary="Serve the version promoted before the current one again")
async def rollback(name: str, node: NodeDep) -> dict[str, Any]:
    return registry.rollback(node, name)


@label_router.get("/v1/models/{name}", summary="The job a model name serves, its history, and that version")
async def model_by_name(name: str, node: NodeDep) -> dict[str, Any]:
    return registry.model_info(node, name)


@label_router.delete("/v1/jobs/{job_id}",
                     summary="Delete a finished, unserved job at every party; 502 'partial' names the parties left")
async def delete(job_id: str, node: NodeDep) -> JSONResponse:
    result = await registry.delete_job(node, job_id)
    return JSONResponse(result, status_code=200 if result["status"] == "deleted" else 502)
