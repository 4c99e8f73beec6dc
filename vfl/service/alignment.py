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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from psi.protocol import PsiKeyHolder, PsiRequester, check_declared_size
from vfl.align import alignment_summary, no_overlap
from vfl.data import PartyTable
from vfl.errors import JobError, VFLError
from vfl.protocol.messages import Message
from vfl.protocol.role import Envelope, Role
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


def _make_key_holder(node: Node, record: JobRecord, ids: list[str], key_bits: int) -> AuditedKeyHolder:
    return AuditedKeyHolder(record.job_id, ids, key_bits=key_bits, min_key_bits=node.config.limits.min_key_bits,
                            workers=node.workers, audit=_auditor(node, record.job_id),
                            expected_size_b=record.spec.get("psi_ids"), **_caps(node))


def check_registered_size(node: Node, psi_ids: int, own_size: int) -> None:
    """Party A: refuse at registration a job whose party B would declare more IDs than A's caps allow."""
    check_declared_size(psi_ids, own_size, peer="B", me="A", **_caps(node))


async def serve_as_key_holder(node: Node, record: JobRecord, runtime: JobRuntime, key_bits: int) -> None:
    """Party A: make a fresh RSA key for this job and publish it to party B."""
    table = await asyncio.to_thread(node.table, record.dataset)
    holder = await asyncio.to_thread(_make_key_holder, node, record, table.ids, key_bits)
    node.psi_started[record.job_id] = time.perf_counter()
    await runtime.add_role("psi", holder, holder.start())


def key_holder_finished(node: Node, record: JobRecord, holder: PsiKeyHolder, runtime: JobRuntime) -> None:
    """Party A: keep its aligned rows for training and report the alignment."""
    table = node.table(record.dataset)
    seconds = time.perf_counter() - node.psi_started.pop(record.job_id, time.perf_counter())
    summary = alignment_summary(len(table), holder.size_b, len(holder.rows), METHOD, seconds, runtime.psi_bytes(),
                                declared_size_a=len(holder.ids), declared_size_b=holder.declared_size_b)
    node.store.save_alignment(record.job_id, [table.ids[i] for i in holder.rows])
    node.save(record, alignment=summary, stage="aligned", n_rows=len(holder.rows))


async def align_as_requester(
    node: Node, record: JobRecord, runtime: JobRuntime, table: PartyTable
) -> tuple[np.ndarray, dict[str, Any]]:
    """Party B: run the requester until the intersection is known; its rows in the shared order."""
    started = time.perf_counter()
    requester = AuditedRequester(record.job_id, table.ids, min_key_bits=node.config.limits.min_key_bits,
                                 audit=_auditor(node, record.job_id), **_caps(node))
    finished = node.psi_done.setdefault(record.job_id, asyncio.Event())
    await runtime.add_role("psi", requester)
    await finished.wait()
    if requester.rows is None:
        raise JobError(f"alignment did not finish: {runtime.failed or 'the job was stopped'}")
    if len(requester.rows) == 0:
        raise no_overlap(requester.size_a, len(table), "party A", f"party B's dataset {record.dataset!r}")
    summary = alignment_summary(
        requester.size_a, len(table), len(requester.rows), METHOD, time.perf_counter() - started, runtime.psi_bytes(),
        declared_size_a=requester.size_a, declared_size_b=requester.declared_size_b,
    )
    return requester.rows, summary
