"""Entity alignment: which rows of party A and party B are the same person.

:func:`align` is the one entry point. It returns, for each party, the row
numbers of the common IDs in one shared order, so row i of A's aligned table
and row i of B's are the same person.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

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

    @property
    def size(self) -> int:
        return len(self.rows_a)

    def summary(self) -> dict[str, object]:
        return {
            "method": self.method,
            "party_a_ids": self.size_a,
            "party_b_ids": self.size_b,
            "intersection": self.size,
            "overlap_of_a": self.size / self.size_a if self.size_a else 0.0,
            "overlap_of_b": self.size / self.size_b if self.size_b else 0.0,
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes_exchanged,
        }


def align(ids_a: list[str], ids_b: list[str], *, source_a: str = "party A", source_b: str = "party B") -> Alignment:
    """Rows of the IDs both parties hold, in B's row order (a plain join).

    Raises :class:`NoOverlapError` when there is nothing in common.
    """
    started = time.perf_counter()
    index_a = {v: i for i, v in enumerate(ids_a)}
    pairs = [(index_a[v], j) for j, v in enumerate(ids_b) if v in index_a]
    if not pairs:
        raise NoOverlapError(
            f"{source_a} ({len(ids_a)} IDs) and {source_b} ({len(ids_b)} IDs) have no ID in common; "
            "check that both use the same ID column and format (IDs are compared as exact text)"
        )
    rows_a = np.array([p[0] for p in pairs], dtype=np.int64)
    rows_b = np.array([p[1] for p in pairs], dtype=np.int64)
    return Alignment(rows_a, rows_b, len(ids_a), len(ids_b), "join", time.perf_counter() - started)
