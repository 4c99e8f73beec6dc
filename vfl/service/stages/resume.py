"""Resuming a job from checkpoints: party B coordinates, the feature parties and the arbiter restore on its word.

A restarted service raises the job's generation at once, so messages still in
flight for the old one are dropped as stale, and tells party B (or, if it is B,
acts itself). B asks every other party which epochs it has checkpoints for,
takes the newest all of them can read, and restores itself, then C, then the
feature parties, which start the next epoch. Batches are seeded, masks come
from checkpointed seeds and arithmetic is exact, so the job ends with the same
model as an uninterrupted run. ``POST /v1/jobs/{id}/resume`` on B does the same
by hand.

A job stopped during alignment resumes its PSI instead: every party keeps the
finished buckets of each pair (:mod:`psi.buckets`), so B starts new sessions
(fresh RSA keys) at the first bucket not finished at both ends, and the
intersection and its order come out as without the stop.

A resume cannot be forced for gain: a peer's "I restarted" counts only if its
generation moved on, each service allows ``limits.max_resumes`` per job, and
the arbiter serves an already-decrypted slot again only with the same value
(:mod:`vfl.protocol.arbiter`).

B's pipeline (:mod:`vfl.service.stages.pipeline`) calls :func:`restart`, which
agrees on where to continue and names the stage the pipeline restarts at.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vfl.crypto.keys import PrivateKey
from vfl.errors import ConfigError, JobCancelled, JobError, PeerRefused, VFLError
from vfl.protocol.arbiter import Arbiter
from vfl.service.context import JobContext, ServiceContext
from vfl.service.lifecycle import JobState, Stage
from vfl.service.psi_roles import finished_buckets, start_key_holder
from vfl.service.record import JobRecord
from vfl.service.spec import ResumeRequest
from vfl.service.training_roles import arbiter_role, party_role, training_started

log = logging.getLogger("vfl.service")


# -- party B ------------------------------------------------------------------------------------------------


async def resume_job(service: ServiceContext, job_id: str) -> JobRecord:
    """Orchestration call: continue a running or failed job from the newest common checkpoint."""
    if service.kind != "label":
        raise ConfigError("resume the job at party B, which coordinates it")
    ctx = service.job(job_id)
    if ctx.record.state in ("succeeded", "cancelled", "damaged"):
        raise JobError(f"job {job_id} {ctx.record.state_phrase()}; there is nothing to resume")
    begin(service, ctx, "resume requested")
    return ctx.record


async def peer_interrupted(service: ServiceContext, job_id: str, caller: str, reason: str, generation: int) -> None:
    """A restarted peer reports that it lost its place in the job.

    Accepted only with evidence of a real restart: a restarted service fences
    the job by moving its generation past the one the job runs under. Each
    resume also counts against ``limits.max_resumes``; and whatever a peer
    claims, the arbiter decrypts no slot twice with different values.
    """
    ctx = service.job(job_id)
    record = ctx.record
    record.takes_part(caller)
    if record.state == "cancelled":  # cancelled while the caller was down: it must drop the job too
        raise JobCancelled(f"job {job_id} was cancelled while {caller!r} was down")
    if record.state in ("succeeded", "damaged"):
        raise JobError(f"job {job_id} {record.state_phrase()} at party B; there is nothing to resume")
    if generation <= record.generation:
        raise JobError(
            f"{caller!r} reports a restart, but its generation {generation} has not moved past the job's "
            f"{record.generation}: a restarted service always moves it on, so this is no restart"
        )
    begin(service, ctx, reason)


def check_budget(ctx: JobContext) -> None:
    limit = ctx.config.limits.max_resumes
    if ctx.record.resumes >= limit:
        raise JobError(f"job {ctx.record.job_id} has resumed {ctx.record.resumes} times, the most this service "
                       f"allows (limits.max_resumes = {limit}); submit it again")


def begin(service: ServiceContext, ctx: JobContext, reason: str) -> None:
    """Party B: mark the job resuming and restart its pipeline (unless a resume is asking the parties already)."""
    if ctx.job.coordinating:
        return  # a resume is asking the parties right now; it will see this one too
    check_budget(ctx)
    ctx.job.coordinating = True
    aligned = ctx.store.load_alignment(ctx.record.job_id) is not None
    ctx.advance(Stage.RESUMING, outcome=JobState.TRAINING if aligned else JobState.ALIGNING, error=None)
    service.start_pipeline(ctx, resume=reason)


async def restart(ctx: JobContext, reason: str) -> Stage:
    """Agree with every party on where the job continues; the stage B's pipeline restarts at."""
    try:
        if ctx.store.load_alignment(ctx.record.job_id) is None:
            return await _restart_alignment(ctx, reason)
        try:
            await _restore_training(ctx, reason)
        finally:
            ctx.job.coordinating = False
        return Stage.TRAINING
    except VFLError as exc:
        ctx.job.coordinating = False
        what = "could not resume" if ctx.store.load_alignment(ctx.record.job_id) else "could not resume the alignment"
        raise JobError(f"{what}: {type(exc).__name__}: {exc}") from exc


