"""Model versions and names: ``GET /v1/models`` at a party with model parts; at B, names that serve versions,
and deleting a job (a version) at every party."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vfl.api.models import Deletion, ErrorBody, ModelList, Promotion, ServedModel
from vfl.service.http.auth import Orchestrator
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.serving import registry
from vfl.service.spec import PromoteRequest

#: A feature party and B: every model version here.
router = APIRouter(tags=["models"], dependencies=[Orchestrator])
#: Party B: names that serve versions.
label_router = APIRouter(tags=["models"], dependencies=[Orchestrator])


TYPED: dict[str, Any] = {"response_model_exclude_unset": True}


@router.get("/v1/models", summary="Every trained model version at this party (and, at B, the names that serve them)",
            response_model=ModelList, responses=errors(*AUTH), **TYPED)
async def models(node: NodeDep) -> dict[str, Any]:
    listed: dict[str, Any] = {"models": registry.list_models(node)}
    if node.kind == "label":
        listed["served"] = registry.served(node)
    return listed


@label_router.post("/v1/models/{name}/promote",
                   summary="Serve a succeeded job under a model name (the version it served goes on its history)",
                   response_model=Promotion, responses=errors(*AUTH, 404, 409, 422), **TYPED)
async def promote(name: str, body: PromoteRequest, node: NodeDep) -> dict[str, Any]:
    return registry.promote(node, name, body.job_id)


@label_router.post("/v1/models/{name}/rollback", summary="Serve the version promoted before the current one again",
                   response_model=Promotion, responses=errors(*AUTH, 404, 409, 422), **TYPED)
async def rollback(name: str, node: NodeDep) -> dict[str, Any]:
    return registry.rollback(node, name)


@label_router.get("/v1/models/{name}", summary="The job a model name serves, its history, and that version",
                  response_model=ServedModel, responses=errors(*AUTH, 404, 409, 422), **TYPED)
async def model_by_name(name: str, node: NodeDep) -> dict[str, Any]:
    return registry.model_info(node, name)


@label_router.delete("/v1/jobs/{job_id}",
                     summary="Delete a finished, unserved job at every party; 502 'partial' names the parties left",
                     response_model=Deletion, **TYPED,
                     responses={200: {"description": "Deleted at every party (status 'deleted')"},
                                502: {"model": Deletion | ErrorBody,  # type: ignore[dict-item]
                                      "description": "Deleted at some parties only (status 'partial', the "
                                                     "parties left in 'pending'; delete again to retry them), "
                                                     "or a peer could not be reached at all (the error body)"},
                                **errors(*AUTH, 404, 409, 422)})
async def delete(job_id: str, node: NodeDep) -> JSONResponse:
    result = Deletion.model_validate(await registry.delete_job(node, job_id))
    return JSONResponse(result.model_dump(mode="json", exclude_unset=True),
                        status_code=200 if result.status == "deleted" else 502)
