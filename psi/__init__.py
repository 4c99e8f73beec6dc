"""Private set intersection between party A and party B: RSA blind signatures (default) or ECDH.

:func:`run_psi` runs both roles in one process over the in-memory channel (the
simulation uses it); the services run the same roles over HTTP. See
:mod:`psi.protocol` for the protocol and what each side learns, and
:mod:`vfl.data.ids` for the rule that decides when two IDs are equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psi.buckets import DEFAULT_BUCKET_IDS, PsiIds
from vfl.data.ids import normalize_ids
from psi.keys import DEFAULT_PRIMES, MIN_RSA_BITS
from psi.protocol import DEFAULT_CHUNK, PsiKeyHolder, PsiRequester
from psi.suites import PsiProtocol
from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import resolve_workers
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.role import Envelope

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PsiResult:
    rows_a: np.ndarray
    rows_b: np.ndarray
    size_a: int
    size_b: int
    declared_size_a: int  # what A told B (its PsiPublicKey), as B received it
    declared_size_b: int  # what B told A (its DeclaredSize), as A received it
    bytes_a_to_b: int
    bytes_b_to_a: int
    seconds: float
    buckets: int = 1

    @property
    def intersection_size(self) -> int:
        return len(self.rows_a)


def run_psi(
    ids_a: Sequence[object] | PsiIds,
    ids_b: Sequence[object] | PsiIds,
    *,
    key_bits: int = 2048,
    min_key_bits: int = MIN_RSA_BITS,
    workers: int | None = None,
    engine: Engine | None = None,
    primes: int = DEFAULT_PRIMES,
    chunk_size: int = DEFAULT_CHUNK,
    progress: ProgressFn | None = None,
    job_id: str = "local",
    transcript: list[Envelope] | None = None,
    max_peer_ids: int | None = None,
    max_peer_ratio: float | None = None,
    bucket_ids: int = DEFAULT_BUCKET_IDS,
    protocol: PsiProtocol = "rsa",
) -> PsiResult:
    """Find the common IDs; ``ids_a[rows_a[i]] == ids_b[rows_b[i]]`` for every i.

    An empty intersection is a result (size 0), not an error. ``max_peer_ids``
    and ``max_peer_ratio`` cap, at each side, the set size the other declares
    (see :class:`PsiKeyHolder`); a declaration above them raises
    :class:`~vfl.errors.LimitExceeded`. In one process both sets are known, so
    by default there is no cap.

    A :class:`~psi.buckets.PsiIds` stream instead of a list keeps memory
    bounded: both sides spill their IDs into buckets of about ``bucket_ids``
    and run them one by one (the rows come out the same for any bucket size).

    ``protocol`` is "rsa" (blind signatures, the default) or "ecdh"
    (X25519); the rows are the same for both. The key arguments are RSA's.
    """
    started = time.perf_counter()
    if not isinstance(ids_a, PsiIds):  # normalised (and checked) once here, so the buckets need not again
        ids_a = PsiIds(ids=normalize_ids(ids_a, source="party A's IDs"), source="party A's IDs", normalized=True)
    if not isinstance(ids_b, PsiIds):
        ids_b = PsiIds(ids=normalize_ids(ids_b, source="party B's IDs"), source="party B's IDs", normalized=True)
    # Both roles share one engine here; at the services each party has its own.
    compute = engine if engine is not None else as_engine(resolve_workers(workers))
    caps = {"max_peer_ids": max_peer_ids, "max_peer_ratio": max_peer_ratio}
    holder = PsiKeyHolder(job_id, ids_a, key_bits=key_bits, min_key_bits=min_key_bits, primes=primes, engine=compute,
                          chunk_size=chunk_size, bucket_ids=bucket_ids, protocol=protocol, **caps)
    requester = PsiRequester(job_id, ids_b, min_key_bits=min_key_bits, engine=compute, protocol=protocol, **caps)

    def report(envelope: Envelope) -> None:
        if progress is not None and envelope.recipient == "B":
            done, total = requester.progress
            progress("party B signatures", done, total)

    channel = InMemoryChannel({"A": holder, "B": requester}, transcript=transcript, on_deliver=report)
    channel.run(holder.start())
    return PsiResult(
        rows_a=holder.rows, rows_b=requester.rows, size_a=holder.size_a, size_b=requester.size_b,
        declared_size_a=requester.size_a, declared_size_b=holder.declared_size_b,
        bytes_a_to_b=channel.bytes_sent[("A", "B")], bytes_b_to_a=channel.bytes_sent[("B", "A")],
        seconds=time.perf_counter() - started, buckets=holder.n_buckets,
    )


__all__ = ["PsiIds", "PsiResult", "run_psi", "normalize_ids"]
