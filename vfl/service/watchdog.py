"""While a job runs here, probe its other parties whenever it has been idle a while.

A party waiting for a message from a peer that died would otherwise wait for
ever. A peer unreachable for ``limits.peer_timeout`` fails the job; a peer that
reports the job failed or cancelled is followed; a peer that reports success
while this party still trains stopped taking part. ``limits.idle_timeout``
bounds how long a job may go with nobody sending anything although every party
answers.

Whether a peer still answers is asked after at most :data:`LIVENESS_SECONDS` of
quiet (or ``limits.heartbeat``, when it is shorter): the first probe that fails
puts the peer in the job's status at once ("waiting for party-a, unreachable
since ..."; :mod:`vfl.service.status`), long before ``peer_timeout`` fails the job.
"""

from __future__ import annotations

import asyncio
import time
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
        idle = time.monotonic() - runtime.last_activity
        if idle < interval:
            continue
        if idle > limits.idle_timeout:
            idle = min(idle, await _least_quiet_peer(ctx, idle))
        if idle > limits.idle_timeout:
            # Every party answers, yet nobody sends: one of them stopped taking part.
            await ctx.fail(f"no protocol message for {idle:.0f}s (limits.idle_timeout = {limits.idle_timeout:g}s): "
                           "a party stopped taking part in the job")
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
            verdict = _judge(ctx, runtime, role, info)
            if verdict is not None:
                reason, cancelled, notify = verdict
                await ctx.fail(reason, cancelled=cancelled, notify=notify)
                return


async def _least_quiet_peer(ctx: JobContext, idle: float) -> float:
    """The shortest ``quiet`` any peer reports for the job: a peer busy with long local work is not idle.

    A large side building its offline PSI set sends nothing for minutes, but it
    marks the job active as it goes (:meth:`JobRuntime.touch`), so its probe
    answer says how long ago it last worked. A peer that does not answer, or
    answers without ``quiet`` (an older version), counts as quiet as we are; the
    probes below judge the unreachable ones. A deviating peer could claim to be
    busy for ever, but it can stall a job as well by sending slowly: the owner
    cancels such a job.
    """
    quiet = idle
    for peer_id in ctx.record.peer_ids(ctx.me):
        try:
            info = await ctx.client.call_json(peer_id, "GET", f"/v1/peer/jobs/{ctx.record.job_id}/state")
        except VFLError:
            continue
        reported = info.get("quiet") if isinstance(info, dict) else None
        if isinstance(reported, (int, float)) and reported >= 0:
            quiet = min(quiet, float(reported))
    return quiet


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


def probe_answer(record: JobRecord, caller: str, runtime: JobRuntime | None = None) -> dict[str, Any]:
    """What a peer's watchdog reads here: is the job alive, under which generation (the error unredacted),
    and ``quiet``: seconds since this party last sent, received or worked for the job (None: not running here)."""
    record.takes_part(caller)
    quiet = None if runtime is None or runtime.closed else round(time.monotonic() - runtime.last_activity, 1)
    return {"state": record.state, "generation": record.generation, "error": record.error, "quiet": quiet}


__all__ = ["LIVENESS_SECONDS", "probe_answer", "watch"]
