"""Entity alignment: which rows of party A and party B are the same person.

:func:`align` is the one entry point. It runs the RSA blind-signature PSI
(:mod:`psi`), or with ``protocol="ecdh"`` the Diffie–Hellman PSI over
X25519 in the same alignment layer (the same rows), so neither party learns the other's IDs outside the
intersection, and returns, for each party, the row numbers of the common IDs
in one shared order: row i of A's aligned table and row i of B's are the
same person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psi import run_psi
from psi.buckets import DEFAULT_BUCKET_IDS
from psi.keys import MIN_RSA_BITS
from psi.suites import METHODS, PsiProtocol
from vfl.compute.engine import Engine, as_engine
from vfl.errors import NoOverlapError


@dataclass(frozen=True)
class Alignment:
    rows_a: np.ndarray
    rows_b: np.ndarray
    size_a: int
    size_b: int
    method: str
    seconds: float
    bytes_exchanged: int = 0
    declared_size_a: int | None = None  # the set sizes each party declared to the other in the PSI
    declared_size_b: int | None = None

    @property
    def size(self) -> int:
        return len(self.rows_a)

    def summary(self) -> dict[str, object]:
        return alignment_summary(self.size_a, self.size_b, self.size, self.method, self.seconds, self.bytes_exchanged,
                                 declared_size_a=self.declared_size_a, declared_size_b=self.declared_size_b)


def alignment_summary(
    size_a: int, size_b: int, size: int, method: str, seconds: float, bytes_: int, *,
    declared_size_a: int | None, declared_size_b: int | None,
) -> dict[str, object]:
    """What the job result reports about alignment (the same shape in simulation and services).

    ``declared_size_a`` / ``declared_size_b`` are the set sizes the parties
    declared to each other in the PSI: what each learns about the other's set
    besides the intersection, shown so that each operator sees it.
    """
    return {
        "method": method,
        "party_a_ids": size_a,
        "party_b_ids": size_b,
        "declared_size_a": declared_size_a,
        "declared_size_b": declared_size_b,
        "intersection": size,
        "overlap_of_a": size / size_a if size_a else 0.0,
        "overlap_of_b": size / size_b if size_b else 0.0,
        "seconds": round(seconds, 3),
        "bytes": bytes_,
    }


def no_overlap(size_a: int, size_b: int, source_a: str, source_b: str) -> NoOverlapError:
    return NoOverlapError(
        f"{source_a} ({size_a} IDs) and {source_b} ({size_b} IDs) have no ID in common; "
        "check that both use the same ID column and format (IDs are compared as exact text)"
    )


def align(
    ids_a: list[str],
    ids_b: list[str],
    *,
    key_bits: int = 2048,
    min_key_bits: int = MIN_RSA_BITS,
    engine: Engine | int | None = None,
    source_a: str = "party A",
    source_b: str = "party B",
    protocol: PsiProtocol = "rsa",
    bucket_ids: int = DEFAULT_BUCKET_IDS,
) -> Alignment:
    """Rows of the IDs both parties hold, found by RSA blind-signature PSI (or ECDH PSI, ``protocol="ecdh"``).

    The rows, ordered by ID, are the same for either protocol and any bucket
    size ``bucket_ids``. Raises :class:`NoOverlapError` when there is nothing in common.
    """
    result = run_psi(ids_a, ids_b, key_bits=key_bits, min_key_bits=min_key_bits, engine=as_engine(engine),
                     protocol=protocol, bucket_ids=bucket_ids)
    if result.intersection_size == 0:
        raise no_overlap(result.size_a, result.size_b, source_a, source_b)
    return Alignment(
        result.rows_a, result.rows_b, result.size_a, result.size_b, METHODS[protocol], result.seconds,
        result.bytes_a_to_b + result.bytes_b_to_a,
        declared_size_a=result.declared_size_a, declared_size_b=result.declared_size_b,
    )


# -- k feature parties -------------------------------------------------------------------------
#
# What each party learns. B runs the PSI with each feature party h separately (h holds
# the RSA key for its pair, as party A does with one feature party). Party h learns
# B's declared set size and its pairwise intersection with B; B learns every pairwise
# intersection. Feature parties never run the PSI with each other. Each party then
# trains on the joint rows only (those every feature party shares with B), which a
# feature party learns as a subset of its pairwise intersection.


@dataclass(frozen=True)
class MultiAlignment:
    rows_b: np.ndarray
    rows: list[np.ndarray]  # one per feature party, in the order given
    pairwise: list[Alignment]

    @property
    def size(self) -> int:
        return len(self.rows_b)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.pairwise)

    def summary(self) -> dict[str, object]:
        if len(self.pairwise) == 1:
            return self.pairwise[0].summary()
        first = self.pairwise[0]
        size_b = first.size_b
        return {
            "method": first.method,
            "party_b_ids": size_b,
            "intersection": self.size,
            "overlap_of_b": self.size / size_b if size_b else 0.0,
            "seconds": round(self.seconds, 3),
            "bytes": sum(p.bytes_exchanged for p in self.pairwise),
            "feature_parties": [{**p.summary(), "pairwise_intersection": p.size} for p in self.pairwise],
        }


def shared_rows_b(pairwise_b_rows: list[np.ndarray]) -> np.ndarray:
    """B's rows that every pairwise PSI matched, in the order of the first pair (by ID)."""
    common = set(int(r) for r in pairwise_b_rows[0])
    for rows in pairwise_b_rows[1:]:
        common &= set(int(r) for r in rows)
    return np.array([r for r in pairwise_b_rows[0] if int(r) in common], dtype=np.int64)


