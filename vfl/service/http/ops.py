"""Operations: ``GET /v1/health`` (liveness, no token) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from vfl.api.models import Health
from vfl.service.http.auth import Scraper
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.telemetry import CONTENT_TYPE

router = APIRouter()


@router.get("/v1/health", tags=["orchestration"], summary="Liveness: this service is up (no token)",
            response_model=Health, response_model_exclude_unset=True)
async def health(node: NodeDep) -> dict[str, Any]:
    return {"status": "ok", "party": node.me, "role": node.config.party.role}


@router.get("/metrics", tags=["monitoring"], dependencies=[Scraper], response_class=Response,
            summary="Prometheus metrics (the orchestration token or [metrics] scrape_token)",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus' text format"},
                       **errors(*AUTH)})
async def metrics(node: NodeDep) -> Response:
    return Response(node.telemetry.exposition(), media_type=CONTENT_TYPE)
