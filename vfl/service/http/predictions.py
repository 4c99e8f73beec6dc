"""Party B's federated predictions: ``POST /v1/jobs/{id}/predict`` and ``POST /v1/models/{name}/predict``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vfl.api.models import Predictions
from vfl.service.http.auth import Orchestrator
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.serving import registry, scoring
from vfl.service.spec import PredictQuery

router = APIRouter(dependencies=[Orchestrator])


@router.post("/v1/jobs/{job_id}/predict", tags=["orchestration"],
             summary="Federated prediction for IDs; party A adds its partial scores, only B sees the result",
             response_model=Predictions, response_model_exclude_unset=True,
             responses=errors(*AUTH, 404, 409, 413, 422, 429, 502))
async def predict(job_id: str, query: PredictQuery, node: NodeDep) -> dict[str, Any]:
    with node.telemetry.prediction_seconds.labels(kind="predict").time():
        return await scoring.predict(node.job(job_id), query.ids, query.features)


@router.post("/v1/models/{name}/predict", tags=["models"],
             summary="Federated prediction with the version a model name serves",
             response_model=Predictions, response_model_exclude_unset=True,
             responses=errors(*AUTH, 404, 409, 413, 422, 429, 502))
async def predict_by_name(name: str, query: PredictQuery, node: NodeDep) -> dict[str, Any]:
    job_id = registry.resolve(node, name)
    with node.telemetry.prediction_seconds.labels(kind="predict").time():
        return {"name": name, **await scoring.predict(node.job(job_id), query.ids, query.features)}
