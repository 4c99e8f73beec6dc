"""What peers ask of a job: ``/v1/peer/jobs...`` (protocol messages, probes, notices, registration, resumes).

Every route knows its caller by party id (:data:`~vfl.service.http.auth.Peer`);
the function it calls checks that the caller plays the part the route expects
in that job. A peer's error answers never carry our local paths
(:mod:`vfl.service.http.errors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vfl.service import watchdog
from vfl.service.http.auth import Peer
from vfl.service.http.deps import BINARY_BODY, NodeDep
from vfl.service.redact import local_paths, redact
from vfl.service.serving import registry, scoring, timings
from vfl.service.spec import (
    FailureNotice,
    InterruptionNotice,
    PartialScoreQuery,
    Registration,
    ResumeRequest,
    TrainingStart,
)
from vfl.service.stages import accept, resume, stop

#: Every role.
router = APIRouter(tags=["peer"])
#: Party B: a restarted peer asks it to resume.
label_router = APIRouter(tags=["peer"])
#: A feature party and the arbiter: what B asks to set a job up, restore it and close it.
accept_router = APIRouter(tags=["peer"])
#: A feature party: its partial scores and its convergence summary, for B.
feature_router = APIRouter(tags=["peer"])


@router.post("/v1/peer/jobs/{job_id}/messages/{kind}", openapi_extra=BINARY_BODY,
             summary="A protocol message (binary frame) from a peer")
async def message(job_id: str, kind: str, request: Request, caller: Peer, node: NodeDep,
                  generation: int = 0) -> JSONResponse:
    outcome = await node.job(job_id).receive(caller, await request.body(), kind, generation)
    return JSONResponse({"status": outcome}, status_code=202 if outcome == "accepted" else 200)


@router.get("/v1/peer/jobs/{job_id}/state", summary="Is the job alive here (for peers' watchdogs)")
async def peer_state(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    job = node.job(job_id)
    state = watchdog.probe_answer(job.record, caller, job.job.runtime)
    if state.get("error"):  # our record's reason, as a peer may read it
        state["error"] = redact(state["error"], local_paths(node.config))
    return state


@router.post("/v1/peer/jobs/{job_id}/fail", summary="A peer reports that the job failed there")
async def peer_failed(job_id: str, notice: FailureNotice, caller: Peer, node: NodeDep) -> dict[str, str]:
    await stop.peer_stopped(node.job(job_id), caller, notice.reason, cancelled=False, generation=notice.generation)
    return {"status": "failed"}


@router.post("/v1/peer/jobs/{job_id}/cancel", summary="A peer cancelled the job")
async def peer_cancelled(job_id: str, notice: FailureNotice, caller: Peer, node: NodeDep) -> dict[str, str]:
    await stop.peer_stopped(node.job(job_id), caller, notice.reason, cancelled=True, generation=notice.generation)
    return {"status": "cancelled"}


@label_router.post("/v1/peer/jobs/{job_id}/interrupted",
                   summary="A restarted peer lost its place in the job: party B resumes it")
async def interrupted(job_id: str, notice: InterruptionNotice, caller: Peer, node: NodeDep) -> dict[str, str]:
    await resume.peer_interrupted(node, job_id, caller, notice.reason, notice.generation)
    return {"status": "resuming"}


@accept_router.post("/v1/peer/jobs", status_code=201, summary="Party B registers a job")
async def register(body: Registration, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return (await accept.register(node, body, caller)).peer_view()


@accept_router.post("/v1/peer/jobs/{job_id}/forget", summary="Party B withdraws a registration")
async def forget(job_id: str, notice: FailureNotice, caller: Peer, node: NodeDep) -> dict[str, str]:
    await accept.forget(node, job_id, caller)
    return {"status": "forgotten"}


@accept_router.post("/v1/peer/jobs/{job_id}/start", summary="Party B starts training (at the arbiter: it makes the key pair)")
async def start(job_id: str, body: TrainingStart, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return (await accept.start_training(node.job(job_id), body, caller)).peer_view()


@accept_router.get("/v1/peer/jobs/{job_id}/checkpoints", summary="Epochs this party can resume from")
async def checkpoints(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return resume.checkpoint_info(node.job(job_id), caller)


@accept_router.post("/v1/peer/jobs/{job_id}/resume", summary="Party B: continue from a checkpoint")
async def resume_role(job_id: str, body: ResumeRequest, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return (await resume.resume_role(node.job(job_id), body, caller)).peer_view()


@accept_router.get("/v1/peer/jobs/{job_id}/timings",
                   summary="This party's durations per stage of the job, and training's compute and waiting "
                           "(rounded to 0.1 s), for party B's job page")
async def peer_timings(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return timings.peer_answer(node.job(job_id), caller)


@accept_router.post("/v1/peer/jobs/{job_id}/finished", summary="Party B has the final model: drop checkpoints")
async def finished(job_id: str, notice: FailureNotice, caller: Peer, node: NodeDep) -> dict[str, str]:
    await accept.finished(node.job(job_id), caller)
    return {"status": "done"}


@accept_router.post("/v1/peer/jobs/{job_id}/delete",
                    summary="Party B asks to delete the job: this party keeps its record and audit log, and its data "
                            "files as its [retention] peer_delete says")
async def peer_delete(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return await registry.peer_delete(node, job_id, caller)


@feature_router.post("/v1/peer/jobs/{job_id}/scores",
                     summary="Party A's plaintext partial scores u_A for IDs, for party B only")
async def scores(job_id: str, query: PartialScoreQuery, caller: Peer, node: NodeDep) -> dict[str, Any]:
    with node.telemetry.prediction_seconds.labels(kind="partial_scores").time():
        return await scoring.partial_scores(node.job(job_id), query.ids, caller, query.evaluation)


@feature_router.get("/v1/peer/jobs/{job_id}/convergence",
                    summary="Norms of party A's weights and of their change per epoch, for party B's report")
async def convergence(job_id: str, caller: Peer, node: NodeDep) -> dict[str, Any]:
    return scoring.convergence(node.job(job_id), caller)
