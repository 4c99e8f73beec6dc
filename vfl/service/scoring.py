"""Scores: party B's predictions, and the partial scores the feature parties agree to give for them.

For an ID, each feature party sends its plaintext partial score u_h to B, and
B adds its own part and returns the score of the joint model: the calibrated
probability and the label at the model's threshold (logistic), or the
predicted value (linear). Features are read by ID at request time from each
party's dataset (a file or a database table, :mod:`vfl.data.sources`), with the
scaler and clipping of training. B may also take its own features for an ID
from the request, for an applicant it has not stored yet.

Each ID gets a status, and only the IDs that are fine everywhere are scored:

* ``ok``;
* ``unknown id`` / ``invalid features: c1, c2`` / ``duplicated id``: B's own row;
* ``not available at <party>``: that feature party does not score the ID.

A feature party scores only IDs it agreed to score for the job: the aligned
rows, or any ID in its dataset where its own ``[scoring] allow_new_ids`` names
the job. Every other ID, one it does not hold, and one whose features are
invalid are answered "not available" alike, so the answer tells B nothing
more. Volume and rate are bounded per job and every request is in the feature
party's audit log (with the real reason per ID kept there).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from vfl.errors import ConfigError, JobError, LimitExceeded, ProtocolError, RateLimited
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.service.store import JobRecord
from vfl.data.sources import Lookup

if TYPE_CHECKING:
    from vfl.service.node import Node

T = TypeVar("T")
OK = "ok"
NOT_AVAILABLE = "not available"
#: A feature party persists its scored-ID counter at most this often (it is in memory in between).
COUNTER_FLUSH_SECONDS = 1.0
#: Up to this many IDs, a lookup that needs no I/O runs on the event loop: a thread hop costs more.
INLINE_LOOKUP_IDS = 256


async def off_the_loop(node: Node, dataset: str, count: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` reading ``count`` IDs of ``dataset``: in a thread, unless it is small and in memory."""
    if count <= INLINE_LOOKUP_IDS and node.source(dataset).in_memory():
        return work(*args)
    return await asyncio.to_thread(work, *args)


@dataclass
class ServingCache:
    """What scoring keeps between requests, so a request reads no file: model parts and aligned IDs.

    Entries are keyed by job and checked against the file's modification time,
    so a model written again (or a deleted job) is noticed at the next request.
    """

    models: dict[str, tuple[float, Any]] = field(default_factory=dict)
    aligned: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    score_times: dict[str, deque[float]] = field(default_factory=dict)  # feature party: recent requests per job
    counter_saved: dict[str, float] = field(default_factory=dict)  # feature party: when scored_ids was last saved

    def model(self, node: Node, job_id: str, kind: type[ModelPartA] | type[ModelPartB]) -> Any:
        mtime = _mtime(node.store.job_dir(job_id) / "model.json")
        cached = self.models.get(job_id)
        if cached is None or cached[0] != mtime:
            cached = (mtime, kind.from_dict(node.model_part(job_id)))
            self.models[job_id] = cached
        return cached[1]

    def aligned_ids(self, node: Node, job_id: str) -> frozenset[str]:
        mtime = _mtime(node.store.job_dir(job_id) / "alignment.json")
        cached = self.aligned.get(job_id)
        if cached is None or cached[0] != mtime:
            cached = (mtime, frozenset(node.store.load_alignment(job_id) or ()))
            self.aligned[job_id] = cached
        return cached[1]

    def forget(self, job_id: str) -> None:
        for table in (self.models, self.aligned, self.score_times, self.counter_saved):
            table.pop(job_id, None)


def _mtime(path: Any) -> float:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1.0


def flush_counters(node: Node) -> None:
    """Save every job's scored-ID counter (at shutdown; requests save it at most once a second)."""
    for job_id in list(node.serving.counter_saved):
        record = node.records.get(job_id)
        if record is not None:
            node.save(record)


@dataclass(frozen=True)
class PartialScores:
    """Σ_h u_h for each ID, and for each ID the first feature party that did not score it (None: all did)."""

    total: np.ndarray
    missing_at: list[str | None]

    @property
    def available(self) -> np.ndarray:
        return np.array([m is None for m in self.missing_at], dtype=bool)


