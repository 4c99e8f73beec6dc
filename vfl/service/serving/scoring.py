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
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vfl.data.sources import Lookup
from vfl.errors import ConfigError, JobError, LimitExceeded, ProtocolError, RateLimited, VFLError
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.ml.score_noise import ScoreNoise
from vfl.service.context import JobContext
from vfl.service.jobs import JobTable
from vfl.service.lifecycle import Stage
from vfl.service.store import JobStore
from vfl.ml.scorecard.card import PartyCard
from vfl.ml.scorecard.reasons import merge, top_candidates
from vfl.ml.scorecard.stability import band_counts, population_stability, stability_status
from vfl.service.scorecards import load_card, require_scorecard, scaling_of, scorecard_of

T = TypeVar("T")
log = logging.getLogger("vfl.service")
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


def _mtime(path: Path) -> float:
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
    mtime = _mtime(ctx.store.job_dir(ctx.record.job_id) / "model.json")
    if scoring.model is None or scoring.model[0] != mtime:
        scoring.model = (mtime, kind.from_dict(model_part(ctx)))
    return scoring.model[1]


def cached_aligned_ids(ctx: JobContext) -> frozenset[str]:
    """The job's aligned IDs, kept between requests until the alignment file changes."""
    scoring = ctx.job.scoring
    mtime = _mtime(ctx.store.job_dir(ctx.record.job_id) / "alignment.json")
    if scoring.aligned_ids is None or scoring.aligned_ids[0] != mtime:
        scoring.aligned_ids = (mtime, frozenset(ctx.store.load_alignment(ctx.record.job_id) or ()))
    return scoring.aligned_ids[1]


def flush_counters(jobs: JobTable, store: JobStore) -> None:
    """Save every job's scored-ID counter (at shutdown; requests save it at most once a second)."""
    for job in jobs:
        if job.scoring.counter_saved is not None:
            store.save(job.record)
        if job.scoring.stability_dirty:  # a scorecard job's serving counts (its PSI and CSI)
            store.save_stability(job.record.job_id, _stability_data(job.scoring))
            job.scoring.stability_dirty = False


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

    @property
    def available(self) -> np.ndarray:
        return np.array([m is None for m in self.missing_at], dtype=bool)


async def predict(ctx: JobContext, ids: list[str], features: dict[str, dict[str, Any]] | None = None,
                  ) -> dict[str, Any]:
    """Scores for ``ids`` from every party's features: one entry ``{id, score, label, status}`` per ID.

    ``features`` optionally maps an ID to party B's own feature values for it
    (by column name), used instead of B's dataset, like FATE-Serving's
    ``featureData``. The answer also names the threshold the labels use.
    """
    if ctx.kind != "label":
        raise ConfigError("predictions are served by party B")
    record = ctx.record
    if record.state != "succeeded":
        raise JobError(f"job {record.job_id} is {record.state}; only a succeeded job can predict")
    check_request_size(ctx, len(ids))
    model: ModelPartB = cached_model(ctx, ModelPartB)
    if scorecard_of(record) is not None:
        return await _predict_scorecard(ctx, model, ids, features or {})
    own = await off_the_loop(ctx, len(ids), _own_features, ctx, model, ids, features or {})
    ready = [i for i, status in enumerate(own.status) if status == OK]
    scores = np.full(len(ids), np.nan)
    missing_at: list[str | None] = [None] * len(ids)
    if ready:  # the feature parties are asked only about IDs that B can score itself
        partial = await gather_partial_scores(ctx, [ids[i] for i in ready])
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
    return {"job_id": record.job_id, "model": model.model, "threshold": threshold,
            "calibrated": model.calibration is not None, "predictions": out}