def joint_rows(pairwise_b_rows: list[np.ndarray], pairwise_h_rows: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows every feature party shares with B, from the pairwise PSI results.

    ``pairwise_b_rows[h][i]`` and ``pairwise_h_rows[h][i]`` are the same person. The joint
    rows keep the order of the first pair (the PSI orders by ID), so with one feature
    party the result is exactly that pair's alignment.
    """
    rows_b = shared_rows_b(pairwise_b_rows)
    rows_h = []
    for b_rows, h_rows in zip(pairwise_b_rows, pairwise_h_rows):
        by_b = {int(b): int(h) for b, h in zip(b_rows, h_rows)}
        rows_h.append(np.array([by_b[int(b)] for b in rows_b], dtype=np.int64))
    return rows_b, rows_h


def align_many(
    ids_b: list[str],
    feature_ids: Sequence[list[str]],
    *,
    key_bits: int = 2048,
    min_key_bits: int = MIN_RSA_BITS,
    engine: Engine | int | None = None,
    source_b: str = "party B",
    sources: Sequence[str] | None = None,
    protocol: PsiProtocol = "rsa",
    bucket_ids: int = DEFAULT_BUCKET_IDS,
) -> MultiAlignment:
    """B's PSI with each feature party, intersected: the rows of the IDs all of them hold.

    ``protocol`` ("rsa" or "ecdh") and ``bucket_ids`` apply to every pair, as in :func:`align`.
    """
    sources = list(sources or [f"feature party {i + 1}" for i in range(len(feature_ids))])
    pairwise = [
        align(ids, ids_b, key_bits=key_bits, min_key_bits=min_key_bits, engine=engine, source_a=source, source_b=source_b,
              protocol=protocol, bucket_ids=bucket_ids)
        for ids, source in zip(feature_ids, sources)
    ]
    if len(pairwise) == 1:
        return MultiAlignment(pairwise[0].rows_b, [pairwise[0].rows_a], pairwise)
    rows_b, rows = joint_rows([p.rows_b for p in pairwise], [p.rows_a for p in pairwise])
    if len(rows_b) == 0:
        raise NoOverlapError(
            f"{source_b} shares IDs with each of {', '.join(sources)}, but no ID is held by all of them; "
            "a joint model needs customers every party knows: check the ID columns, or leave a party out"
        )
    return MultiAlignment(rows_b, rows, pairwise)
