"""Entity alignment: which rows of party A and party B are the same person.

:func:`align` is the one entry point. It runs the RSA blind-signature PSI
(:mod:`psi`), so neither party learns the other's IDs outside the
intersection, and returns, for each party, the row numbers of the common IDs
in one shared order: row i of A's aligned table and row i of B's are the
same person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi import run_psi
from psi.keys import MIN_RSA_BITS
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
    workers: int | None = None,
    source_a: str = "party A",
    source_b: str = "party B",
) -> Alignment:
    """Rows of the IDs both parties hold, found by RSA blind-signature PSI.

    Raises :class:`NoOverlapError` when there is nothing in common.
    """
    result = run_psi(ids_a, ids_b, key_bits=key_bits, min_key_bits=min_key_bits, workers=workers)
    if result.intersection_size == 0:
        raise no_overlap(result.size_a, result.size_b, source_a, source_b)
    return Alignment(
        result.rows_a, result.rows_b, result.size_a, result.size_b, "rsa-blind-signature-psi", result.seconds,
        result.bytes_a_to_b + result.bytes_b_to_a,
        declared_size_a=result.declared_size_a, declared_size_b=result.declared_size_b,
    )
