"""A scorecard's scores: points totals from the feature parties, integer scores and reasons at party B.

A feature party releases each ID's points total (its table stays with it) and,
only with its ``[scorecard] share_reasons``, its top reason candidates: a code
of its own and the points short of the characteristic's best, never a value.
Party B adds its base points and its own points, and merges every party's
candidates into the top reasons.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from vfl.errors import JobError, LimitExceeded, ProtocolError
from vfl.ml.parts import ModelPartB
from vfl.ml.scorecard.reasons import merge, top_candidates
from vfl.service.context import JobContext
from vfl.service.scorecards import require_scorecard, scaling_of
from vfl.service.serving.common import (COUNTER_FLUSH_SECONDS, NOT_AVAILABLE, OK, admit_rate, cached_aligned_ids,
                                        cached_card, off_the_loop, own_features)
from vfl.service.serving.partials import gather_partial_scores
from vfl.service.serving.stability import is_evaluation, record_bins, record_scores, save_stability


async def predict_scorecard(ctx: JobContext, model: ModelPartB, ids: list[str],
                             given: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Party B, a scorecard: per ID the integer score (base + B's points + every partner's total), its
    probability, and up to ``reasons`` reason codes with their texts across the parties."""
    record = ctx.record
    config = require_scorecard(record)
    scaling = scaling_of(config)
    card = cached_card(ctx)
    state = ctx.store.load_scorecard(record.job_id) or {}
    if "base_points" not in state:
        raise JobError(f"job {record.job_id} has no base points at party B: its evaluation did not finish")
    base = int(state["base_points"])
    names = list(card.encoding.names)
    own = await off_the_loop(ctx, len(ids), own_features, ctx, names, ids, given)
    ready = [i for i, status in enumerate(own.status) if status == OK]
    out = [{"id": i, "score": None, "probability": None, "label": None, "status": s, "reasons": []}
           for i, s in zip(ids, own.status)]
    if ready:
        partial = await gather_partial_scores(ctx, [ids[i] for i in ready])
        indices = card.encoding.bin_indices(own.features[ready])
        mine = card.table.totals(indices)
        if partial.points is None or partial.reasons is None:
            raise ProtocolError("the feature parties answered with partial scores, not points totals")
        scores = base + mine + partial.points
        logit = (scaling.offset - scores) / scaling.factor
        probabilities = model.link(logit)
        labels = model.labels(probabilities)
        own_candidates = top_candidates(card.table.shortfalls(indices), card.table.codes, config.reasons)
        # B's own texts from its [scorecard.codes] (else the characteristic's name); partners' come with them.
        texts = {code: ctx.config.scorecard.codes.get(name, name) for name, code in zip(card.table.names,
                                                                                          card.table.codes)}
        served, served_rows = [], []
        for row, i in enumerate(ready):
            if partial.missing_at[row] is not None:
                out[i]["status"] = f"{NOT_AVAILABLE} at {partial.missing_at[row]}"
                continue
            candidates = [list(own_candidates[row]),
                          [(r["code"], r["shortfall"]) for r in partial.reasons[row]]]
            for r in partial.reasons[row]:
                texts[r["code"]] = r["text"]
            merged = merge([[c] for c in candidates], config.reasons)[0] if config.reasons else []
            out[i].update(score=int(scores[row]), probability=float(probabilities[row]),
                          label=None if labels is None else int(labels[row]),
                          reasons=[{"code": c, "text": texts.get(c, c)} for c in merged])
            served.append(int(scores[row]))
            served_rows.append(row)
        record_scores(ctx, np.asarray(served, dtype=np.float64))
        record_bins(ctx, card, indices[served_rows])
        save_stability(ctx, now=False)
    threshold = model.threshold.value
    return {"job_id": record.job_id, "model": "scorecard", "threshold": threshold,
            "calibrated": model.calibration is not None, "predictions": out}


