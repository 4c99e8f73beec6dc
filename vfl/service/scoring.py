"""Scores: party B's predictions, and the partial scores party A agrees to give for them.

For an ID, A sends its plaintext partial score u_A to B, and B returns the
score of the joint model. A scores only IDs it agreed to score for the job: the
aligned rows, or any ID in its dataset where its own ``[scoring]
allow_new_ids`` names the job. Every other ID is answered "not available",
whether or not A holds it. Volume and rate are bounded per job and every
request is in A's audit log.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from vfl.errors import ConfigError, JobError, LimitExceeded, ProtocolError, RateLimited
from vfl.model_parts import ModelPartA, ModelPartB
from vfl.service.store import JobRecord

if TYPE_CHECKING:
    from vfl.service.node import Node


async def predict(node: Node, job_id: str, ids: list[str]) -> dict[str, Any]:
    if node.party != "B":
        raise ConfigError("predictions are served by party B")
    record = node.record(job_id)
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state}; only a succeeded job can predict")
    if len(ids) > node.config.limits.max_vector_length:
        raise LimitExceeded(f"{len(ids)} IDs exceed the limit of {node.config.limits.max_vector_length} per request")
    model = ModelPartB.from_dict(node.model_part(job_id))
    table = await asyncio.to_thread(node.table, record.dataset)
    rows = table.rows_for(ids)  # unknown IDs at B: a clear error before A is asked
    u_a, available = await gather_partial_scores(node, record, ids)
    scores = model.predict(table.features[rows], np.where(available, u_a, 0.0))
    out = []
    for i, score, ok in zip(ids, scores, available):
        if not ok:  # a feature party does not score this ID for this job
            out.append({"id": i, "status": "not available"})
            continue
        item: dict[str, Any] = {"id": i, "status": "ok", "score": float(score)}
        if model.model == "logistic":
            item["label"] = int(score >= 0.5)
        out.append(item)
    return {"job_id": job_id, "model": model.model, "predictions": out}


async def partial_scores(node: Node, job_id: str, ids: list[str], caller: str) -> dict[str, Any]:
    """Party A's plaintext partial scores u_A for B: only for IDs A agreed to score.

    Those are the job's aligned rows, or any ID in A's dataset where A's own
    ``[scoring] allow_new_ids`` names the job. Any other ID, and one A does not
    hold, is answered "not available" alike, so the answer tells B nothing
    about A's customers beyond the ones it may score. Volume and rate are
    bounded per job (``limits.max_scored_ids``, ``limits.score_requests_per_minute``)
    and every request is written to this job's audit log.
    """
    if node.party != "A":
        raise ConfigError("partial scores come from party A")
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    if len(ids) > node.config.limits.max_vector_length:
        raise LimitExceeded(f"{len(ids)} IDs exceed the limit of {node.config.limits.max_vector_length} per request")
    event = node.done.get(job_id)
    if event is not None and not event.is_set() and record.state == "training":
        # B can ask right after the last decision, a moment before A has saved its part.
        await asyncio.wait_for(event.wait(), timeout=node.config.limits.request_timeout)
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state} at party A; it has no model to score with")
    try:
        admit_scoring(node, record, len(ids))
    except LimitExceeded as exc:
        node.store.audit(job_id, f"refused to score {len(ids)} IDs for {caller}: {exc}")
        raise
    model = ModelPartA.from_dict(node.model_part(job_id))
    table = await asyncio.to_thread(node.table, record.dataset)
    rows = table.find(ids)
    if not node.config.scoring.allows_new_ids(job_id):
        aligned = set(node.store.load_alignment(job_id) or ())
        rows = [row if i in aligned else None for i, row in zip(ids, rows)]
    known = [row for row in rows if row is not None]
    values = iter(model.partial_scores(table.features[known]).tolist()) if known else iter(())
    u_a = [None if row is None else next(values) for row in rows]
    unavailable = len(ids) - len(known)
    node.save(record, scored_ids=record.scored_ids + len(ids))
    node.store.audit(job_id, f"scored {len(known)} IDs for {caller} ({unavailable} not available)")
    return {"u_a": u_a, "status": ["ok" if v is not None else "not available" for v in u_a]}


async def gather_partial_scores(node: Node, record: JobRecord, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every feature party's partial scores for ``ids``, asked at once: (Σ_h u_h, available at all of them)."""
    path = f"/v1/peer/jobs/{record.job_id}/scores"
    peers = node.peer_ids(record, "feature")
    answers = await asyncio.gather(*(node.client.call_json(peer, "POST", path, {"ids": ids}) for peer in peers))
    total = np.zeros(len(ids))
    available = np.ones(len(ids), dtype=bool)
    for answer in answers:
        u, ok = parse_partial_scores(answer, len(ids))
        available &= ok
        total += np.where(ok, u, 0.0)
    return total, available


def admit_scoring(node: Node, record: JobRecord, count: int) -> None:
    """Count this request against the job's scoring budget and rate, or refuse it."""
    limits = node.config.limits
    if record.scored_ids + count > limits.max_scored_ids:
        raise LimitExceeded(
            f"job {record.job_id} has scored {record.scored_ids} IDs; {count} more would pass party A's "
            f"limit of {limits.max_scored_ids} (limits.max_scored_ids)"
        )
    now = time.monotonic()
    recent = node.score_times.setdefault(record.job_id, deque())
    while recent and now - recent[0] > 60.0:
        recent.popleft()
    if len(recent) >= limits.score_requests_per_minute:
        raise RateLimited(
            f"job {record.job_id}: more than {limits.score_requests_per_minute} scoring requests in a minute "
            "(limits.score_requests_per_minute at party A); retry later"
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
