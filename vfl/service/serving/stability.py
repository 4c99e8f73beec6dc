"""A scorecard's stability after go-live: what each party served, against the job's own rows.

Party B counts the served scores per band of its training scores (score PSI);
every party counts the bins of its own characteristics for the IDs it scored
(CSI). Evaluation rows are not served rows: B's evaluation says so, and a
feature party believes it only for aligned IDs and only until B's "finished".
Counts live in memory and are written to ``stability.json`` at most once a
second and at shutdown. Read with the bands 0.1 (watch) and 0.25 (alarm).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from vfl.errors import ConfigError, JobError, VFLError
from vfl.ml.scorecard.card import PartyCard
from vfl.ml.scorecard.stability import band_counts, population_stability, stability_status
from vfl.service.context import JobContext
from vfl.service.jobs import JobTable
from vfl.service.scorecards import scorecard_of
from vfl.service.serving.common import COUNTER_FLUSH_SECONDS, cached_aligned_ids, cached_card, file_mtime
from vfl.service.store import JobStore

log = logging.getLogger("vfl.service")


def stability_counts(ctx: JobContext) -> Any:
    """The job's serving counts in memory (loaded once from ``stability.json``): the job's Scoring holds them."""
    scoring = ctx.job.scoring
    if scoring.stability_loaded:
        return scoring
    stored = ctx.store.load_stability(ctx.record.job_id) or {}
    if scoring.bin_counts is None and stored.get("bin_counts"):
        scoring.bin_counts = [np.asarray(c, dtype=np.int64) for c in stored["bin_counts"]]
    if scoring.band_counts is None and stored.get("band_counts"):
        scoring.band_counts = np.asarray(stored["band_counts"], dtype=np.int64)
    if scoring.evaluation_closed is None and isinstance(stored.get("evaluation_closed"), int):
        scoring.evaluation_closed = int(stored["evaluation_closed"])
    scoring.stability_loaded = True
    return scoring


def _stability_data(scoring: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if scoring.bin_counts is not None:
        data["bin_counts"] = [np.asarray(c).tolist() for c in scoring.bin_counts]
    if scoring.band_counts is not None:
        data["band_counts"] = np.asarray(scoring.band_counts).tolist()
    if scoring.evaluation_closed is not None:
        data["evaluation_closed"] = scoring.evaluation_closed
    return data


def save_stability(ctx: JobContext, *, now: bool = True) -> None:
    """Write the serving counts as they are now (a snapshot, in a thread): at once, or at most once a second
    while rows are served (:func:`flush_counters` writes what is left at shutdown)."""
    scoring = ctx.job.scoring
    scoring.stability_dirty = True
    at = time.monotonic()
    if not now and scoring.stability_saved is not None and at - scoring.stability_saved < COUNTER_FLUSH_SECONDS:
        return
    scoring.stability_saved, scoring.stability_dirty = at, False
    ctx.spawn(asyncio.to_thread(ctx.store.save_stability, ctx.record.job_id, _stability_data(scoring)))


def close_evaluation(ctx: JobContext) -> None:
    """A feature party, on party B's "finished": the job's evaluation is over for this generation, so from now
    on every points total it releases is a served one and counts towards its CSI, whatever the request says."""
    if ctx.kind != "feature" or scorecard_of(ctx.record) is None:
        return
    scoring = stability_counts(ctx)
    scoring.evaluation_closed = ctx.record.generation
    save_stability(ctx)


def is_evaluation(ctx: JobContext, ids: list[str], evaluation: bool) -> bool:
    """Whether a points request is party B's evaluation of the job, not serving.

    Party B says so (``evaluation`` in its request: only :mod:`vfl.service.stages.evaluate` does). It is taken
    at its word only while it can be true: every ID is one of the job's aligned rows, and B has not yet said
    the job is finished (for this generation: a resume evaluates again). Otherwise the rows count as served.
    """
    if not evaluation:
        return False
    scoring = stability_counts(ctx)
    if scoring.evaluation_closed is not None and scoring.evaluation_closed == ctx.record.generation:
        return False
    aligned = cached_aligned_ids(ctx)
    return all(i in aligned for i in ctx.data.canonical_ids(str(ctx.record.dataset), ids))


def record_bins(ctx: JobContext, card: PartyCard, indices: np.ndarray) -> None:
    """Count the served rows per bin of each of this party's characteristics (their CSI, computed here)."""
    if not len(indices):
        return
    scoring = stability_counts(ctx)
    counts = scoring.bin_counts
    if counts is None or len(counts) != len(card.encoding.bins) or any(
            len(c) != b.count for c, b in zip(counts, card.encoding.bins)):
        counts = [np.zeros(b.count, dtype=np.int64) for b in card.encoding.bins]
    scoring.bin_counts = [c + np.bincount(indices[:, j], minlength=b.count)
                          for j, (c, b) in enumerate(zip(counts, card.encoding.bins))]


