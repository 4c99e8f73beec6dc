"""Party B's alignment: one PSI with each feature party, intersected; or the rows of an earlier job.

Each feature party holds the RSA key (or ECDH scalar) of its own pair and starts its side as
soon as it accepts the job (:mod:`vfl.service.stages.accept`); B's requesters
take it from there (a message that arrives before B's role exists waits in the
job's runtime). The pairwise results are intersected by
:func:`psi.joint.shared_rows_b`, which keeps the PSI's order (by ID), so each
feature party can take the joint IDs in the same order.

A coalition training (``reuse_alignment``) runs no PSI: it trains on the rows
of the job whose contributions it measures, which every party already holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from psi.joint import alignment_summary, no_overlap, shared_rows_b
from vfl.data.ids import mismatch_warning, profile_ids
from vfl.data.table import PartyTable
from vfl.errors import JobError, NoOverlapError
from vfl.service.context import JobContext
from vfl.service.psi_roles import drop_results, method, opening, requester, unbalanced_summary
from vfl.service.spec import JobSpec


async def run(ctx: JobContext) -> None:
    """Run B's PSI with every feature party and keep the joint rows."""
    started = time.perf_counter()
    table = await _own_table(ctx)
    rows_b, summary = await _align_as_requester(ctx, table)
    _keep(ctx, table, rows_b, summary, started)


async def reuse(ctx: JobContext) -> None:
    """A coalition training: the aligned rows of the job it measures, with no new PSI."""
    started = time.perf_counter()
    parent = JobSpec.model_validate(ctx.record.job_spec).reuse_alignment
    ids = ctx.store.load_alignment(str(parent))
    if not ids:
        raise JobError(f"reuse_alignment: job {parent} has no aligned IDs here")
    table = await _own_table(ctx)
    rows_b = await asyncio.to_thread(table.rows_for, ids)
    _keep(ctx, table, rows_b, {"reused_from": parent, "intersection": len(ids), "party_b_ids": len(table),
                               "seconds": 0.0}, started)


async def _own_table(ctx: JobContext) -> PartyTable:
    return await asyncio.to_thread(ctx.own_table)


def _keep(ctx: JobContext, table: PartyTable, rows_b: np.ndarray, summary: dict[str, Any], started: float) -> None:
    """Store B's aligned IDs in the shared order and say so in the job's record and story."""
    record = ctx.record
    aligned = table.take(rows_b)
    ctx.store.save_alignment(record.job_id, aligned.ids)
    drop_results(ctx.store, record.job_id)
    ctx.update(alignment=summary, n_rows=len(aligned), timings={"alignment": round(time.perf_counter() - started, 3)})
    ctx.event("aligned: %d rows shared with %s (of %d here), in %.1fs", len(aligned),
              ", ".join(record.name_of(p) for p in record.peer_ids(ctx.me, "feature")), len(table),
              record.timings["alignment"])


async def _align_as_requester(ctx: JobContext, table: PartyTable) -> tuple[np.ndarray, dict[str, Any]]:
    """One PSI per feature party, intersected: B's rows of the joint IDs, in the shared order.

    A resume of the alignment hangs a hook on the job (``psi_ready``), awaited once
    B's roles are in place: it asks the feature parties to start new sessions.
    """
    record, roster, job = ctx.record, ctx.roster, ctx.job
    started = time.perf_counter()
    runtime = ctx.runtime()
    # An unbalanced job may build B's offline set here (B the large side, the first job with a partner): off the event loop.
    requesters = {peer: await asyncio.to_thread(requester, ctx, table.ids, peer) for peer in roster.features}
    for peer, role in requesters.items():
        await runtime.add_role(f"psi:{peer}", role)
    ready, job.psi_ready = job.psi_ready, None
    if ready is not None:
        await ready()
    # B the small side of an unbalanced job queries each feature party's offline set: once a resume's
    # feature parties have their new sessions, so the first request reaches the new one.
    for role in requesters.values():
        await runtime.post(opening(role))
    while not all(r.rows is not None for r in requesters.values()):
        if runtime.closed or runtime.failed or record.finished:
            raise JobError(f"alignment did not finish: {runtime.failed or 'the job was stopped'}")
        job.aligned.clear()
        await job.aligned.wait()
    own_profile = None
    for peer, role in requesters.items():
        theirs = record.peer_id_profiles.get(peer)
        if theirs is not None and own_profile is None:
            own_profile = profile_ids(table.ids)
        warning = mismatch_warning(len(role.rows), len(table), role.size_a, own_profile, theirs,
                                   who=record.name_of(peer))
        if warning is not None and warning not in record.warnings:
            record.warnings.append(warning)
            ctx.event("data: %s", warning, level=logging.WARNING)
    for peer, role in requesters.items():
        if len(role.rows) == 0:
            name = "party A" if roster.k == 1 else f"party A ({peer})"
            raise no_overlap(role.size_a, len(table), name, f"party B's dataset {record.dataset!r}")
    seconds = time.perf_counter() - started
    pairwise = {
        peer: alignment_summary(
            r.size_a, len(table), len(r.rows), method(record), seconds, runtime.psi_bytes() if roster.k == 1 else 0,
            declared_size_a=r.size_a, declared_size_b=r.declared_size_b,
        ) | {"buckets": r.n_buckets} | unbalanced_summary(r)
        for peer, r in requesters.items()
    }
    if roster.k == 1:
        only = requesters[roster.features[0]]
        return only.rows, pairwise[roster.features[0]]
    rows_b = shared_rows_b([r.rows for r in requesters.values()])  # each feature party maps them itself
    if len(rows_b) == 0:
        raise NoOverlapError(
            f"party B's dataset {record.dataset!r} shares IDs with each of {', '.join(roster.features)}, but no ID "
            "is held by all of them; a joint model needs customers every party knows: check the ID columns, "
            "or leave a party out")
    first = pairwise[roster.features[0]]
    summary = {
        "method": method(record),
        "party_b_ids": len(table),
        "intersection": len(rows_b),
        "overlap_of_b": len(rows_b) / len(table) if len(table) else 0.0,
        "seconds": round(seconds, 3),
        "bytes": runtime.psi_bytes(),
        "declared_size_b": first.get("declared_size_b"),
        "feature_parties": [{"party": peer, **p, "pairwise_intersection": len(requesters[peer].rows)}
                            for peer, p in pairwise.items()],
    }
    return rows_b, summary


__all__ = ["reuse", "run"]