async def predict(
    node: Node, job_id: str, ids: list[str], features: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Scores for ``ids`` from every party's features: one entry ``{id, score, label, status}`` per ID.

    ``features`` optionally maps an ID to party B's own feature values for it
    (by column name), used instead of B's dataset, like FATE-Serving's
    ``featureData``. The answer also names the threshold the labels use.
    """
    if node.party != "B":
        raise ConfigError("predictions are served by party B")
    record = node.record(job_id)
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state}; only a succeeded job can predict")
    check_request_size(node, len(ids))
    model: ModelPartB = node.serving.model(node, job_id, ModelPartB)
    own = await off_the_loop(node, record.dataset, len(ids), _own_features, node, record, model, ids, features or {})
    ready = [i for i, status in enumerate(own.status) if status == OK]
    scores = np.full(len(ids), np.nan)
    missing_at: list[str | None] = [None] * len(ids)
    if ready:  # the feature parties are asked only about IDs that B can score itself
        partial = await gather_partial_scores(node, record, [ids[i] for i in ready])
        u = model.scores(own.features[ready], np.where(partial.available, partial.total, 0.0))
        scores[ready] = model.link(u)
        for i, missing in zip(ready, partial.missing_at):
            missing_at[i] = missing
    labels = model.labels(np.nan_to_num(scores))
    out = []
    for i, item_id in enumerate(ids):
        status = own.status[i] if own.status[i] != OK else (
            OK if missing_at[i] is None else f"{NOT_AVAILABLE} at {missing_at[i]}")
        scored = status == OK
        out.append({
            "id": item_id,
            "score": float(scores[i]) if scored else None,
            "label": int(labels[i]) if scored and labels is not None else None,
            "status": status,
        })
    threshold = model.threshold.value if model.model == "logistic" else None
    return {"job_id": job_id, "model": model.model, "threshold": threshold,
            "calibrated": model.calibration is not None, "predictions": out}


def _own_features(node: Node, record: JobRecord, model: ModelPartB, ids: list[str],
                  given: dict[str, dict[str, Any]]) -> Lookup:
    """Party B's features for ``ids``: from the request where given, else from B's dataset."""
    stored = [i for i in ids if i not in given]
    found = node.lookup(record.dataset, stored, model.feature_names) if stored else Lookup(np.zeros((0, 0)), [])
    next_stored = iter(range(len(stored)))
    features = np.full((len(ids), len(model.feature_names)), np.nan)
    status: list[str] = []
    for n, item_id in enumerate(ids):
        if item_id in given:
            features[n], problem = _given_row(given[item_id], model.feature_names)
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


def check_request_size(node: Node, count: int) -> None:
    if count > node.config.limits.max_vector_length:
        raise LimitExceeded(f"{count} IDs exceed the limit of {node.config.limits.max_vector_length} per request; "
                            "split them, or use score-batch")


async def partial_scores(node: Node, job_id: str, ids: list[str], caller: str) -> dict[str, Any]:
    """A feature party's plaintext partial scores u_h for B: only for IDs it agreed to score.

    Those are the job's aligned rows, or any ID in its dataset where its own
    ``[scoring] allow_new_ids`` names the job. Any other ID, one it does not
    hold, and one whose features are missing or invalid are answered "not
    available" alike, so the answer tells B nothing about its customers beyond
    the ones it may score. Volume and rate are bounded per job
    (``limits.max_scored_ids``, ``limits.score_requests_per_minute``) and every
    request is written to this job's audit log.
    """
    if node.party != "A":
        raise ConfigError("partial scores come from a feature party")
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    check_request_size(node, len(ids))
    event = node.done.get(job_id)
    if event is not None and not event.is_set() and record.state == "training":
        # B can ask right after the last decision, a moment before this party has saved its part.
        await asyncio.wait_for(event.wait(), timeout=node.config.limits.request_timeout)
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state} at {node.config.party.id}; it has no model to score with")
    try:
        admit_scoring(node, record, len(ids))
    except LimitExceeded as exc:
        node.store.audit(job_id, f"refused to score {len(ids)} IDs for {caller}: {exc}")
        raise
    model: ModelPartA = node.serving.model(node, job_id, ModelPartA)
    allowed = list(range(len(ids)))
    if not node.config.scoring.allows_new_ids(job_id):
        aligned = node.serving.aligned_ids(node, job_id)
        allowed = [n for n, i in enumerate(ids) if i in aligned]
    u: list[float | None] = [None] * len(ids)
    reasons: dict[str, int] = {"not allowed": len(ids) - len(allowed)}
    if allowed:
        found = await off_the_loop(node, record.dataset, len(allowed), node.lookup, record.dataset,
                                   [ids[n] for n in allowed], model.feature_names)
        usable = found.ok
        values = model.partial_scores(found.features[usable]).tolist() if usable.any() else []
        for n, value in zip((n for n, ok in zip(allowed, usable) if ok), values):
            u[n] = value
        for status in found.status:
            if status != OK:
                reasons[status.split(":")[0]] = reasons.get(status.split(":")[0], 0) + 1
    record.scored_ids += len(ids)
    now = time.monotonic()
    if now - node.serving.counter_saved.get(job_id, 0.0) >= COUNTER_FLUSH_SECONDS:
        node.save(record)
        node.serving.counter_saved[job_id] = now
    scored = sum(v is not None for v in u)
    why = ", ".join(f"{count} {reason}" for reason, count in reasons.items() if count)
    node.store.audit(job_id, f"scored {scored} IDs for {caller} ({len(ids) - scored} not available){'; ' + why if why else ''}")
    return {"u_a": u, "status": [OK if v is not None else NOT_AVAILABLE for v in u]}


async def gather_partial_scores(node: Node, record: JobRecord, ids: list[str]) -> PartialScores:
    """Every feature party's partial scores for ``ids``, asked at once."""
    path = f"/v1/peer/jobs/{record.job_id}/scores"
    peers = node.peer_ids(record, "feature")
    answers = await asyncio.gather(*(node.client.call_json(peer, "POST", path, {"ids": ids}) for peer in peers))
    total = np.zeros(len(ids))
    missing_at: list[str | None] = [None] * len(ids)
    for peer, answer in zip(peers, answers):
        u, ok = parse_partial_scores(answer, len(ids))
        total += np.where(ok, u, 0.0)
        for n in np.flatnonzero(~ok):
            missing_at[n] = missing_at[n] or peer
    return PartialScores(total, missing_at)


def admit_scoring(node: Node, record: JobRecord, count: int) -> None:
    """Count this request against the job's scoring budget and rate, or refuse it."""
    limits = node.config.limits
    if record.scored_ids + count > limits.max_scored_ids:
        raise LimitExceeded(
            f"job {record.job_id} has scored {record.scored_ids} IDs; {count} more would pass "
            f"{node.config.party.id}'s limit of {limits.max_scored_ids} (limits.max_scored_ids)"
        )
    now = time.monotonic()
    recent = node.serving.score_times.setdefault(record.job_id, deque())
    while recent and now - recent[0] > 60.0:
        recent.popleft()
    if len(recent) >= limits.score_requests_per_minute:
        raise RateLimited(
            f"job {record.job_id}: more than {limits.score_requests_per_minute} scoring requests in a minute "
            f"(limits.score_requests_per_minute at {node.config.party.id}); retry later"
        )
    recent.append(now)


def convergence(node: Node, job_id: str, caller: str) -> dict[str, Any]:
    """For B's report: how A's weights settled, as norms per epoch; the weights stay with A.

    ‖θ_A‖ says little that B cannot already estimate from the partial scores it gets at
    prediction time; the individual weights (A's model) are not sent.
    """
    if node.party != "A":
        raise ConfigError("party A reports its own convergence")
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    if record.state != "succeeded" or not record.parameters:
        raise JobError(f"job {job_id} is {record.state} at party A; it has no finished weights")
    history = np.asarray(record.parameters["history"], dtype=np.float64)
    steps = np.diff(np.vstack([np.zeros(history.shape[1]), history]), axis=0)
    return {
        "weight_norm": np.linalg.norm(history, axis=1).tolist(),
        "step_norm": np.linalg.norm(steps, axis=1).tolist(),
    }


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