async def _predict_scorecard(ctx: JobContext, model: ModelPartB, ids: list[str],
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
    own = await off_the_loop(ctx, len(ids), _own_features, ctx, names, ids, given)
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
        _save_stability(ctx, now=False)
    threshold = model.threshold.value
    return {"job_id": record.job_id, "model": "scorecard", "threshold": threshold,
            "calibrated": model.calibration is not None, "predictions": out}


def _own_features(ctx: JobContext, model: ModelPartB | list[str], ids: list[str],
                  given: dict[str, dict[str, Any]]) -> Lookup:
    """Party B's features for ``ids`` (the model's columns, or the named ones): from the request where given,
    else from B's dataset."""
    names = model if isinstance(model, list) else model.feature_names
    stored = [i for i in ids if i not in given]
    found = (ctx.data.lookup(str(ctx.record.dataset), stored, names) if stored
             else Lookup(np.zeros((0, 0)), []))
    next_stored = iter(range(len(stored)))
    features = np.full((len(ids), len(names)), np.nan)
    status: list[str] = []
    for n, item_id in enumerate(ids):
        if item_id in given:
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


def check_request_size(ctx: JobContext, count: int) -> None:
    limit = ctx.config.limits.max_vector_length
    if count > limit:
        raise LimitExceeded(f"{count} IDs exceed the limit of {limit} per request; split them, or use score-batch")


async def partial_scores(ctx: JobContext, ids: list[str], caller: str, evaluation: bool = False) -> dict[str, Any]:
    """A feature party's plaintext partial scores u_h for B: only for IDs it agreed to score.

    Those are the job's aligned rows, or any ID in its dataset where its own
    ``[scoring] allow_new_ids`` names the job. Any other ID, one it does not
    hold, and one whose features are missing or invalid are answered "not
    available" alike, so the answer tells B nothing about its customers beyond
    the ones it may score. Volume and rate are bounded per job
    (``limits.max_scored_ids``, ``limits.score_requests_per_minute``) and every
    request is written to this job's audit log.

    This is the one place a feature party's scores leave it. With ``[scoring]
    score_noise`` each row is clipped to its box and gets its fixed noise before it
    is scored (:mod:`vfl.ml.score_noise`); the job's record then says what that
    costs (``score_noise``), and the service log says it once per model and change.
    """
    if ctx.kind != "feature":
        raise ConfigError("partial scores come from a feature party")
    record, job_id = ctx.record, ctx.record.job_id
    record.require_caller(caller, "label")
    check_request_size(ctx, len(ids))
    if not ctx.job.trained.is_set() and record.state == "training":
        # B can ask right after the last decision, a moment before this party has saved its part.
        await asyncio.wait_for(ctx.job.trained.wait(), timeout=ctx.config.limits.request_timeout)
    if record.state != "succeeded" or record.stage is Stage.DELETED:
        what = "deleted at party B's request" if record.stage is Stage.DELETED else record.state
        raise JobError(f"job {job_id} is {what} at {ctx.me}; it has no model to score with")
    if scorecard_of(record) is not None:
        return await points_totals(ctx, ids, caller, evaluation)
    model: ModelPartA = cached_model(ctx, ModelPartA)
    partner, dataset = record.party_id("label"), str(record.dataset)
    try:
        ledger_changed = admit_scoring(ctx, model, len(ids))  # charged at once: no await between check and charge
    except LimitExceeded as exc:
        ctx.store.audit(job_id, f"refused to score {len(ids)} IDs for {caller}: {exc}")
        raise
    if ledger_changed:  # on disk before the first score of this model (or with this noise) leaves
        await asyncio.to_thread(ctx.releases.write, partner, dataset)
    elif ctx.releases.write_due(partner, dataset):
        ctx.spawn(asyncio.to_thread(ctx.releases.write, partner, dataset))
    noise = _noise_for(ctx, model)
    allowed = list(range(len(ids)))
    if not ctx.config.scoring.allows_new_ids(job_id):
        aligned = cached_aligned_ids(ctx)
        allowed = [n for n, i in enumerate(ids) if i in aligned]
    u: list[float | None] = [None] * len(ids)
    reasons: dict[str, int] = {"not allowed": len(ids) - len(allowed)}
    if allowed:
        asked = [ids[n] for n in allowed]
        found, values = await off_the_loop(ctx, len(allowed), _score_rows, ctx, model, noise, asked)
        usable = found.ok
        for n, value in zip((n for n, ok in zip(allowed, usable) if ok), values):
            u[n] = value
        for status in found.status:
            if status != OK:
                reasons[status.split(":")[0]] = reasons.get(status.split(":")[0], 0) + 1
    now = time.monotonic()
    scoring = ctx.job.scoring
    multiplier = ctx.config.scoring.score_noise
    if multiplier is not None and _report_noise(ctx, model, multiplier):
        scoring.counter_saved = None  # the record's noise report changed: saved now, not within the second
    if scoring.counter_saved is None or now - scoring.counter_saved >= COUNTER_FLUSH_SECONDS:
        # The job's own count, for its status: written in a thread, not on the event loop (an fsync stalls it).
        ctx.spawn(asyncio.to_thread(ctx.store.write_record, ctx.store.snapshot(record)))
        scoring.counter_saved = now
    scored = sum(v is not None for v in u)
    why = ", ".join(f"{count} {reason}" for reason, count in reasons.items() if count)
    ctx.store.audit(job_id, f"scored {scored} IDs for {caller} ({len(ids) - scored} not available){'; ' + why if why else ''}")
    return {"u_a": u, "status": [OK if v is not None else NOT_AVAILABLE for v in u]}


def _noise_for(ctx: JobContext, model: ModelPartA) -> ScoreNoise | None:
    """The noise this party adds to the model's rows for the job's label party (None: off)."""
    multiplier = ctx.config.scoring.score_noise
    if multiplier is None:
        if ctx.record.score_noise is not None:
            ctx.record.score_noise = None  # the record says what the scores get now
        return None
    return ctx.releases.score_noise(ctx.record, model, multiplier)


def _score_rows(ctx: JobContext, model: ModelPartA, noise: ScoreNoise | None, ids: list[str],
                ) -> tuple[Lookup, list[float]]:
    """The rows of ``ids`` (a status each) and the scores of the usable ones, noised when ``noise`` is set."""
    found = ctx.data.lookup(str(ctx.record.dataset), ids, model.feature_names)
    usable = found.ok
    if not usable.any():
        return found, []
    rows = found.features[usable]
    if noise is not None:
        rows = noise.perturb([i for i, ok in zip(ids, usable) if ok], rows)
    return found, model.partial_scores(rows).tolist()


def _report_noise(ctx: JobContext, model: ModelPartA, multiplier: float) -> bool:
    """Put the noise's accounting into the job's record, and log it, when it changed; whether it did."""
    report = ctx.releases.noise_accounting(ctx.record, model, multiplier, ctx.config.scoring.score_noise_delta)
    if ctx.record.score_noise == report:
        return False
    ctx.record.score_noise = report
    ctx.event("job %s: its scores for %s get noise of multiplier %g (σ %.3g on a score); per person, over all jobs "
              "with %s on dataset %r: ρ = %.3g zCDP, ε = %.3g at δ = %g%s", ctx.record.job_id,
              ctx.record.party_id("label"), multiplier, report["score_sigma"], ctx.record.party_id("label"),
              ctx.record.dataset, report["rho_per_person"], report["epsilon_per_person"], report["delta"],
              "" if not report["exact_jobs"] else
              f" (not for the people scored without noise by jobs {', '.join(report['exact_jobs'])})")
    return True


async def gather_partial_scores(ctx: JobContext, ids: list[str], *, evaluation: bool = False) -> PartialScores:
    """Every feature party's partial scores for ``ids``, asked at once (a scorecard job: points totals).

    ``evaluation``: party B's evaluation of the job asks (the request says so, and a feature party then does
    not count the rows as served in its CSI); predictions and batches do not.
    """
    path = f"/v1/peer/jobs/{ctx.record.job_id}/scores"
    peers = ctx.record.peer_ids(ctx.me, "feature")
    body: dict[str, Any] = {"ids": ids, "evaluation": True} if evaluation else {"ids": ids}
    answers = await asyncio.gather(*(ctx.client.call_json(peer, "POST", path, body) for peer in peers))
    config = scorecard_of(ctx.record)
    if config is not None:
        return _gather_points(ctx, config, peers, answers, len(ids))
    total = np.zeros(len(ids))
    missing_at: list[str | None] = [None] * len(ids)
    for peer, answer in zip(peers, answers):
        u, ok = parse_partial_scores(answer, len(ids))
        total += np.where(ok, u, 0.0)
        for n in np.flatnonzero(~ok):
            missing_at[n] = missing_at[n] or peer
    return PartialScores(total, missing_at)


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


async def points_totals(ctx: JobContext, ids: list[str], caller: str, evaluation: bool = False) -> dict[str, Any]:
    """A feature party, a scorecard job: each ID's points total (and, if its config allows, its reasons).

    Its points table stays here; only the total per ID leaves, like u_A in any job. With
    ``[scorecard] share_reasons`` it adds its top reason candidates per ID: a code of its own
    (``<party>:<characteristic>``), the text it publishes for it and the points short of the
    characteristic's best, never a value. Every released total and every reason candidate the
    request may carry is charged to the partner's budget (``limits.max_scored_ids``) before any
    row is read; every request is in the job's audit log.

    The rows count towards this party's CSI unless the request is party B's evaluation of the job
    (``evaluation``, taken at B's word only while that can be true: :func:`_is_evaluation`).
    """
    record, job_id = ctx.record, ctx.record.job_id
    claimed = evaluation
    evaluation = _is_evaluation(ctx, ids, evaluation)
    config = require_scorecard(record)
    settings = ctx.config.scorecard
    share = settings.share_reasons and config.reasons > 0
    charged = len(ids) * (1 + (config.reasons if share else 0))
    partner, dataset = record.party_id("label"), str(record.dataset)
    try:  # charged at once: no await between check and charge
        _rate(ctx)
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
                _save_stability(ctx, now=False)
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


def _rate(ctx: JobContext) -> None:
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
    mtime = _mtime(ctx.store.job_dir(ctx.record.job_id) / "card.json")
    if scoring.card is None or scoring.card[0] != mtime:
        scoring.card = (mtime, load_card(ctx.store, ctx.record.job_id))
    return scoring.card[1]


def _stability_counts(ctx: JobContext) -> Any:
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


def _save_stability(ctx: JobContext, *, now: bool = True) -> None:
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
    scoring = _stability_counts(ctx)
    scoring.evaluation_closed = ctx.record.generation
    _save_stability(ctx)


def _is_evaluation(ctx: JobContext, ids: list[str], evaluation: bool) -> bool:
    """Whether a points request is party B's evaluation of the job, not serving.

    Party B says so (``evaluation`` in its request: only :mod:`vfl.service.stages.evaluate` does). It is taken
    at its word only while it can be true: every ID is one of the job's aligned rows, and B has not yet said
    the job is finished (for this generation: a resume evaluates again). Otherwise the rows count as served.
    """
    if not evaluation:
        return False
    scoring = _stability_counts(ctx)
    if scoring.evaluation_closed is not None and scoring.evaluation_closed == ctx.record.generation:
        return False
    aligned = cached_aligned_ids(ctx)
    return all(i in aligned for i in ids)


def record_bins(ctx: JobContext, card: PartyCard, indices: np.ndarray) -> None:
    """Count the served rows per bin of each of this party's characteristics (their CSI, computed here)."""
    if not len(indices):
        return
    scoring = _stability_counts(ctx)
    counts = scoring.bin_counts
    if counts is None or len(counts) != len(card.encoding.bins) or any(
            len(c) != b.count for c, b in zip(counts, card.encoding.bins)):
        counts = [np.zeros(b.count, dtype=np.int64) for b in card.encoding.bins]
    scoring.bin_counts = [c + np.bincount(indices[:, j], minlength=b.count)
                          for j, (c, b) in enumerate(zip(counts, card.encoding.bins))]


def _band_reference(ctx: JobContext) -> tuple[list[float], list[int]] | None:
    """Party B: the training score bands' edges and rows per band, kept until ``scorecard.json`` changes."""
    scoring = ctx.job.scoring
    mtime = _mtime(ctx.store.job_dir(ctx.record.job_id) / "scorecard.json")
    if scoring.bands is None or scoring.bands[0] != mtime:
        state = ctx.store.load_scorecard(ctx.record.job_id) or {}
        edges, reference = state.get("band_edges"), state.get("reference_counts")
        scoring.bands = (mtime, (list(edges), list(reference)) if edges is not None and reference else None)
    return scoring.bands[1]


def _characteristics(ctx: JobContext, counts: list[Any] | None) -> list[dict[str, Any]]:
    card = cached_card(ctx)
    if counts is None or len(counts) != len(card.encoding.bins):
        counts = [np.zeros(b.count, dtype=np.int64) for b in card.encoding.bins]
    out = []
    for bins, reference, actual in zip(card.encoding.bins, card.reference, counts):
        rows = int(np.sum(actual))
        value = population_stability(reference, np.asarray(actual)) if rows else 0.0
        out.append({"party": ctx.me, "characteristic": bins.name, "csi": value, "status": stability_status(value),
                    "rows": rows})
    return out


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
    scoring = _stability_counts(ctx)
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
    scoring = _stability_counts(ctx)
    counts = band_counts(np.asarray(scores, dtype=np.float64), np.asarray(bands[0], dtype=np.float64))
    if scoring.band_counts is None or len(counts) != len(scoring.band_counts):
        scoring.band_counts = np.zeros(len(counts), dtype=np.int64)
    scoring.band_counts = scoring.band_counts + counts


def admit_scoring(ctx: JobContext, model: ModelPartA, count: int) -> bool:
    """Charge this request to the job's rate and to its partner's budgets (IDs, directions), or refuse it.

    Synchronous: nothing else runs between the checks and the charges (see :mod:`.releases`).
    Returns whether the partner's ledger changed in more than its count (a direction released for
    the first time, a feature's noise box, a noise multiplier, a job's first exact score).
    """
    record, limits = ctx.record, ctx.config.limits
    now = time.monotonic()
    recent = ctx.job.scoring.recent
    while recent and now - recent[0] > 60.0:
        recent.popleft()
    if len(recent) >= limits.score_requests_per_minute:
        raise RateLimited(
            f"job {record.job_id}: more than {limits.score_requests_per_minute} scoring requests in a minute "
            f"(limits.score_requests_per_minute at {ctx.me}); retry later"
        )
    scoring = ctx.config.scoring
    new = ctx.releases.admit(record, model, count, limits.max_scored_ids, scoring.score_directions,
                             scoring.score_noise, scoring.score_noise_delta)
    recent.append(now)
    record.scored_ids += count
    return new


def convergence(ctx: JobContext, caller: str) -> dict[str, Any]:
    """For B's report: how A's weights settled, as norms per epoch; the weights stay with A.

    ‖θ_A‖ says little that B cannot already estimate from the partial scores it gets at
    prediction time; the individual weights (A's model) are not sent.
    """
    if ctx.kind != "feature":
        raise ConfigError("party A reports its own convergence")
    record = ctx.record
    record.require_caller(caller, "label")
    if record.state != "succeeded" or not record.parameters:
        raise JobError(f"job {record.job_id} is {record.state} at party A; it has no finished weights")
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
