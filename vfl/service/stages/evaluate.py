"""Party B evaluates a trained job, closes it at every party, and writes its report.

Evaluation asks every feature party at once for its partial scores on the
aligned rows (as for any prediction), computes the metrics and a bank-only
baseline on the same rows (what federation adds), keeps the aggregate curves
the report draws, and saves B's model part. Then the others drop their
checkpoints (the arbiter's hold its private key) and B's runtime closes: no
message of the job is due any more. :func:`finish` ends the job once its
optional stages ran, and writes the report next to the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vfl.data.table import PartyTable
from vfl.errors import ConfigError, JobError, ProtocolError, VFLError
from vfl.ml.curves import curves_for, one_vs_rest_curves
from vfl.ml.loss_check import taylor_shortfall
from vfl.ml.metrics import model_metrics
from vfl.ml.multiclass import class_name, multiclass_metrics, normalise, one_vs_rest
from vfl.ml.parts import ModelPartB, evaluate_label_part, label_party_alone, label_party_alone_one_vs_rest
from vfl.protocol.label_party import LabelParty
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.record import model_document
from vfl.ml.scorecard.binning import iv_band
from vfl.ml.scorecard.card import card_for
from vfl.ml.scorecard.config import ScorecardConfig
from vfl.ml.scorecard.points import base_points
from vfl.ml.scorecard.stability import score_summary
from vfl.service.scorecards import coded, load_encoding, scaling_of, scorecard_of
from vfl.data.leakage import perfect_model, score_leak
from vfl.service.serving import timings
from vfl.service.timings import party_timings
from vfl.service.serving.partials import gather_partial_scores
from vfl.service.training_roles import one_vs_rest_class

log = logging.getLogger("vfl.service")


async def run(ctx: JobContext) -> None:
    """Evaluate the model, then close the job's training at every party."""
    role = ctx.runtime().roles["train"]
    aligned = await asyncio.to_thread(ctx.aligned_table)
    await _evaluate(ctx, role, aligned)
    # Clean up before announcing success, so whoever sees "succeeded" also sees no checkpoints anywhere.
    ctx.store.drop_checkpoints(ctx.record.job_id)
    await ctx.tell_peers("finished")
    await ctx.close_runtime()


async def _evaluate(ctx: JobContext, role: LabelParty, aligned: PartyTable) -> None:
    """Metrics of the federated model and of a bank-only baseline on the same rows."""
    record = ctx.record
    if record.multiclass is not None:
        await _evaluate_multiclass(ctx, role, aligned)
        return
    value = one_vs_rest_class(record)
    if value is not None:  # a class training of a multi-class job: measured on its own 0/1 label, as it trained
        aligned = replace(aligned, labels=one_vs_rest(aligned.labels, value))
    model = role.model()
    raw = aligned
    config = scorecard_of(record)
    if config is not None:  # B's model reads its coded characteristics; the feature parties send points totals
        aligned = coded(aligned, load_encoding(ctx.store, record.job_id))
    partial = await gather_partial_scores(ctx, aligned.ids, evaluation=True)  # not serving: no PSI or CSI count
    if not partial.available.all():
        missing = sorted({m for m in partial.missing_at if m is not None})
        raise ProtocolError(f"{', '.join(missing)} did not score {int((~partial.available).sum())} of the job's "
                            "own aligned rows")
    schedule = role.schedule
    splits = {"train": schedule.train_rows}
    if schedule.has_validation:
        splits["validation"] = schedule.validation_rows
    model, record.metrics, record.decision, predictions = evaluate_label_part(
        model, role.config, aligned.labels, model.scores(aligned.features, partial.total), splits)
    record.baseline, baseline_predictions = await asyncio.to_thread(_baseline, role, aligned, splits)
    split = "validation" if schedule.has_validation else "train"
    rows = splits[split]
    if role.config.model == "logistic":
        _leakage_warnings(ctx, partial, aligned.labels, rows, split)
        if not role.config.exact_loss and value is None and config is None:
            _taylor_warning(ctx, role, partial.total, aligned.labels)
    record.curve_split = split
    record.curves = curves_for(role.config.model, aligned.labels[rows], predictions[rows], baseline_predictions[rows])
    record.privacy = None if role.privacy is None else role.privacy.report()
    record.parameters = role.trajectory()
    first = record.peers[ctx.roster.features[0]]
    for peer in record.peer_ids(ctx.me, "feature"):
        try:
            summary = await ctx.client.call_json(peer, "GET", f"/v1/peer/jobs/{record.job_id}/convergence")
        except VFLError as exc:  # the report goes without that party's panel; the model is unaffected
            log.warning("job %s: %s's convergence summary unavailable: %s", record.job_id, peer, exc)
            continue
        if peer == first:
            record.party_a_convergence = summary
        record.feature_convergence = {**(record.feature_convergence or {}), peer: summary}
    if config is not None:
        await asyncio.to_thread(_scorecard, ctx, config, model, raw, partial, splits, predictions, split)
    ctx.store.save_model(record.job_id, model_document(model, record))
    ctx.update()


