"""What every scoring module shares: statuses, cached model parts, B's own rows, the rate of requests.

The model part, the aligned IDs and a scorecard's card are read from the job's
files once and kept until the file changes (its modification time).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vfl.data.sources import Lookup, prepared
from vfl.errors import JobError, LimitExceeded, RateLimited
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.ml.prep import Preparation
from vfl.ml.scorecard.card import PartyCard
from vfl.service.context import JobContext
from vfl.service.scorecards import load_card

T = TypeVar("T")


OK = "ok"


NOT_AVAILABLE = "not available"


#: A feature party persists its scored-ID counter at most this often (it is in memory in between).
COUNTER_FLUSH_SECONDS = 1.0


#: Up to this many IDs, a lookup that needs no I/O runs on the event loop: a thread hop costs more.
INLINE_LOOKUP_IDS = 256


async def off_the_loop(ctx: JobContext, count: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` reading ``count`` IDs of the job's dataset: in a thread, unless it is small and in memory."""
    if count <= INLINE_LOOKUP_IDS and ctx.data.source(str(ctx.record.dataset)).in_memory():
        return work(*args)
    return await asyncio.to_thread(work, *args)


def file_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1.0


def model_part(ctx: JobContext) -> dict[str, Any]:
    """This party's model part of the job, as saved."""
    model = ctx.store.load_model(ctx.record.job_id)
    if model is None:
        raise JobError(f"job {ctx.record.job_id} has no model at party {ctx.me!r} (state {ctx.record.state})")
    return model


def cached_model(ctx: JobContext, kind: type[ModelPartA] | type[ModelPartB]) -> Any:
    """The job's model part, kept between requests until its file changes."""
    scoring = ctx.job.scoring
    mtime = file_mtime(ctx.store.job_dir(ctx.record.job_id) / "model.json")
    if scoring.model is None or scoring.model[0] != mtime:
        scoring.model = (mtime, kind.from_dict(model_part(ctx)))
    return scoring.model[1]


def cached_aligned_ids(ctx: JobContext) -> frozenset[str]:
    """The job's aligned IDs, kept between requests until the alignment file changes."""
    scoring = ctx.job.scoring
    mtime = file_mtime(ctx.store.job_dir(ctx.record.job_id) / "alignment.json")
    if scoring.aligned_ids is None or scoring.aligned_ids[0] != mtime:
        scoring.aligned_ids = (mtime, frozenset(ctx.store.load_alignment(ctx.record.job_id) or ()))
    return scoring.aligned_ids[1]


def own_features(ctx: JobContext, model: ModelPartB | list[str], ids: list[str],
                  given: dict[str, dict[str, Any]]) -> Lookup:
    """Party B's features for ``ids`` (the model's columns, or the named ones): from the request where given,
    else from B's dataset."""
    names = model if isinstance(model, list) else model.feature_names
    preparation = None if isinstance(model, list) else model.preparation
    stored = [i for i in ids if i not in given]
    if not stored:
        found = Lookup(np.zeros((0, 0)), [])
    elif isinstance(model, list):
        found = ctx.data.lookup(str(ctx.record.dataset), stored, names)
    else:
        found = ctx.data.model_lookup(str(ctx.record.dataset), stored, model)
    next_stored = iter(range(len(stored)))
    features = np.full((len(ids), len(names)), np.nan)
    status: list[str] = []
    for n, item_id in enumerate(ids):
        if item_id in given:
            if preparation is not None:  # given by the dataset's own column names, prepared as in training
                raw, problem = _given_raw(given[item_id], preparation)
                prepared_row = prepared(Lookup(raw[None, :], [problem or OK]), preparation)
                features[n], problem = prepared_row.features[0], prepared_row.status[0]
                status.append(problem)
                continue
            features[n], problem = _given_row(given[item_id], names)
            status.append(problem or OK)
        else:
            row = next(next_stored)
            features[n] = found.features[row]
            status.append(found.status[row])
    return Lookup(features, status)


def _given_row(values: dict[str, Any], names: list[str]) -> tuple[np.ndarray, str | None]:
    """One ID's features as sent in the request, by name; a status naming the bad or missing columns."""
    row = np.full(len(names), np.nan)
    bad = []
    for j, name in enumerate(names):
        value = values.get(name)
        try:
            number = float(value) if value is not None and not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            bad.append(name)
        row[j] = number
    return row, (f"invalid features: {', '.join(bad)}" if bad else None)


def _given_raw(values: dict[str, Any], preparation: Preparation) -> tuple[np.ndarray, str | None]:
    """One ID's raw columns as sent in a request: numbers, and category codes for the text columns."""
    row = np.full(len(preparation.inputs), np.nan)
    bad = []
    for j, name in enumerate(preparation.inputs):
        value = values.get(name)
        if name in preparation.categories:
            text = None if value is None else str(value).strip() or None
            row[j] = preparation.encode(name, [text])[0]
            continue
        try:
            number = float(value) if value is not None and not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) and name not in (preparation.fills or {}):
            bad.append(name)
        row[j] = number if math.isfinite(number) else math.nan
    return row, (f"invalid features: {', '.join(bad)}" if bad else None)


def check_request_size(ctx: JobContext, count: int) -> None:
    limit = ctx.config.limits.max_vector_length
    if count > limit:
        raise LimitExceeded(f"{count} IDs exceed the limit of {limit} per request; split them, or use score-batch")


def admit_rate(ctx: JobContext) -> None:
    limits, now = ctx.config.limits, time.monotonic()
    recent = ctx.job.scoring.recent
    while recent and now - recent[0] > 60.0:
        recent.popleft()
    if len(recent) >= limits.score_requests_per_minute:
        raise RateLimited(f"job {ctx.record.job_id}: more than {limits.score_requests_per_minute} scoring requests "
                          f"in a minute (limits.score_requests_per_minute at {ctx.me}); retry later")
    recent.append(now)


def cached_card(ctx: JobContext) -> PartyCard:
    """The job's scorecard part, kept between requests until its file changes."""
    scoring = ctx.job.scoring
    mtime = file_mtime(ctx.store.job_dir(ctx.record.job_id) / "card.json")
    if scoring.card is None or scoring.card[0] != mtime:
        scoring.card = (mtime, load_card(ctx.store, ctx.record.job_id))
    return scoring.card[1]
