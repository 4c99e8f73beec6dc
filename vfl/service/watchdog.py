"""While a job runs here, probe its other parties whenever it has been idle a while.

A party waiting for a message from a peer that died would otherwise wait for
ever. A peer unreachable for ``limits.peer_timeout`` fails the job; a peer that
reports the job failed or cancelled is followed; a peer that reports success
while this party still trains stopped taking part. ``limits.idle_timeout``
bounds how long a job may go with nobody sending, receiving or working for it
although every party answers. Long local work (a large side building its
offline PSI set) marks the job active as it goes, and every probe answer
carries ``quiet``, the time since any party last worked as far as the answering
one knows, so that news of it reaches parties that never talk to the worker.

Whether a peer still answers is asked after at most :data:`LIVENESS_SECONDS` of
quiet (or ``limits.heartbeat``, when it is shorter): the first probe that fails
puts the peer in the job's status at once ("waiting for party-a, unreachable
since ..."; :mod:`vfl.service.status`), long before ``peer_timeout`` fails the job.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from vfl.errors import PeerRefused, VFLError
from vfl.service.context import JobContext
from vfl.service.record import JobRecord
from vfl.service.runtime import JobRuntime


#: The longest quiet before a running job asks its peers whether they are there (a GET each: cheap).
LIVENESS_SECONDS = 2.0


async def watch(ctx: JobContext, runtime: JobRuntime) -> None:
    """Probe the job's peers while ``runtime`` runs it here."""
    record, limits = ctx.record, ctx.config.limits
    interval = min(limits.heartbeat, LIVENESS_SECONDS)
    while not runtime.closed and not record.finished:
        await asyncio.sleep(interval)
        if runtime.closed or record.finished or record.state not in ("aligning", "training"):
            continue
        idle = runtime.quiet()  # this party's own quiet, or a peer's more recent news of some party's work
        if idle < interval:
            continue
        if idle > limits.idle_timeout:
            # Every party answers, yet none sends or works: one of them stopped taking part.
            await ctx.fail(f"no party sent, received or worked for the job for {idle:.0f}s (limits.idle_timeout "
                           f"= {limits.idle_timeout:g}s): a party stopped taking part in the job")
            return
        for peer_id in record.peer_ids(ctx.me):
            role = record.name_of(peer_id)
            try:
                info = await ctx.client.call_json(peer_id, "GET", f"/v1/peer/jobs/{record.job_id}/state")
            except PeerRefused as exc:
                if _not_registered_yet(ctx, peer_id, exc):
                    continue
                if not runtime.closed and not record.finished:
                    await ctx.fail(f"{role} stopped answering: {exc}")
                return
            except VFLError as exc:
                if not runtime.closed and not record.finished:
                    await ctx.fail(f"{role} stopped answering: {exc}")
                return
            runtime.note_quiet(peer_id, info.get("quiet") if isinstance(info, dict) else None)
            verdict = _judge(ctx, runtime, role, info)
            if verdict is not None:
                reason, cancelled, notify = verdict
                await ctx.fail(reason, cancelled=cancelled, notify=notify)
                return


def _not_registered_yet(ctx: JobContext, peer_id: str, exc: PeerRefused) -> bool:
    """A feature party aligning may ask the arbiter before B has registered the job there.

    B registers the job with every feature party first (each states its gradient
    length) and with the arbiter last, so while the PSIs run the arbiter may not
    know the job yet. B's training start fails the job if it never does.
    """
    record = ctx.record
    return (exc.error == "UnknownJobError" and record.state == "aligning" and ctx.kind == "feature"
            and record.parties.kind_of(record.protocol_id(peer_id, ctx.me)) == "arbiter")


def _judge(ctx: JobContext, runtime: JobRuntime, role: str, info: dict[str, Any]) -> tuple[str, bool, bool] | None:
    """What a peer's job state means for ours: (reason, cancelled?, tell the others?), or None."""
    record = ctx.record
    state = info.get("state")
    training = runtime.roles.get("train")
    if state == "succeeded" and training is not None and not training.done:
        # Training ends for all at the same decision: a peer that finished while we still train deviated.
        return (f"{role} reports the job succeeded while party {record.role} is still training: it stopped "
                "taking part", False, True)
    if state not in ("failed", "cancelled", "damaged") or record.finished:
        return None
    if state == "failed" and int(info.get("generation", 0)) < record.generation:
        return None  # it failed before the job resumed, and has not been told to resume yet
    return f"{role} reports the job {state}: {info.get('error')}", state == "cancelled", False


def quiet_answer(seconds: float) -> float:
    """``quiet`` as a probe answers it: rounded up to 0.1 s, so that passing it on never makes it younger."""
    return math.ceil(seconds * 10) / 10


def probe_answer(record: JobRecord, caller: str, runtime: JobRuntime | None = None) -> dict[str, Any]:
    """What a peer's watchdog reads here: is the job alive, under which generation (the error unredacted),
    and ``quiet`` (:meth:`JobRuntime.quiet`; None when the job does not run here).

    ``quiet`` says no more than the probes already do: the caller takes part in
    the job and sees its messages come and go; this adds that the job is still
    being worked on somewhere, not where or on what.
    """
    record.takes_part(caller)
    quiet = None if runtime is None or runtime.closed else quiet_answer(runtime.quiet())
    return {"state": record.state, "generation": record.generation, "error": record.error, "quiet": quiet}


__all__ = ["LIVENESS_SECONDS", "probe_answer", "quiet_answer", "watch"]