def _leakage_warnings(ctx: JobContext, partial: Any, labels: np.ndarray, rows: np.ndarray, split: str) -> None:
    """Warn when one feature party's partial score alone separates the classes, or the model does perfectly.

    B receives every feature party's plaintext partial scores for the aligned rows (the evaluation asks for
    them, as serving does), so this needs nothing more from any party.
    """
    record = ctx.record
    found = [w for peer, u in (partial.by_party or {}).items()
             if (w := score_leak(peer, u[rows], labels[rows], split)) is not None]
    perfect = perfect_model(record.metrics or {})
    for warning in found + ([perfect] if perfect and not found else []):
        if warning not in record.warnings:
            record.warnings.append(warning)
        ctx.event("data: %s", warning, level=logging.WARNING)


def _taylor_warning(ctx: JobContext, role: LabelParty, u_features: np.ndarray, labels: np.ndarray) -> None:
    """Suggest the exact loss when the Taylor loss cost the model accuracy on the training rows."""
    train = role.schedule.train_rows
    design, u_train = role.design[train], np.asarray(u_features)[train]
    warning = taylor_shortfall(design, u_train, design @ role.weights + u_train, labels[train], "training")
    if warning is not None and warning not in ctx.record.warnings:
        ctx.record.warnings.append(warning)
        ctx.event("training: %s", warning, level=logging.WARNING)


async def _evaluate_multiclass(ctx: JobContext, role: LabelParty, aligned: PartyTable) -> None:
    """A one-vs-rest job: each class's probability from its own training's model, normalised; macro and per-class
    metrics. The feature parties are asked for the partial scores of each class's model (one job each)."""
    record = ctx.record
    info = dict(record.multiclass or {})
    classes, jobs = [float(c) for c in info["classes"]], list(info["jobs"])
    labels = np.asarray(aligned.labels, dtype=np.float64)
    schedule = role.schedule
    splits = {"train": schedule.train_rows}
    if schedule.has_validation:
        splits["validation"] = schedule.validation_rows
    per_class, columns = [], []
    first = None
    for k, (value, job_id) in enumerate(zip(classes, jobs)):
        partial = await gather_partial_scores(ctx, aligned.ids, evaluation=True, job_id=job_id)
        if not partial.available.all():
            missing = sorted({m for m in partial.missing_at if m is not None})
            raise ProtocolError(f"{', '.join(missing)} did not score {int((~partial.available).sum())} of the job's "
                                f"own aligned rows for class training {job_id}")
        if k == 0:  # this job's own training: its decision layer is fitted here, as for a binary job
            first, metrics, _, predictions = evaluate_label_part(
                role.model(), role.config, one_vs_rest(labels, value),
                role.model().scores(aligned.features, partial.total), splits)
        else:  # a class training, evaluated (and its decision layer fitted) when it finished
            document = ctx.store.load_model(job_id)
            if document is None:
                raise ProtocolError(f"class training {job_id} left no model at party B")
            model = ModelPartB.from_dict(document)
            predictions = model.predict(aligned.features, partial.total)
            metrics = {name: model_metrics("logistic", one_vs_rest(labels, value)[rows], predictions[rows],
                                           threshold=model.threshold.value) for name, rows in splits.items()}
        columns.append(predictions)
        trained = record if k == 0 else ctx.child(job_id)
        per_class.append({"class": class_name(value), "job_id": job_id, "metrics": metrics,
                          "epochs_run": None if trained is None else trained.epoch,
                          "stop_reason": None if trained is None else trained.stop_reason,
                          "loss_history": [] if trained is None else list(trained.loss_history)})
    probabilities = normalise(np.column_stack(columns))
    record.metrics = {name: multiclass_metrics(labels[rows], probabilities[rows], classes)
                      for name, rows in splits.items()}
    record.curve_split = "validation" if schedule.has_validation else "train"
    curve_rows = splits[record.curve_split]
    record.decision = None
    record.curves = one_vs_rest_curves(labels[curve_rows], probabilities[curve_rows], classes)
    record.baseline = await asyncio.to_thread(label_party_alone_one_vs_rest, role, labels, classes, splits)
    record.privacy = None if role.privacy is None else role.privacy.report()
    record.parameters = role.trajectory()
    record.multiclass = {**info, "per_class": per_class}
    document = model_document(first, record) | {"multiclass": {"strategy": info.get("strategy"),
                                                               "classes": classes, "jobs": jobs}}
    ctx.store.save_model(record.job_id, document)
    ctx.update()


