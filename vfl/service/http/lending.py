"""Multi-lender queries over HTTP: a lender's tag set and blind signatures (peer routes), a querier's fan-out.

The protocol is :mod:`vfl.lending`; the service that keeps its state is
:mod:`vfl.service.lending`. A party that is not a lender answers its peer
routes 404 (:class:`~vfl.errors.NotServedHere`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vfl.errors import NotServedHere
from vfl.api.models import LendingAnswer, LendingStatus, TagSetSummary
from vfl.service.http.auth import Orchestrator, Peer
from vfl.service.http.contract import AUTH, errors
from vfl.service.http.deps import NodeDep
from vfl.service.lending import BLIND_SIGN_PATH, TAG_SET_PATH
from vfl.service.lending.lender import Lender
from vfl.service.node import Node
from vfl.service.spec import EntityId

router = APIRouter()

#: A blinded value is below the lender's modulus, whose size the querier checks against limits.max_key_bits.
MAX_BLINDED_HEX = 8192 // 4


class BlindSignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(description="the key id of the tag set the values were blinded for")
    values: list[Annotated[str, StringConstraints(max_length=MAX_BLINDED_HEX)]] = Field(description="blinded values FDH(id)·r^e mod n, hexadecimal")


class LendingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[EntityId | Annotated[int, Field(ge=-(10**18), le=10**18)]] = Field(description="the applicants' IDs (compared as exact text, as in the PSI)")
    answer: Literal["lenders", "count"] = Field(
        "lenders", description='"lenders": which lenders hold each ID; "count": only how many')
    lenders: list[str] | None = Field(None, description="ask only these of the configured lenders (default: all)")


def _lender(node: Node) -> Lender:
    if not node.config.lending.enabled:
        raise NotServedHere(f"party {node.me!r} is not a lender ([lending] enabled = false)")
    return node.lending.lender


@router.get(TAG_SET_PATH, tags=["peer"],
            summary="A lender's current tag set: key id, public key, rotation time, size and the shuffled tags")
async def tag_set(caller: Peer, node: NodeDep) -> dict[str, Any]:
    return _lender(node).tag_set_for(caller)


@router.post(BLIND_SIGN_PATH, tags=["peer"],
             summary="A lender signs blinded values under its current key (within the querier's budget and rate)")
async def blind_sign(body: BlindSignRequest, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await _lender(node).blind_sign(caller, body.key_id, body.values)


@router.post("/v1/lending-query", tags=["lending"], dependencies=[Orchestrator],
             summary="Ask every configured lender at once whether it lends to these IDs, without revealing them",
             response_model=LendingAnswer, response_model_exclude_unset=True,
             responses=errors(*AUTH, 404, 409, 413, 422, 429, 502))
async def lending_query(body: LendingQuery, node: NodeDep) -> dict[str, Any]:
    return await node.lending.queries.query(body.ids, body.answer, body.lenders)


@router.get("/v1/lending", tags=["lending"], dependencies=[Orchestrator],
            summary="This party's lending state: its tag set and queriers' budgets, the lenders it asks",
            response_model=LendingStatus, response_model_exclude_unset=True, responses=errors(*AUTH))
async def lending_status(node: NodeDep) -> dict[str, Any]:
    return node.lending.status()


@router.post("/v1/lending/rotate", tags=["lending"], dependencies=[Orchestrator],
             summary="A lender publishes a new tag set under a new key now (after its borrower list changed)",
             response_model=TagSetSummary, response_model_exclude_unset=True, responses=errors(*AUTH, 404, 409))
async def rotate(node: NodeDep) -> dict[str, Any]:
    return (await _lender(node).rotate("rotated by an orchestration call")).summary()
