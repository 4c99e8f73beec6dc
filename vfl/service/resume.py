"""Resuming a job from checkpoints: party B coordinates, A and C restore on its word.

A restarted service raises the job's generation at once, so messages still in
flight for the old one are dropped as stale, and tells party B (or, if it is
B, acts itself). B asks A and C which epochs they have checkpoints for, takes
the newest all three can read, and restores itself, then C, then A, which
starts the next epoch. Batches are seeded, masks come from checkpointed seeds
and arithmetic is exact, so the job ends with the same model as an
uninterrupted run. ``POST /v1/jobs/{id}/resume`` on B does the same by hand.

A job stopped during alignment resumes its PSI instead: every party keeps the
finished buckets of each pair (:mod:`psi.buckets`), so B starts new sessions
(fresh RSA keys) at the first bucket not finished at both ends, and the
intersection and its order come out as without the stop.

A resume cannot be forced for gain: a peer's "I restarted" counts only if its
generation moved on, each service allows ``limits.max_resumes`` per job, and
the arbiter serves an already-decrypted slot again only with the same value
(:mod:`vfl.protocol.arbiter`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from vfl.crypto.keys import PrivateKey
from vfl.data.table import PartyTable
from vfl.errors import ConfigError, JobCancelled, JobError, PeerNotAllowed, PeerRefused, VFLError
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.label_party import LabelParty
from vfl.service import alignment, coordinator
from vfl.service.spec import ResumeRequest
from vfl.service.store import JobRecord

if TYPE_CHECKING:
    from vfl.service.node import Node, TrainingRole

log = logging.getLogger("vfl.service")


async def resume(node: Node, job_id: str) -> JobRecord:
    """Orchestration call: continue a running or failed job from the newest common checkpoint."""
    if node.party != "B":
        raise ConfigError("resume the job at party B, which coordinates it")
    record = node.record(job_id)
    if record.state in ("succeeded", "cancelled", "damaged"):
        raise JobError(f"job {job_id} {record.state_phrase()}; there is nothing to resume")
    start_resume(node, record, "resume requested")
    return record


async def peer_interrupted(node: Node, job_id: str, caller: str, reason: str, generation: int) -> None:
    """A restarted peer reports that it lost its place in the job.

    Accepted only with evidence of a real restart: a restarted service fences
    the job by moving its generation past the one the job runs under. Each
    resume also counts against ``limits.max_resumes``; and whatever a peer
    claims, the arbiter decrypts no slot twice with different values.
    """
    record = node.record(job_id)
    if caller not in record.peers.values():
        raise PeerNotAllowed(f"{caller!r} takes no part in job {job_id}")
    if record.state == "cancelled":  # cancelled while the caller was down: it must drop the job too
        raise JobCancelled(f"job {job_id} was cancelled while {caller!r} was down")
    if record.state in ("succeeded", "damaged"):
        raise JobError(f"job {job_id} {record.state_phrase()} at party B; there is nothing to resume")
    if generation <= record.generation:
        raise JobError(
            f"{caller!r} reports a restart, but its generation {generation} has not moved past the job's "
            f"{record.generation}: a restarted service always moves it on, so this is no restart"
        )
    start_resume(node, record, reason)


def check_resume_budget(node: Node, record: JobRecord) -> None:
    limit = node.config.limits.max_resumes
    if record.resumes >= limit:
        raise JobError(
            f"job {record.job_id} has resumed {record.resumes} times, the most this service allows "
            f"(limits.max_resumes = {limit}); submit it again"
        )


def start_resume(node: Node, record: JobRecord, reason: str) -> None:
    if record.job_id in node.coordinating:
        return  # a resume is asking the parties right now; it will see this one too
    check_resume_budget(node, record)
    current = node.drivers.get(record.job_id)
    if current is not None:
        current.cancel()
    node.coordinating.add(record.job_id)
    loop = asyncio.get_running_loop()
    if node.store.load_alignment(record.job_id) is None:
        node.save(record, state="aligning", stage="resuming", error=None)
        node.drivers[record.job_id] = loop.create_task(resume_alignment(node, record, reason))
        return
    node.save(record, state="training", stage="resuming", error=None)
    node.drivers[record.job_id] = loop.create_task(resume_and_finish(node, record, reason))


async def resume_alignment(node: Node, record: JobRecord, reason: str) -> None:
    """Party B: continue an alignment cut short, each pair from its first bucket not finished at both ends."""
    log.warning("job %s: resuming the alignment (%s)", record.job_id, reason)
    try:
        roster = node.roster(record)
        others = [*roster.features, roster.arbiter]
        answers = await asyncio.gather(*(
            node.client.call_json(record.peers[pid], "GET", f"/v1/peer/jobs/{record.job_id}/checkpoints")
            for pid in others
        ))
        generation = max(record.generation, *(int(a["generation"]) for a in answers)) + 1
        node.save(record, generation=generation, resumes=record.resumes + 1)
        table = await asyncio.to_thread(node.table, record.dataset, node.training_config(record).model)
        await node.fresh_runtime(record)
    except asyncio.CancelledError:
        raise
    except VFLError as exc:
        node.coordinating.discard(record.job_id)
        await node.fail(record.job_id, f"could not resume the alignment: {type(exc).__name__}: {exc}")
        return
    path = f"/v1/peer/jobs/{record.job_id}/resume"

    async def new_sessions() -> None:
        """Once B's requesters wait for them: the arbiter moves on, each feature party starts a new PSI session."""
        try:
            body = ResumeRequest(epoch=-1, generation=generation, psi_bucket=0).model_dump()
            await node.client.call_json(record.peers[roster.arbiter], "POST", path, body)
            await asyncio.gather(*(
                node.client.call_json(record.peers[pid], "POST", path, ResumeRequest(
                    epoch=-1, generation=generation,
                    psi_bucket=alignment.finished_buckets(node, record, record.peers[pid])).model_dump())
                for pid in roster.features
            ))
            log.warning("job %s: alignment resumed under generation %d", record.job_id, generation)
        finally:
            node.coordinating.discard(record.job_id)

    try:
        await coordinator.drive(node, record, table, ready=new_sessions)
    finally:
        node.coordinating.discard(record.job_id)


