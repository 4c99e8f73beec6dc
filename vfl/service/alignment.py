"""The alignment stage of a job at a service: the PSI roles over HTTP.

Party A's key holder starts as soon as A accepts the job's registration and
sends its public key to B; B's requester takes it from there (a message that
arrives before B's role exists waits in the job's runtime). Both roles are
the ones :func:`psi.run_psi` runs in one process.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from psi.protocol import PsiKeyHolder, PsiRequester
from vfl.align import alignment_summary, no_overlap
from vfl.data import PartyTable
from vfl.errors import JobError
from vfl.service.runtime import JobRuntime
from vfl.service.store import JobRecord

if TYPE_CHECKING:
    from vfl.service.node import Node

METHOD = "rsa-blind-signature-psi"


async def serve_as_key_holder(node: Node, record: JobRecord, runtime: JobRuntime, key_bits: int) -> None:
    """Party A: make a fresh RSA key for this job and publish it to party B."""
    table = await asyncio.to_thread(node.table, record.dataset)
    holder = await asyncio.to_thread(
        PsiKeyHolder, record.job_id, table.ids, key_bits=key_bits,
        min_key_bits=node.config.limits.min_key_bits, workers=node.workers,
    )
    node.psi_started[record.job_id] = time.perf_counter()
    await runtime.add_role("psi", holder, holder.start())


def key_holder_finished(node: Node, record: JobRecord, holder: PsiKeyHolder, runtime: JobRuntime) -> None:
    """Party A: keep its aligned rows for training and report the alignment."""
    table = node.table(record.dataset)
    seconds = time.perf_counter() - node.psi_started.pop(record.job_id, time.perf_counter())
    summary = alignment_summary(len(table), holder.size_b, len(holder.rows), METHOD, seconds, runtime.psi_bytes())
    node.aligned_rows(record.job_id, table, holder.rows, summary)


async def align_as_requester(
    node: Node, record: JobRecord, runtime: JobRuntime, table: PartyTable
) -> tuple[np.ndarray, dict[str, Any]]:
    """Party B: run the requester until the intersection is known; its rows in the shared order."""
    started = time.perf_counter()
    requester = PsiRequester(record.job_id, table.ids, min_key_bits=node.config.limits.min_key_bits)
    finished = node.psi_done.setdefault(record.job_id, asyncio.Event())
    await runtime.add_role("psi", requester)
    await finished.wait()
    if requester.rows is None:
        raise JobError(f"alignment did not finish: {runtime.failed or 'the job was stopped'}")
    if len(requester.rows) == 0:
        raise no_overlap(requester.size_a, len(table), "party A", f"party B's dataset {record.dataset!r}")
    summary = alignment_summary(
        requester.size_a, len(table), len(requester.rows), METHOD, time.perf_counter() - started, runtime.psi_bytes()
    )
    return requester.rows, summary
