"""Stopping a job: cancelled by an orchestration call, or failed or cancelled at a peer.

A job that stops at one party stops at every party: the party where it
stopped tells the others (see :meth:`~vfl.service.context.JobContext.fail`),
and each follows a peer's notice without telling anyone again. A cancelled job
never resumes, so its checkpoints (the arbiter's hold its private key) go at
once.
"""

from __future__ import annotations

import logging

from vfl.errors import JobError
from vfl.service.context import JobContext
from vfl.service.record import JobRecord

log = logging.getLogger("vfl.service")


async def cancel(ctx: JobContext) -> JobRecord:
    """Orchestration call: cancel the job here and at every party."""
    record = ctx.record
    if record.finished:
        raise JobError(f"job {record.job_id} {record.state_phrase(already=True)}; nothing to cancel")
    await ctx.fail("cancelled by an orchestration call", cancelled=True)
    return record


async def peer_stopped(ctx: JobContext, caller: str, reason: str, *, cancelled: bool, generation: int = 0) -> None:
    """A peer says the job failed or was cancelled there: so it is here (the others hear it from that peer)."""
    record = ctx.record
    record.takes_part(caller)
    if not cancelled and generation < record.generation:
        # Sent before the job resumed (the sender retried while a link was down): it is history.
        log.info("job %s: ignoring %s's failure notice from generation %d (now %d): %s",
                 record.job_id, caller, generation, record.generation, reason)
        return
    await ctx.fail(reason, cancelled=cancelled, notify=False)


__all__ = ["cancel", "peer_stopped"]