async def resume_and_finish(node: Node, record: JobRecord, reason: str) -> None:
    started = time.perf_counter()
    try:
        role, aligned = await coordinate_resume(node, record, reason)
    except asyncio.CancelledError:
        raise
    except VFLError as exc:
        await node.fail(record.job_id, f"could not resume: {type(exc).__name__}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001
        log.exception("job %s: resume crashed", record.job_id)
        await node.fail(record.job_id, f"internal error while resuming: {exc!r}")
        return
    finally:
        node.coordinating.discard(record.job_id)
    try:
        await coordinator.finish(node, record, role, aligned, started)
    except asyncio.CancelledError:
        raise
    except VFLError as exc:
        await node.fail(record.job_id, f"{type(exc).__name__}: {exc}")


async def coordinate_resume(node: Node, record: JobRecord, reason: str) -> tuple[LabelParty, PartyTable]:
    """Ask every feature party and C for their checkpoints, pick the newest common epoch, restore B, C, then the feature parties."""
    log.warning("job %s: resuming (%s)", record.job_id, reason)
    roster = node.roster(record)
    others = [*roster.features, roster.arbiter]
    answers = await asyncio.gather(*(
        node.client.call_json(record.peers[pid], "GET", f"/v1/peer/jobs/{record.job_id}/checkpoints")
        for pid in others
    ))
    infos = dict(zip(others, answers))
    common = set(node.store.checkpoints(record.job_id))
    for info in infos.values():
        common &= set(info["epochs"])
    if not common:
        everyone = "all three parties" if roster.k == 1 else f"all {roster.k + 2} parties"
        raise JobError(f"no epoch is checkpointed at {everyone}; submit the job again")
    epoch = max(common)
    generation = max(record.generation, *(int(i["generation"]) for i in infos.values())) + 1
    node.save(record, generation=generation, resumes=record.resumes + 1, stage="resuming")
    aligned = await asyncio.to_thread(node.aligned_table, record)
    config = node.training_config(record)
    role = await asyncio.to_thread(node.party_role, record, config, aligned)
    role.load_state_dict(node.store.load_checkpoint(record.job_id, epoch))
    runtime = await node.fresh_runtime(record)
    node.done[record.job_id] = asyncio.Event()
    await runtime.add_role("train", role)  # ready before A's first message
    body = ResumeRequest(epoch=epoch, generation=generation).model_dump()
    path = f"/v1/peer/jobs/{record.job_id}/resume"
    await node.client.call_json(record.peers[roster.arbiter], "POST", path, body)
    await asyncio.gather(*(node.client.call_json(record.peers[pid], "POST", path, body) for pid in roster.features))
    del record.loss_history[epoch + 1 :]
    del record.validation_loss_history[epoch + 1 :]
    node.save(record, state="training", stage="training", epoch=epoch + 1)
    node.training_started(record, len(aligned), resumed_from=epoch)
    await runtime.post(role.resume())
    if role.done:
        node.done[record.job_id].set()
    return role, aligned


async def report_interruption(node: Node, record: JobRecord) -> None:
    """A restarted A or C asks B to resume the job (retrying while B is unreachable)."""
    try:
        await node.client.call_json(
            record.peers[node.roster(record).label],
            "POST",
            f"/v1/peer/jobs/{record.job_id}/interrupted",
            {"reason": f"party {node.party} ({node.config.party.id}) restarted", "generation": record.generation},
        )
    except PeerRefused as exc:
        if exc.error == "JobCancelled":  # cancelled while we were down: drop it (and its checkpoints) too
            await node.fail(
                record.job_id, f"cancelled at party B while this party was down: {exc}", notify=False, state="cancelled"
            )
        else:
            await node.fail(record.job_id, f"restarted, and party B would not resume the job: {exc}", notify=False)
    except VFLError as exc:
        await node.fail(record.job_id, f"restarted, and could not reach party B to resume: {exc}", notify=False)


def checkpoint_info(node: Node, job_id: str, caller: str) -> dict[str, Any]:
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    return {"epochs": node.store.checkpoints(job_id), "generation": record.generation, "state": record.state}


async def resume_role(node: Node, job_id: str, request: ResumeRequest, caller: str) -> JobRecord:
    """B's instruction: restore the state after ``request.epoch`` and continue under a new generation."""
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    if record.state == "cancelled":
        raise JobError(f"job {job_id} was cancelled here; it cannot resume")
    if request.generation <= record.generation:
        raise JobError(f"job {job_id} is already at generation {record.generation} here; a resume must move it on")
    check_resume_budget(node, record)
    if request.psi_bucket is not None:
        return await _resume_alignment_here(node, record, request)
    state = node.store.load_checkpoint(job_id, request.epoch)
    if node.party == "C":
        key = PrivateKey.from_dict(state["private_key"])
        role: TrainingRole = await asyncio.to_thread(node.arbiter_role, record, record.n_rows, (key.public_key, key))
    else:
        aligned = await asyncio.to_thread(node.aligned_table, record)
        role = await asyncio.to_thread(node.party_role, record, node.training_config(record), aligned)
    role.load_state_dict(state)
    if isinstance(role, Arbiter):
        # Everything released before, also after this checkpoint: a resumed slot gets the same value or nothing.
        role.remember(node.store.load_ledger(job_id))
    node.save(
        record,
        generation=request.generation,
        state="training",
        stage="training",
        error=None,
        epoch=request.epoch + 1,
        resumes=record.resumes + 1,
    )
    runtime = await node.fresh_runtime(record)
    node.training_started(record, record.n_rows or 0, resumed_from=request.epoch)
    await runtime.add_role("train", role, role.resume())
    return record


async def _resume_alignment_here(node: Node, record: JobRecord, request: ResumeRequest) -> JobRecord:
    """B's instruction during alignment: a feature party starts a new PSI session; the arbiter only moves on."""
    if node.store.load_alignment(record.job_id) is not None and node.party == "A":
        raise JobError(f"job {record.job_id} is aligned here already; resume it from a training checkpoint")
    node.save(record, generation=request.generation, error=None, resumes=record.resumes + 1,
              state="aligning" if node.party == "A" else "pending", stage="psi" if node.party == "A" else "registered")
    runtime = await node.fresh_runtime(record)
    log.warning("job %s: resuming the alignment at PSI bucket %d (generation %d)", record.job_id,
                request.psi_bucket, request.generation)
    if node.party == "A":
        node.psi_done.pop(record.job_id, None)
        await alignment.serve_as_key_holder(node, record, runtime, int(record.spec["psi"]["key_bits"]),
                                            resume_bucket=request.psi_bucket)
    return record
