"""The ledger's peer routes: ``/v1/peer/ledger/{head,sign,append}`` at every party, and a feature party's view.

Party B calls them while it writes a job's entry (:mod:`vfl.service.stages.ledger`);
each party checks what it is asked against its own copy and records
(:mod:`vfl.service.ledger_copies`). Checking signatures and chains reads files:
it runs off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vfl.service.http.auth import Peer
from vfl.service.http.deps import NodeDep
from vfl.service.ledger_copies import ledger_view, note_entries
from vfl.service.node import Node
from vfl.service.record import JobRecord

#: Every role.
router = APIRouter(tags=["peer"])
#: A feature party: its dataset name and model digest for a job's entry.
feature_router = APIRouter(tags=["peer"])


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry: dict[str, Any]


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


@router.get("/v1/peer/ledger/head", summary="This party's copy of party B's ledger: entries and last digest")
async def ledger_head(caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await asyncio.to_thread(node.ledgers.head, caller)


def _records(node: Node) -> Callable[[str], JobRecord | None]:
    def record_of(job_id: str) -> JobRecord | None:
        job = node.jobs.get(job_id)
        return None if job is None else job.record

    return record_of


@router.post("/v1/peer/ledger/sign",
             summary="Party B: sign a job's ledger entry (checked against this party's own view first)")
async def ledger_sign(body: SignRequest, caller: Peer, node: NodeDep) -> dict[str, str]:
    return await asyncio.to_thread(node.ledgers.sign, body.entry, caller, _records(node))


@router.post("/v1/peer/ledger/append",
             summary="Party B: append fully signed entries (chain and every signature checked against the CA)")
async def ledger_append(body: AppendRequest, caller: Peer, node: NodeDep) -> dict[str, Any]:
    answer = await asyncio.to_thread(node.ledgers.append, body.entries, caller, _records(node))
    # On the event loop, as every record write: only the entries this party signed touch its records.
    note_entries(node.jobs.records(), node.store, body.entries, node.ledgers.signed(caller))
    return answer


@feature_router.get("/v1/peer/jobs/{job_id}/ledger-view",
                    summary="This party's dataset name and model digest for the job's ledger entry")
async def ledger_view_route(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await asyncio.to_thread(ledger_view, node.ledgers, node.job(job_id).record, caller)