async def _checkpoints_everywhere(ctx: JobContext) -> dict[str, Any]:
    """What every other party of the job holds: its checkpointed epochs and its generation, by protocol id."""
    record, roster = ctx.record, ctx.roster
    others = [*roster.features, roster.arbiter]
    answers = await asyncio.gather(*(
        ctx.client.call_json(record.peers[pid], "GET", f"/v1/peer/jobs/{record.job_id}/checkpoints")
        for pid in others))
    return dict(zip(others, answers))


async def _restart_alignment(ctx: JobContext, reason: str) -> Stage:
    """Continue an alignment cut short, each pair from its first bucket not finished at both ends."""
    record, roster = ctx.record, ctx.roster
    log.warning("job %s: resuming the alignment (%s)", record.job_id, reason)
    answers = await _checkpoints_everywhere(ctx)
    generation = max(record.generation, *(int(a["generation"]) for a in answers.values())) + 1
    ctx.update(generation=generation, resumes=record.resumes + 1)
    await ctx.fresh_runtime()
    path = f"/v1/peer/jobs/{record.job_id}/resume"

    async def new_sessions() -> None:
        """Once B's requesters wait for them: the arbiter moves on, each feature party starts a new PSI session."""
        try:
            body = ResumeRequest(epoch=-1, generation=generation, psi_bucket=0).model_dump()
            await ctx.client.call_json(record.peers[roster.arbiter], "POST", path, body)
            await asyncio.gather(*(
                ctx.client.call_json(record.peers[pid], "POST", path, ResumeRequest(
                    epoch=-1, generation=generation,
                    psi_bucket=finished_buckets(ctx.store, record.job_id, record.peers[pid])).model_dump())
                for pid in roster.features))
            log.warning("job %s: alignment resumed under generation %d", record.job_id, generation)
        finally:
            ctx.job.coordinating = False

    ctx.job.psi_ready = new_sessions  # awaited by the PSI step once B's requesters are in place
    return Stage.PSI


async def _restore_training(ctx: JobContext, reason: str) -> None:
    """Pick the newest epoch every party has, restore B, then C, then the feature parties, and go on."""
    record, roster = ctx.record, ctx.roster
    log.warning("job %s: resuming (%s)", record.job_id, reason)
    infos = await _checkpoints_everywhere(ctx)
    if all(info.get("state") == JobState.SUCCEEDED for info in infos.values()) and await _restore_ended(ctx):
        return
    common = set(ctx.store.checkpoints(record.job_id))
    for info in infos.values():
        common &= set(info["epochs"])
    if not common:
        everyone = "all three parties" if roster.k == 1 else f"all {roster.k + 2} parties"
        raise JobError(f"no epoch is checkpointed at {everyone}; submit the job again")
    epoch = max(common)
    generation = max(record.generation, *(int(i["generation"]) for i in infos.values())) + 1
    ctx.update(generation=generation, resumes=record.resumes + 1)
    aligned = await asyncio.to_thread(ctx.aligned_table)
    role = await asyncio.to_thread(party_role, ctx, aligned)
    role.load_state_dict(ctx.store.load_checkpoint(record.job_id, epoch))
    runtime = await ctx.fresh_runtime()
    await runtime.add_role("train", role)  # ready before a feature party's first message
    body = ResumeRequest(epoch=epoch, generation=generation).model_dump()
    path = f"/v1/peer/jobs/{record.job_id}/resume"
    await ctx.client.call_json(record.peers[roster.arbiter], "POST", path, body)
    await asyncio.gather(*(ctx.client.call_json(record.peers[pid], "POST", path, body) for pid in roster.features))
    del record.loss_history[epoch + 1 :]
    del record.validation_loss_history[epoch + 1 :]
    ctx.advance(Stage.TRAINING, epoch=epoch + 1)
    training_started(ctx, len(aligned), resumed_from=epoch)
    await runtime.post(role.resume())
    if role.done:
        ctx.job.trained.set()


