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
import time
from typing import Any

import numpy as np

from vfl.data.sources import Lookup
from vfl.errors import ConfigError, JobError, LimitExceeded, RateLimited
from vfl.ml.multiclass import PROBABILITIES, STRATEGY, class_name, normalise
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.ml.score_noise import ScoreNoise
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.scorecards import scorecard_of
from vfl.service.serving.common import (COUNTER_FLUSH_SECONDS, NOT_AVAILABLE, OK, cached_aligned_ids, cached_model,
                                        check_request_size, off_the_loop, own_features)
from vfl.service.serving.partials import gather_partial_scores
from vfl.service.serving.points import points_totals, predict_scorecard

log = logging.getLogger("vfl.service")


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
        return await predict_scorecard(ctx, model, ids, features or {})
    if record.multiclass is not None:
        return await _predict_classes(ctx, model, ids, features or {})
    own = await off_the_loop(ctx, len(ids), own_features, ctx, model, ids, features or {})
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
        status = _row_status(own.status[i], missing_at[i])
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


async def _predict_classes(ctx: JobContext, model: ModelPartB, ids: list[str],
                           features: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A multi-class (one-vs-rest) job: every class's probability and the predicted class, per ID.

    Class k's probability P_k comes from its own training's model (the feature parties score each class's
    model: one request per class), and the K of them are normalised to sum to one (:mod:`vfl.ml.multiclass`).
    """
    record = ctx.record
    info = record.multiclass or {}
    classes, jobs = [float(c) for c in info["classes"]], list(info["jobs"])
    names = [class_name(c) for c in classes]
    models = [model]
    for job_id in jobs[1:]:
        document = ctx.store.load_model(job_id)
        if document is None:
            raise JobError(f"job {record.job_id}: class training {job_id} has no model at party B; train the job again")
        models.append(ModelPartB.from_dict(document))
    own = await off_the_loop(ctx, len(ids), own_features, ctx, model, ids, features)
    ready = [i for i, status in enumerate(own.status) if status == OK]
    per_class = np.zeros((len(ids), len(classes)))
    missing_at: list[str | None] = [None] * len(ids)
    if ready:  # the feature parties are asked only about IDs that B can score itself, once per class
        asked = [ids[i] for i in ready]
        for k, (part, job_id) in enumerate(zip(models, jobs)):
            partial = await gather_partial_scores(ctx, asked, job_id=job_id)
            u = part.scores(own.features[ready], np.where(partial.available, partial.total, 0.0))
            per_class[ready, k] = part.link(u)
            for i, missing in zip(ready, partial.missing_at):
                missing_at[i] = missing_at[i] or missing
    probabilities = normalise(per_class)
    predicted = np.argmax(probabilities, axis=1)
    out = []
    for i, item_id in enumerate(ids):
        status = _row_status(own.status[i], missing_at[i])
        scored = status == OK
        out.append({
            "id": item_id,
            "class": names[predicted[i]] if scored else None,
            "probabilities": {n: float(p) for n, p in zip(names, probabilities[i])} if scored else None,
            "status": status,
        })
    return {"job_id": record.job_id, "model": "logistic", "multiclass": info.get("strategy") or STRATEGY,
            "classes": names, "probabilities": PROBABILITIES, "predictions": out}


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
        canonical = ctx.data.canonical_ids(dataset, ids)  # as this party's ID rules wrote the aligned IDs
        allowed = [n for n, i in enumerate(canonical) if i in aligned]
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



def _row_status(own_status: str, missing_at: str | None) -> str:
    """An ID's status: B's own, unless it is OK and a feature party had no score for it (named)."""
    if own_status != OK:
        return own_status
    return OK if missing_at is None else f"{NOT_AVAILABLE} at {missing_at}"

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
    found = ctx.data.model_lookup(str(ctx.record.dataset), ids, model)
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
