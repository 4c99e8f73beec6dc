"""A scorecard job's federated binning, at a feature party: ``/v1/peer/jobs/{id}/binning...`` (party B only).

* ``POST .../binning/rows``: with several feature parties, the rows every party shares (before binning);
* ``POST .../binning``: a :class:`~vfl.protocol.binning.BinningRequest` frame (B's key and encrypted labels);
  the answer is the :class:`~vfl.protocol.binning.BinningCounts` frame. Its body is capped like a protocol
  message (``limits.max_body_bytes``): it carries one ciphertext per aligned row;
* ``POST .../binning/result``: how the fine bins merge and what B keeps; the answer is the coded width.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vfl.protocol.wire import MEDIA_TYPE
from vfl.service.http.auth import Peer
from vfl.service.http.deps import BINARY_BODY, NodeDep
from vfl.service.spec import BinningApply, TrainingStart
from vfl.service.stages import binning

#: A feature party.
router = APIRouter(tags=["peer"])


@router.post("/v1/peer/jobs/{job_id}/binning/rows", summary="Party B: the joint rows a scorecard's binning runs on")
async def rows(job_id: str, body: TrainingStart, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await binning.joint_rows(node.job(job_id), body, caller)


@router.post("/v1/peer/jobs/{job_id}/binning", openapi_extra=BINARY_BODY,
             summary="Party B's encrypted labels: masked encrypted event sums per fine bin (within the budget of "
                     "binning runs)")
async def counts(job_id: str, request: Request, caller: Peer, node: NodeDep) -> Response:
    frame = await binning.answer(node.job(job_id), await request.body(), caller)
    return Response(frame, media_type=MEDIA_TYPE)


@router.post("/v1/peer/jobs/{job_id}/binning/result",
             summary="Party B's merge of the fine bins and the characteristics it keeps; answers the coded width")
async def result(job_id: str, body: BinningApply, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await binning.apply(node.job(job_id), body, caller)