async def _restore_ended(ctx: JobContext) -> bool:
    """Training had ended everywhere before B stopped: B restores its own final state; nothing is asked of the others.

    A multi-class job's class trainings run after the job's own training, which the
    feature parties and the arbiter have finished (their part is done and saved): a
    restart of B then finds the job still in its training stage, and restoring the
    peers would ask them to train again a job they finished. B's last checkpoint is
    its final model, so B takes it up and the pipeline goes on (to the class
    trainings, which resume by themselves). The same holds for any job whose B
    stopped after the last epoch but before its evaluation was saved. False when
    B's last checkpoint is not of an ended training: then the job resumes as any other.
    """
    record = ctx.record
    epochs = ctx.store.checkpoints(record.job_id)
    if not epochs:
        return False
    aligned = await asyncio.to_thread(ctx.aligned_table)
    role = await asyncio.to_thread(party_role, ctx, aligned)
    role.load_state_dict(ctx.store.load_checkpoint(record.job_id, max(epochs)))
    if not role.done:
        return False
    ctx.update(resumes=record.resumes + 1)
    runtime = await ctx.fresh_runtime()
    await runtime.add_role("train", role)
    ctx.advance(Stage.TRAINING)
    ctx.job.trained.set()
    ctx.event("training had ended at every party (%d epochs, %s): party B takes up its final model", record.epoch,
              role.stop_reason)
    return True


# -- a feature party and the arbiter -------------------------------------------------------------------------


async def report_interruption(ctx: JobContext) -> None:
    """A restarted feature party or arbiter asks B to resume the job (retrying while B is unreachable)."""
    record = ctx.record
    try:
        await ctx.client.call_json(
            record.party_id("label"), "POST", f"/v1/peer/jobs/{record.job_id}/interrupted",
            {"reason": f"party {record.role} ({ctx.me}) restarted", "generation": record.generation},
        )
    except PeerRefused as exc:
        if exc.error == "JobCancelled":  # cancelled while we were down: drop it (and its checkpoints) too
            await ctx.fail(f"cancelled at party B while this party was down: {exc}", cancelled=True, notify=False)
        else:
            await ctx.fail(f"restarted, and party B would not resume the job: {exc}", notify=False)
    except VFLError as exc:
        await ctx.fail(f"restarted, and could not reach party B to resume: {exc}", notify=False)


def checkpoint_info(ctx: JobContext, caller: str) -> dict[str, Any]:
    """Which epochs this party can resume the job from, and under which generation it runs."""
    ctx.record.require_caller(caller, "label")
    return {"epochs": ctx.store.checkpoints(ctx.record.job_id), "generation": ctx.record.generation,
            "state": ctx.record.state}


async def resume_role(ctx: JobContext, request: ResumeRequest, caller: str) -> JobRecord:
    """B's instruction: restore the state after ``request.epoch`` and continue under a new generation."""
    record = ctx.record
    record.require_caller(caller, "label")
    if record.state == "cancelled":
        raise JobError(f"job {record.job_id} was cancelled here; it cannot resume")
    if request.generation <= record.generation:
        raise JobError(f"job {record.job_id} is already at generation {record.generation} here; a resume must move "
                       "it on")
    check_budget(ctx)
    if request.psi_bucket is not None:
        return await _resume_alignment_here(ctx, request)
    state = ctx.store.load_checkpoint(record.job_id, request.epoch)
    if ctx.kind == "arbiter":
        key = PrivateKey.from_dict(state["private_key"])
        role: Any = await asyncio.to_thread(arbiter_role, ctx, record.n_rows, (key.public_key, key))
    else:
        aligned = await asyncio.to_thread(ctx.aligned_table)
        role = await asyncio.to_thread(party_role, ctx, aligned)
    role.load_state_dict(state)
    if isinstance(role, Arbiter):
        # Everything released before, also after this checkpoint: a resumed slot gets the same value or nothing.
        role.remember(ctx.store.load_ledger(record.job_id))
    ctx.advance(Stage.TRAINING, generation=request.generation, error=None, epoch=request.epoch + 1,
                resumes=record.resumes + 1)
    runtime = await ctx.fresh_runtime()
    training_started(ctx, record.n_rows or 0, resumed_from=request.epoch)
    await runtime.add_role("train", role, role.resume())
    return record


async def _resume_alignment_here(ctx: JobContext, request: ResumeRequest) -> JobRecord:
    """B's instruction during alignment: a feature party starts a new PSI session; the arbiter only moves on."""
    record = ctx.record
    feature = ctx.kind == "feature"
    if feature and ctx.store.load_alignment(record.job_id) is not None:
        raise JobError(f"job {record.job_id} is aligned here already; resume it from a training checkpoint")
    ctx.advance(Stage.PSI if feature else Stage.REGISTERED, generation=request.generation, error=None,
                resumes=record.resumes + 1)
    await ctx.fresh_runtime()
    log.warning("job %s: resuming the alignment at PSI bucket %d (generation %d)", record.job_id,
                request.psi_bucket, request.generation)
    if feature:
        ctx.job.aligned.clear()  # the new session's end is what a start of training waits for
        await start_key_holder(ctx, resume_bucket=request.psi_bucket)
    return record


__all__ = ["begin", "check_budget", "checkpoint_info", "peer_interrupted", "report_interruption", "restart",
           "resume_job", "resume_role"]
