"""Principal reasons for a score: the characteristics that cost the applicant the most points.

A characteristic's shortfall is its best possible points minus the points the
applicant got (Regulation B's "points below maximum" method). Each party ranks
its own characteristics (:func:`top_candidates`) and sends only (reason code,
shortfall) pairs, never a value; the label party merges every party's lists
(:func:`merge`). Ordering is by shortfall, largest first, ties by code, so every
party and every rerun gives the same reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vfl.errors import ConfigError, DataError

#: Regulation B asks for up to four principal reasons.
MAX_REASONS = 4


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ConfigError(f"the number of reasons must be an integer ≥ 0, got {k!r}")


def _ranked(candidates: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Largest shortfall first, ties by code; the same code twice is kept once, at its largest shortfall."""
    seen: set[str] = set()
    out = []
    for code, shortfall in sorted(candidates, key=lambda c: (-c[1], c[0])):
        if code not in seen:
            seen.add(code)
            out.append((code, shortfall))
    return out


def top_candidates(shortfalls: np.ndarray, codes: Sequence[str], k: int = MAX_REASONS) -> list[list[tuple[str, float]]]:
    """Per row, up to ``k`` (code, shortfall) pairs with the largest shortfall > 0 (ties by code).

    ``shortfalls`` is (rows, characteristics), e.g. :meth:`PointsTable.shortfalls`;
    ``codes`` has one reason code per characteristic. A characteristic at its
    best bin (shortfall 0) is never a reason.
    """
    _check_k(k)
    s = np.asarray(shortfalls, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(codes):
        raise DataError(f"shortfalls must be (rows, {len(codes)}) for {len(codes)} reason codes, got {s.shape}")
    if len(set(codes)) != len(codes):
        raise DataError("reason codes must be unique within a party; two characteristics share a code")
    out = []
    for row in s:
        positive = [(code, float(v)) for code, v in zip(codes, row) if v > 0]
        out.append(_ranked(positive)[:k])
    return out


def merge(candidate_lists: Sequence[list[list[tuple[str, float]]]], k: int = MAX_REASONS) -> list[list[str]]:
    """Per row, every party's candidates merged: the top ``k`` codes by shortfall (ties by code).

    ``candidate_lists`` holds one :func:`top_candidates` result per party, all
    for the same rows in the same order.
    """
    _check_k(k)
    rows = {len(c) for c in candidate_lists}
    if len(rows) > 1:
        raise DataError(f"every party's reason candidates must cover the same rows; got row counts {sorted(rows)}")
    n = rows.pop() if rows else 0
    return [[code for code, _ in _ranked([c for party in candidate_lists for c in party[i]])[:k]] for i in range(n)]
