"""What party B gathers from its feature parties for IDs: partial scores u_h, or a scorecard's points totals.

Every feature party is asked at once; each answer is checked (its length, its
numbers, a reason candidate's code is the sender's own) before B uses it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.errors import ProtocolError
from vfl.service.context import JobContext
from vfl.service.scorecards import scaling_of, scorecard_of


@dataclass(frozen=True)
class PartialScores:
    """Σ_h u_h for each ID, and for each ID the first feature party that did not score it (None: all did).

    A scorecard job: ``points`` is Σ_h of the feature parties' points totals (``points_by_party`` each
    one's, by service name), ``total`` the logit they stand for (−points/factor), ``reasons`` each ID's
    reason candidates from the parties that share them.
    """

    total: np.ndarray
    missing_at: list[str | None]
    points: np.ndarray | None = None
    reasons: list[list[dict[str, Any]]] | None = None
    points_by_party: dict[str, np.ndarray] | None = None
    #: Each feature party's own partial scores u_h, by service name (not a scorecard job): B receives them anyway.
    by_party: dict[str, np.ndarray] | None = None

    @property
    def available(self) -> np.ndarray:
        return np.array([m is None for m in self.missing_at], dtype=bool)


async def gather_partial_scores(ctx: JobContext, ids: list[str], *, evaluation: bool = False,
                                job_id: str | None = None) -> PartialScores:
    """Every feature party's partial scores for ``ids``, asked at once (a scorecard job: points totals).

    ``evaluation``: party B's evaluation of the job asks (the request says so, and a feature party then does
    not count the rows as served in its CSI); predictions and batches do not. ``job_id``: another job with the
    same parties, one of a multi-class job's class trainings (default: this job).
    """
    path = f"/v1/peer/jobs/{job_id or ctx.record.job_id}/scores"
    peers = ctx.record.peer_ids(ctx.me, "feature")
    ids = ctx.data.canonical_ids(str(ctx.record.dataset), ids)  # B's ID rules: the form the PSI matched
    body: dict[str, Any] = {"ids": ids, "evaluation": True} if evaluation else {"ids": ids}
    answers = await asyncio.gather(*(ctx.client.call_json(peer, "POST", path, body) for peer in peers))
    config = scorecard_of(ctx.record)
    if config is not None:
        return _gather_points(ctx, config, peers, answers, len(ids))
    total = np.zeros(len(ids))
    missing_at: list[str | None] = [None] * len(ids)
    by_party: dict[str, np.ndarray] = {}
    for peer, answer in zip(peers, answers):
        u, ok = parse_partial_scores(answer, len(ids))
        by_party[peer] = np.where(ok, u, 0.0)
        total += by_party[peer]
        for n in np.flatnonzero(~ok):
            missing_at[n] = missing_at[n] or peer
    return PartialScores(total, missing_at, by_party=by_party)


def _gather_points(ctx: JobContext, config: Any, peers: list[str], answers: list[Any], count: int) -> PartialScores:
    """Party B, a scorecard job: the feature parties' points totals, the logit they stand for, their reasons."""
    points = np.zeros(count, dtype=np.int64)
    by_party: dict[str, np.ndarray] = {}
    missing_at: list[str | None] = [None] * count
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for peer, answer in zip(peers, answers):
        values, ok = parse_points(answer, count)
        by_party[peer] = np.where(ok, values, 0)
        points += by_party[peer]
        for n in np.flatnonzero(~ok):
            missing_at[n] = missing_at[n] or peer
        shared = answer.get("reasons") if isinstance(answer, dict) else None
        if shared is not None:
            if not isinstance(shared, list) or len(shared) != count:
                raise ProtocolError(f"{peer}'s reason candidates do not match the {count} IDs asked")
            for n, row in enumerate(shared):
                reasons[n].extend(_reasons(row, peer, config.reasons))
    factor = scaling_of(config).factor
    return PartialScores(-points / factor, missing_at, points, reasons, by_party)


def _reasons(row: Any, peer: str, most: int) -> list[dict[str, Any]]:
    """One ID's reason candidates from a feature party: at most ``most`` of (code, text, shortfall)."""
    if row is None:
        return []
    if not isinstance(row, list) or len(row) > most:
        raise ProtocolError(f"{peer} sent more than {most} reason candidates for an ID, or no list")
    out = []
    for item in row:
        try:
            code, text, shortfall = str(item["code"]), str(item["text"]), float(item["shortfall"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{peer}'s reason candidate is malformed: {exc!r}") from exc
        if not code.startswith(f"{peer}:") or len(code) > 300 or len(text) > 200 or not math.isfinite(shortfall):
            raise ProtocolError(f"{peer}'s reason code {code[:40]!r} is not one of its own ('{peer}:...'), "
                                "or too long, or its shortfall is not a number")
        out.append({"code": code, "text": text, "shortfall": shortfall})
    return out


def parse_points(answer: Any, expected: int) -> tuple[np.ndarray, np.ndarray]:
    """A feature party's points totals as (points, available)."""
    try:
        raw = answer["points"]
        ok = np.array([v is not None for v in raw], dtype=bool)
        values = np.array([0 if v is None else int(v) for v in raw], dtype=np.int64)
        if any(v is not None and (isinstance(v, bool) or int(v) != v) for v in raw):
            raise ValueError("a points total is not an integer")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"a feature party's points totals are malformed: {exc!r}") from exc
    if values.shape != (expected,):
        raise ProtocolError(f"a feature party returned {values.size} points totals for {expected} IDs")
    return values, ok


def parse_partial_scores(answer: Any, expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Party A's answer as (u_A, available): u_A is NaN where A answered "not available"."""
    try:
        values = np.asarray([np.nan if v is None else v for v in answer["u_a"]], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party A's partial scores are malformed: {exc!r}") from exc
    if values.shape != (expected,):
        raise ProtocolError(f"party A returned {values.size} partial scores for {expected} IDs")
    available = ~np.isnan(values)
    if not np.all(np.isfinite(values[available])):
        raise ProtocolError("party A returned partial scores that are not finite numbers")
    return values, available
