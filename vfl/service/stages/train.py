"""Party B's training: build its role on the aligned rows, have the arbiter and the feature parties start, wait.

The arbiter makes the key pair when B starts it; each feature party builds its
role on the same rows (with several feature parties B sends them the joint IDs
and every party's gradient length) and asks C for the key. Every party
checkpoints its role after every epoch. After a resume, B's restored role is in
place already (:mod:`vfl.service.stages.resume`): the step only waits for it.
"""

from __future__ import annotations

import asyncio
import time

from vfl.service.context import JobContext
from vfl.service.spec import TrainingStart
from vfl.service.training_roles import party_role, training_started


async def run(ctx: JobContext) -> None:
    """Train to the last epoch (or to where training stops), then note how long it took."""
    runtime = ctx.runtime()
    if "train" not in runtime.roles:
        await _start(ctx)
    began = time.perf_counter()
    role = runtime.roles["train"]
    if role.done and "training" in ctx.record.timings:
        return  # it had ended before party B restarted (a multi-class job's class trainings were running)
    if not role.done:
        await ctx.job.trained.wait()
    ctx.record.timings["training"] = round(time.perf_counter() - began, 3)
    # Time B's role spent handling messages; the rest of the stage it waited for its peers (vfl.service.timings).
    ctx.record.timings["training_compute"] = round(runtime.compute_seconds.get("train", 0.0), 3)


async def _start(ctx: JobContext) -> None:
    record, roster = ctx.record, ctx.roster
    aligned = await asyncio.to_thread(ctx.aligned_table)
    role = await asyncio.to_thread(party_role, ctx, aligned)
    ctx.checkpoint(role)
    start = TrainingStart(n_rows=len(aligned))
    # With several feature parties they also get the joint IDs; never each other's feature counts.
    to_features = start.model_copy(update={"ids": aligned.ids} if roster.k > 1 else {})
    # (a feature party's copy never carries lengths: it holds its own and B's since the binning)
    path = f"/v1/peer/jobs/{record.job_id}/start"
    # A scorecard job trains on coded characteristics: the arbiter gets the widths fixed by the binning.
    to_arbiter = start.model_copy(update={"gradient_lengths": dict(record.gradient_lengths or {})}
                                  if record.job_spec and record.job_spec.get("scorecard") is not None else {})
    await ctx.client.call_json(record.peers[roster.arbiter], "POST", path, to_arbiter.model_dump())
    await asyncio.gather(*(ctx.client.call_json(record.peers[pid], "POST", path, to_features.model_dump())
                           for pid in roster.features))
    training_started(ctx, len(aligned))
    await ctx.runtime().add_role("train", role, role.start())


__all__ = ["run"]
