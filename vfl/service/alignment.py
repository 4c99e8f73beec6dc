"""The alignment stage of a job at a service: the PSI roles over HTTP.

Party A's key holder starts as soon as A accepts the job's registration and
sends its public key to B; B's requester takes it from there (a message that
arrives before B's role exists waits in the job's runtime). Both roles are
the ones :func:`psi.run_psi` runs in one process.

Each side caps the set size the other declares with its own
``limits.max_psi_ids`` and ``limits.max_psi_ratio``, and writes every PSI
message it refuses to the job's ``audit.log``, as the arbiter does for
decryptions it refuses.
"""

from __future__ import annotations

import asyncio
import time
import shutil
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from psi.buckets import DiskBucketResults, OwnTagCache
from psi.protocol import PsiKeyHolder, PsiRequester, check_declared_size
from psi.joint import alignment_summary, no_overlap, shared_rows_b
from vfl.data.table import PartyTable
from vfl.errors import JobError, NoOverlapError, VFLError
from vfl.protocol.messages import Message
from vfl.protocol.role import Envelope, Role
from vfl.service.logs import job_event
from vfl.service.runtime import JobRuntime
from vfl.service.store import JobRecord

if TYPE_CHECKING:
    from vfl.service.node import Node

METHOD = "rsa-blind-signature-psi"

AuditFn = Callable[[str], None]