def _band_reference(ctx: JobContext) -> tuple[list[float], list[int]] | None:
    """Party B: the training score bands' edges and rows per band, kept until ``scorecard.json`` changes."""
    scoring = ctx.job.scoring
    mtime = file_mtime(ctx.store.job_dir(ctx.record.job_id) / "scorecard.json")
    if scoring.bands is None or scoring.bands[0] != mtime:
        state = ctx.store.load_scorecard(ctx.record.job_id) or {}
        edges, reference = state.get("band_edges"), state.get("reference_counts")
        scoring.bands = (mtime, (list(edges), list(reference)) if edges is not None and reference else None)
    return scoring.bands[1]


def _characteristics(ctx: JobContext, counts: list[Any] | None) -> list[dict[str, Any]]:
    return cached_card(ctx).stability(counts, party=ctx.me)


#: The bands every stability index is read with: below WATCH stable, below ALARM watch, else alarm.
BANDS = {"watch": 0.1, "alarm": 0.25}


def stability(ctx: JobContext) -> dict[str, Any]:
    """A scorecard job's stability at this party, its own values only, on served rows only (predictions and
    batches; party B's evaluation of the job is not serving): party B the score's PSI (served scores against
    the training bands) and its own characteristics' CSI, a feature party each of its characteristics' CSI
    (served rows per bin against the job's rows). Status: stable below 0.1, watch below 0.25, alarm above."""
    record = ctx.record
    if scorecard_of(record) is None:
        raise JobError(f"job {record.job_id} is not a scorecard job: it has no stability to report")
    if ctx.kind not in ("label", "feature"):
        raise ConfigError("stability is reported by party B and the feature parties")
    scoring = stability_counts(ctx)
    answer: dict[str, Any] = {"job_id": record.job_id, "party": ctx.me, "bands": dict(BANDS)}
    if ctx.kind == "label":
        bands = _band_reference(ctx)
        if bands is None:
            raise JobError(f"job {record.job_id} has no training score bands here (it has not succeeded)")
        served = scoring.band_counts
        rows = int(np.sum(served)) if served is not None else 0
        value = population_stability(np.asarray(bands[1]), np.asarray(served)) if rows else 0.0
        answer["score"] = {"psi": value, "status": stability_status(value), "rows": rows}
    answer["characteristics"] = _characteristics(ctx, scoring.bin_counts)
    return answer


def served_stability(ctx: JobContext) -> dict[str, Any] | None:
    """:func:`stability` for a succeeded scorecard job at B or a feature party (None for any other job, or
    when it cannot be read): what ``/metrics`` shows at scrape time, from the counts in memory."""
    record = ctx.record
    if ctx.kind not in ("label", "feature") or record.state != "succeeded" or scorecard_of(record) is None:
        return None
    try:
        return stability(ctx)
    except (VFLError, OSError, ValueError) as exc:
        log.debug("job %s: no stability for /metrics: %s", record.job_id, exc)
        return None


def record_scores(ctx: JobContext, scores: np.ndarray) -> None:
    """Party B: count the served scores per training band (the score's PSI)."""
    bands = _band_reference(ctx)
    if bands is None or not len(scores):
        return
    scoring = stability_counts(ctx)
    counts = band_counts(np.asarray(scores, dtype=np.float64), np.asarray(bands[0], dtype=np.float64))
    if scoring.band_counts is None or len(counts) != len(scoring.band_counts):
        scoring.band_counts = np.zeros(len(counts), dtype=np.int64)
    scoring.band_counts = scoring.band_counts + counts


def flush_counters(jobs: JobTable, store: JobStore) -> None:
    """Save every job's scored-ID counter (at shutdown; requests save it at most once a second)."""
    for job in jobs:
        if job.scoring.counter_saved is not None:
            store.save(job.record)
        if job.scoring.stability_dirty:  # a scorecard job's serving counts (its PSI and CSI)
            store.save_stability(job.record.job_id, _stability_data(job.scoring))
            job.scoring.stability_dirty = False
