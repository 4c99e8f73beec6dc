"""The peer route of per-party timings (:mod:`vfl.service.timings`): a feature party's and the arbiter's answer,
and party B's request to each of them once the job has run its stages."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vfl.errors import JobError, VFLError
from vfl.service.context import JobContext
from vfl.service.timings import checked, not_available, own_timings

log = logging.getLogger("vfl.service")

#: How long party B waits for a peer's timings before it records them as not available.
ASK_SECONDS = 10.0
PATH = "/v1/peer/jobs/{job_id}/timings"


def peer_answer(ctx: JobContext, caller: str) -> dict[str, Any]:
    """A feature party or the arbiter: its timings of a job, for the job's party B only, once it finished here.

    A running job's are refused: polled, they would time each epoch at this party.
    """
    record = ctx.record
    record.require_caller(caller, "label")
    if not record.finished:
        raise JobError(f"job {record.job_id} is {record.state} at {ctx.me}; its timings are given once it has "
                       "finished here: ask again then")
    return own_timings(record, ctx.me)


async def ask_peers(ctx: JobContext) -> dict[str, dict[str, Any]]:
    """Party B: every feature party's and the arbiter's timings of the job, or why they are not available."""
    record = ctx.record
    path = PATH.format(job_id=record.job_id)

    async def ask(peer: str) -> dict[str, Any]:
        try:
            answer = await asyncio.wait_for(
                ctx.client.call_json(peer, "GET", path, connect_within=min(3.0, ASK_SECONDS)), ASK_SECONDS)
        except (VFLError, TimeoutError) as exc:  # the job is unaffected: its page says "not available"
            problem = f"{type(exc).__name__}: {exc}" if isinstance(exc, VFLError) else f"no answer in {ASK_SECONDS:g}s"
            log.warning("job %s: %s's timings are not available: %s", record.job_id, peer, problem)
            return not_available(record, peer, f"not available: {problem}"[:500])
        return checked(record, peer, answer)

    peers = record.peer_ids(ctx.me)
    answers = await asyncio.gather(*(ask(peer) for peer in peers))
    return dict(zip(peers, answers))


__all__ = ["ASK_SECONDS", "ask_peers", "peer_answer"]