async def points_totals(ctx: JobContext, ids: list[str], caller: str, evaluation: bool = False) -> dict[str, Any]:
    """A feature party, a scorecard job: each ID's points total (and, if its config allows, its reasons).

    Its points table stays here; only the total per ID leaves, like u_A in any job. With
    ``[scorecard] share_reasons`` it adds its top reason candidates per ID: a code of its own
    (``<party>:<characteristic>``), the text it publishes for it and the points short of the
    characteristic's best, never a value. Every released total and every reason candidate the
    request may carry is charged to the partner's budget (``limits.max_scored_ids``) before any
    row is read; every request is in the job's audit log.

    The rows count towards this party's CSI unless the request is party B's evaluation of the job
    (``evaluation``, taken at B's word only while that can be true: :func:`is_evaluation`).
    """
    record, job_id = ctx.record, ctx.record.job_id
    claimed = evaluation
    evaluation = is_evaluation(ctx, ids, evaluation)
    config = require_scorecard(record)
    settings = ctx.config.scorecard
    share = settings.share_reasons and config.reasons > 0
    charged = len(ids) * (1 + (config.reasons if share else 0))
    partner, dataset = record.party_id("label"), str(record.dataset)
    try:  # charged at once: no await between check and charge
        admit_rate(ctx)
        ctx.releases.admit_points(record, charged, ctx.config.limits.max_scored_ids)
    except LimitExceeded as exc:
        ctx.store.audit(job_id, f"refused to score {len(ids)} IDs for {caller}: {exc}")
        raise
    record.scored_ids += len(ids)
    if ctx.releases.write_due(partner, dataset):
        ctx.spawn(asyncio.to_thread(ctx.releases.write, partner, dataset))
    card = cached_card(ctx)
    allowed = list(range(len(ids)))
    if not ctx.config.scoring.allows_new_ids(job_id):
        aligned = cached_aligned_ids(ctx)
        allowed = [n for n, i in enumerate(ids) if i in aligned]
    points: list[int | None] = [None] * len(ids)
    reasons: list[list[dict[str, Any]] | None] = [None] * len(ids)
    if allowed:
        asked = [ids[n] for n in allowed]
        found = await off_the_loop(ctx, len(allowed), ctx.data.lookup, str(record.dataset), asked,
                                   list(card.encoding.names))
        usable = [n for n, ok in zip(allowed, found.ok) if ok]
        if usable:
            indices = card.encoding.bin_indices(found.features[found.ok])
            totals = card.table.totals(indices)
            for n, total in zip(usable, totals.tolist()):
                points[n] = int(total)
            if not evaluation:
                record_bins(ctx, card, indices)
                save_stability(ctx, now=False)
            if share:
                texts = {f"{ctx.me}:{name}": settings.codes.get(name, f"{ctx.me}:{name}") for name in card.table.names}
                candidates = top_candidates(card.table.shortfalls(indices), card.table.codes, config.reasons)
                for n, row in zip(usable, candidates):
                    reasons[n] = [{"code": code, "text": texts.get(code, code), "shortfall": float(s)}
                                  for code, s in row]
    if ctx.job.scoring.counter_saved is None or time.monotonic() - ctx.job.scoring.counter_saved >= COUNTER_FLUSH_SECONDS:
        ctx.spawn(asyncio.to_thread(ctx.store.write_record, ctx.store.snapshot(record)))
        ctx.job.scoring.counter_saved = time.monotonic()
    scored = sum(p is not None for p in points)
    released = sum(len(r or ()) for r in reasons)
    purpose = (" for its evaluation of the job" if evaluation else
               " (asked as an evaluation the job is past: counted as served)" if claimed else "")
    ctx.store.audit(job_id, f"released {scored} points totals{f' and {released} reason candidates' if share else ''} "
                            f"for {caller}{purpose} ({len(ids) - scored} not available)")
    answer: dict[str, Any] = {"points": points, "status": [OK if p is not None else NOT_AVAILABLE for p in points]}
    if share:
        answer["reasons"] = reasons
    return answer