class _AuditsRefusals(Role):
    """Writes each message the PSI role refuses to the job's audit log, then lets the refusal through.

    The roles stay free of I/O; this service-side layer adds the log for what the
    role refuses while processing its queue. What it refuses as a message
    arrives is logged by the service itself (``Node.receive``), like every refusal.
    """

    def __init__(self, *args: Any, audit: AuditFn, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audit = audit

    def process(self, message: Message) -> list[Envelope]:
        try:
            return super().process(message)
        except VFLError as exc:
            self.audit(f"refused {message.address()}: {type(exc).__name__}: {exc}")
            raise


class AuditedKeyHolder(_AuditsRefusals, PsiKeyHolder):
    """Party A's key holder at a service."""


class AuditedRequester(_AuditsRefusals, PsiRequester):
    """Party B's requester at a service."""


def _caps(node: Node) -> dict[str, Any]:
    """This service's caps on the set size the other party declares."""
    limits = node.config.limits
    return {"max_peer_ids": limits.max_psi_ids, "max_peer_ratio": limits.max_psi_ratio}


def _auditor(node: Node, job_id: str) -> AuditFn:
    return lambda line: node.store.audit(job_id, line)


def checkpoints(node: Node, record: JobRecord, peer: str) -> DiskBucketResults:
    """Where this party keeps the finished buckets of its PSI with ``peer`` (in the job's folder)."""
    return DiskBucketResults(node.store.job_dir(record.job_id) / "psi" / peer)


def drop_checkpoints(node: Node, record: JobRecord) -> None:
    """The alignment is stored: the per-bucket results are no longer needed."""
    shutil.rmtree(node.store.job_dir(record.job_id) / "psi", ignore_errors=True)


def finished_buckets(node: Node, record: JobRecord, peer: str) -> int:
    """Buckets of the PSI with ``peer`` finished here before a restart."""
    return checkpoints(node, record, peer).finished()


def _make_key_holder(node: Node, record: JobRecord, ids: list[str], key_bits: int,
                     resume_bucket: int | None = None) -> AuditedKeyHolder:
    label = node.roster(record).label
    return AuditedKeyHolder(record.job_id, ids, party=node.own_id(record), peer=label,
                            key_bits=key_bits, min_key_bits=node.config.limits.min_key_bits,
                            primes=node.config.psi.primes, engine=node.engine, audit=_auditor(node, record.job_id),
                            expected_size_b=record.spec.get("psi_ids"), bucket_ids=node.config.psi.bucket_ids,
                            results=checkpoints(node, record, record.peers[label]),
                            resume_bucket=resume_bucket, own_cache=_own_cache(node, record), **_caps(node))


def _own_cache(node: Node, record: JobRecord) -> OwnTagCache | None:
    """Party A's reused key and own tags for this partner and dataset, when ``[psi] reuse_own_signatures`` is on."""
    if not node.config.psi.reuse_own_signatures:
        return None
    partner = record.peers[node.roster(record).label]
    return OwnTagCache(node.store.data_dir / "psi-reuse" / partner / str(record.dataset))


def check_registered_size(node: Node, psi_ids: int, own_size: int) -> None:
    """Party A: refuse at registration a job whose party B would declare more IDs than A's caps allow."""
    check_declared_size(psi_ids, own_size, peer="B", me="A", **_caps(node))


async def serve_as_key_holder(node: Node, record: JobRecord, runtime: JobRuntime, key_bits: int,
                              resume_bucket: int | None = None) -> None:
    """Party A: make a fresh RSA key for this job and publish it to party B.

    On a resume, the new session starts at the first bucket unfinished here or
    at party B (``resume_bucket``), whichever is earlier.
    """
    table = await asyncio.to_thread(node.table, record.dataset)
    holder = await asyncio.to_thread(_make_key_holder, node, record, table.ids, key_bits, resume_bucket)
    node.psi_started[record.job_id] = time.perf_counter()
    await runtime.add_role("psi", holder, holder.start())


def key_holder_finished(node: Node, record: JobRecord, holder: PsiKeyHolder, runtime: JobRuntime) -> None:
    """Party A: keep its aligned rows for training and report the alignment."""
    table = node.table(record.dataset)
    seconds = time.perf_counter() - node.psi_started.pop(record.job_id, time.perf_counter())
    summary = alignment_summary(len(table), holder.size_b, len(holder.rows), METHOD, seconds, runtime.psi_bytes(),
                                declared_size_a=holder.size_a, declared_size_b=holder.declared_size_b)
    summary["buckets"] = holder.n_buckets
    if holder.own_cache is not None:
        summary["reused_own_signatures"] = holder.reused_buckets == holder.n_buckets
    node.store.save_alignment(record.job_id, [table.ids[i] for i in holder.rows])
    drop_checkpoints(node, record)
    node.save(record, alignment=summary, stage="aligned", n_rows=len(holder.rows))
    job_event(record.job_id, "aligned: %d rows shared with party B (of %d here), in %.1fs",
              len(holder.rows), len(table), seconds)


async def align_as_requester(
    node: Node, record: JobRecord, runtime: JobRuntime, table: PartyTable,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Party B: one PSI with each feature party, intersected: B's rows of the joint IDs, in the shared order.

    Each feature party holds the RSA key for its own pair. The pairwise results
    are intersected by :func:`psi.joint.shared_rows_b`, which keeps the PSI's order
    (by ID), so each feature party can take the joint IDs in the same order.
    ``ready`` is awaited once B's roles are in place (a resume then asks the
    feature parties to start new sessions).
    """
    started = time.perf_counter()
    roster = node.roster(record)
    requesters = {
        peer: AuditedRequester(record.job_id, table.ids, party=roster.label, peer=peer,
                               min_key_bits=node.config.limits.min_key_bits, engine=node.engine,
                               audit=_auditor(node, record.job_id),
                               results=checkpoints(node, record, record.peers[peer]), **_caps(node))
        for peer in roster.features
    }
    finished = node.psi_done.setdefault(record.job_id, asyncio.Event())
    for peer, requester in requesters.items():
        await runtime.add_role(f"psi:{peer}", requester)
    if ready is not None:
        await ready()
    while not all(r.rows is not None for r in requesters.values()):
        if runtime.closed or runtime.failed or record.finished:
            raise JobError(f"alignment did not finish: {runtime.failed or 'the job was stopped'}")
        finished.clear()
        await finished.wait()
    for peer, requester in requesters.items():
        if len(requester.rows) == 0:
            name = "party A" if roster.k == 1 else f"party A ({peer})"
            raise no_overlap(requester.size_a, len(table), name, f"party B's dataset {record.dataset!r}")
    seconds = time.perf_counter() - started
    pairwise = {
        peer: alignment_summary(
            r.size_a, len(table), len(r.rows), METHOD, seconds, runtime.psi_bytes() if roster.k == 1 else 0,
            declared_size_a=r.size_a, declared_size_b=r.declared_size_b,
        ) | {"buckets": r.n_buckets}
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
        "method": METHOD,
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