def _scorecard(ctx: JobContext, config: ScorecardConfig, model: Any, raw: PartyTable, partial: Any,
               splits: dict[str, np.ndarray], predictions: np.ndarray, split: str) -> None:
    """Party B, a scorecard job: its card, the base points, the integer scores' metrics and bands, the report.

    Each partner's points total per row is all B gets of its points (its table stays with it): B reports
    the range of the totals it received.
    """
    record = ctx.record
    scaling = scaling_of(config)
    encoding = load_encoding(ctx.store, record.job_id)
    codes = {n: f"{ctx.me}:{n}" for n in encoding.names}
    card = card_for(record.own_id(ctx.me), raw.features, raw.feature_names, encoding, model.scaler, model.weights,
                    scaling, codes)
    base = base_points(model.intercept, scaling)
    labels = np.asarray(raw.labels, dtype=np.float64)
    scores = base + card.totals(raw.features) + partial.points
    score = score_summary(scores, labels, splits[split], predictions, bands=config.bands, split=split,
                          scaling=scaling)
    for warning in score["warnings"]:
        ctx.event("scorecard: %s", warning, level=logging.WARNING)
    state = ctx.store.load_scorecard(record.job_id) or {}
    state |= {"base_points": base, "band_edges": score["band_edges"], "reference_counts": score["reference_counts"]}
    ctx.store.save_scorecard(record.job_id, state)
    ctx.store.save_card(record.job_id, card.to_dict())
    # Each partner's points total per row is all B gets of its points: its range is what B can report.
    received = partial.points_by_party or {}
    characteristics = [{**entry, "party": record.peers.get(entry["party"], entry["party"]),
                        "band": iv_band(entry["iv"])} for entry in state.get("report", [])]
    record.scorecard = {
        "config": config.model_dump(),
        "scaling": {"points0": scaling.points0, "odds0": scaling.odds0, "pdo": scaling.pdo,
                    "factor": scaling.factor, "offset": scaling.offset},
        "base_points": base,
        "characteristics": characteristics,
        "points": {ctx.me: card.table.to_dict()},
        "partner_ranges": {peer: [int(values.min()), int(values.max())] for peer, values in received.items()},
        # The reference counts live in scorecard.json (the score's PSI reads them there), not in the record.
        "score": {k: v for k, v in score.items() if k != "reference_counts"},
    }


def _baseline(role: LabelParty, aligned: PartyTable, splits: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    """The same model trained by party B alone, on the same rows: what federation adds (and its predictions)."""
    return label_party_alone(role, aligned.labels, splits)


async def finish(ctx: JobContext) -> None:
    """The job succeeded: say so with its headline metrics, and write its report (not for a coalition training)."""
    record = ctx.record
    if ctx.job.started is not None:
        record.timings.setdefault("total", round(time.perf_counter() - ctx.job.started, 3))
    # Before "succeeded": whoever sees the job done sees every party's timings (or why one is missing).
    record.peer_timings = await timings.ask_peers(ctx)
    ctx.advance(Stage.DONE)
    split = "validation" if (record.metrics or {}).get("validation") else "train"
    shown = ", ".join(f"{k} {v:.4f}" for k, v in ((record.metrics or {}).get(split) or {}).items()
                      if isinstance(v, float))
    ctx.event("succeeded after %d epochs in %.1fs (%s: %s)", record.epoch, record.timings.get("total", 0.0), split,
              shown or "no metrics")
    if record.coalition_of is None:  # a coalition training is read by its job, not by people
        try:
            await asyncio.to_thread(report, ctx)  # written next to the model
        except VFLError as exc:  # the job still succeeded; the report is made again on request
            log.warning("job %s: no report written: %s", record.job_id, exc)


def report(ctx: JobContext) -> str:
    """Party B's HTML report of a finished job (made on first request if it was not yet)."""
    if ctx.kind != "label":
        raise ConfigError("job reports are served by party B")
    record = ctx.record
    if record.state != "succeeded":
        raise JobError(f"job {record.job_id} is {record.state}; the report is made when it succeeds")
    page = ctx.store.load_report(record.job_id)
    if page is None:
        from vfl.report.figures import figures_for  # matplotlib: only when a report is drawn
        from vfl.report.html import render
        from vfl.report.summary import summary_from_record

        dumped = record.model_dump(mode="json")
        dumped["party_timings"] = party_timings(record, ctx.me)  # its own and each peer's, as its status shows
        summary = summary_from_record(dumped)
        page = render(summary, figures_for(summary))
        ctx.store.save_report(record.job_id, page)
    return page


__all__ = ["finish", "report", "run"]
