"""A scorecard job's binning: party B bins every party's characteristics, selects, and fixes the coded widths.

Between the alignment and training (stage ``binning``). Party B:

1. bins its own characteristics on its aligned rows (plaintext, its own labels);
2. with several feature parties, first tells each the joint rows (as a training start would);
3. sends each feature party a :class:`~vfl.protocol.binning.BinningRequest` (B's own fresh Paillier
   key with its proof, [[y]] on the aligned rows) and gets back the masked encrypted event sums per
   fine bin (:class:`~vfl.protocol.binning.BinningCounts`): from them B has WOE and IV of every
   characteristic of every party;
4. selects by IV (every party's) and by correlation (its own), and sends each feature party the merge
   of its fine bins, the characteristics B keeps of it and B's coded width (:class:`BinningApply`);
   the feature party drops its own correlated characteristics and answers its coded width.

The coded widths replace the gradient lengths registered from the feature counts: B's record holds
all of them and the arbiter gets them in its training start; each feature party holds its own (which
it computed) and B's (which B told it), and vouches for both to the arbiter in its key request, as in
any job. A feature party answers binning runs only within its budget per label party and dataset
(``[scorecard] max_binning_runs``) and only with bins of at least its ``min_bin_share``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from vfl.errors import ConfigError, JobError, LimitExceeded, ProtocolError
from vfl.ml.schedule import gradient_lengths
from vfl.ml.scorecard.config import ScorecardConfig
from vfl.ml.scorecard.encoding import Encoding, own_selection
from vfl.ml.scorecard.selection import by_iv
from vfl.protocol.binning import (
    BinningCounts, BinningFeatureRole, BinningLabelRole, BinningRequest, BinningResult,
)
from vfl.protocol.wire import MEDIA_TYPE, decode_message, encode_message
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.psi_roles import take_joint_alignment
from vfl.service.scorecards import require_scorecard, scorecard_of
from vfl.service.spec import BinningApply, TrainingStart


def is_scorecard(ctx: JobContext) -> bool:
    return scorecard_of(ctx.record) is not None


# -- party B ---------------------------------------------------------------------------------------------


async def run(ctx: JobContext) -> None:
    """Party B's step: bin, select, and fix every party's coded width."""
    record, roster = ctx.record, ctx.roster
    config = require_scorecard(record)
    began = time.perf_counter()
    aligned = await asyncio.to_thread(ctx.aligned_table)
    training = ctx.training_config()
    if roster.k > 1:  # the feature parties bin the rows every party shares, in B's order
        rows = TrainingStart(n_rows=len(aligned), ids=aligned.ids).model_dump()
        await asyncio.gather(*(ctx.client.call_json(record.peers[pid], "POST",
                                                    f"/v1/peer/jobs/{record.job_id}/binning/rows", rows)
                               for pid in roster.features))
    label = BinningLabelRole(record.job_id, aligned.labels, config.binning,
                             features={pid: None for pid in roster.features}, party=roster.label, engine=ctx.engine,
                             key_bits=training.key_bits, min_key_bits=ctx.config.limits.min_key_bits)
    own = await asyncio.to_thread(label.bin_own, aligned.features, aligned.feature_names)
    results: dict[str, BinningResult] = {}
    for pid in roster.features:
        request = await asyncio.to_thread(label.request, pid)  # the first makes the key and encrypts y
        response = await ctx.client.request(record.peers[pid], "POST", f"/v1/peer/jobs/{record.job_id}/binning",
                                            content=encode_message(request), headers={"Content-Type": MEDIA_TYPE})
        counts = decode_message(response.content, BinningCounts)
        if counts.party != pid:
            raise ProtocolError(f"{record.peers[pid]} answered binning as party {counts.party!r}")
        results[pid] = await asyncio.to_thread(label.receive_counts, counts)
    reports = {(r.party, r.name): r for r in label.characteristics()}
    ivs = {key: r.iv_total for key, r in reports.items()}
    kept_by_iv: dict[str, list[str]] = {}
    for party in [roster.label, *roster.features]:
        mine = {n: iv for (p, n), iv in ivs.items() if p == party}
        kept = by_iv(mine, min_iv=config.selection.min_iv, top_k=config.selection.top_k)
        kept_by_iv[party] = kept or [max(mine, key=lambda n: mine[n])]  # at least the best one
    names = kept_by_iv[roster.label]
    encoding = Encoding("woe", tuple(own[n] for n in names),
                        tuple(reports[(roster.label, n)].direction or "none" for n in names),
                        tuple(np.asarray(reports[(roster.label, n)].woe, dtype=np.float64) for n in names))
    encoding = await asyncio.to_thread(own_selection, encoding, aligned.features, aligned.feature_names,
                                       config.selection, {n: ivs[(roster.label, n)] for n in names})
    n_b = gradient_lengths({}, len(encoding.column_names), training, label=roster.label)[roster.label]
    lengths = {roster.label: n_b}
    for pid in roster.features:
        body = BinningApply(result=results[pid].model_dump(mode="json"), kept=kept_by_iv[pid], label_length=n_b)
        answer = await ctx.client.call_json(record.peers[pid], "POST",
                                            f"/v1/peer/jobs/{record.job_id}/binning/result", body.model_dump())
        lengths[pid] = _coded_length(answer, record.peers[pid])
    report = []
    for (party, name), r in reports.items():
        # B never learns a partner's edges (its rows carry none); which of a partner's characteristics survive
        # the partner's own correlation selection B does not learn either: "selected" says kept by IV there.
        report.append({"party": party, "name": name, "direction": r.direction, "iv": r.iv_total,
                       "selected": name in encoding.names if party == roster.label else name in kept_by_iv[party],
                       "bins": r.bin_rows()})
    ctx.store.save_scorecard(record.job_id, {"encoding": encoding.to_dict(), "report": report,
                                             "kept_by_iv": kept_by_iv, "coded_lengths": lengths})
    record.timings["binning"] = round(time.perf_counter() - began, 3)
    ctx.update(gradient_lengths={pid: lengths[pid] for pid in roster.trainers})
    ctx.event("binned %d characteristics of %d parties; training on %s coded columns", len(reports),
              roster.k + 1, ", ".join(f"{record.peers[p]} {n}" for p, n in lengths.items()))


def _coded_length(answer: Any, peer: str) -> int:
    try:
        length = int(answer["gradient_length"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{peer}'s binning answer does not state its coded width: {exc!r}") from exc
    if not 1 <= length <= 1_000_000:
        raise ProtocolError(f"{peer} states {length} coded columns; a job needs between 1 and 1,000,000")
    return length


# -- a feature party -------------------------------------------------------------------------------------


def _check(ctx: JobContext, caller: str) -> ScorecardConfig:
    record = ctx.record
    record.require_caller(caller, "label")
    if ctx.kind != "feature":
        raise ConfigError("binning counts come from a feature party")
    config = scorecard_of(record)
    if config is None:
        raise JobError(f"job {record.job_id} is not a scorecard job: it has no binning")
    if record.finished:
        raise JobError(f"job {record.job_id} {record.state_phrase(already=True)}")
    if record.stage not in (Stage.PSI, Stage.ALIGNED, Stage.BINNING):
        raise JobError(f"job {record.job_id} is at stage {record.stage}; binning comes after the alignment")
    return config


async def _aligned(ctx: JobContext) -> None:
    if ctx.store.load_alignment(ctx.record.job_id) is not None:
        return
    timeout = ctx.config.limits.request_timeout
    try:
        await asyncio.wait_for(ctx.job.aligned.wait(), timeout=timeout)
    except TimeoutError:
        raise JobError(f"job {ctx.record.job_id}: alignment has not finished here after {timeout:g}s") from None


async def joint_rows(ctx: JobContext, start: TrainingStart, caller: str) -> dict[str, Any]:
    """A feature party: the rows every party shares, before the binning (several feature parties)."""
    _check(ctx, caller)
    await _aligned(ctx)
    if start.ids is None:
        raise ProtocolError("party B's joint rows name no IDs")
    take_joint_alignment(ctx, start.ids, start.n_rows)
    return {"n_rows": len(start.ids)}


async def answer(ctx: JobContext, frame: bytes, caller: str) -> bytes:
    """A feature party: the masked encrypted event sums of its fine bins, within its budget of binning runs."""
    _check(ctx, caller)
    record = ctx.record
    request = decode_message(frame, BinningRequest)
    if request.job_id != record.job_id:
        raise ProtocolError(f"a binning request for job {request.job_id!r} reached job {record.job_id}")
    await _aligned(ctx)
    if ctx.job.binning is not None:
        raise JobError(f"job {record.job_id}: this party answered its binning already; a new run needs a new job")
    partner, dataset = record.party_id("label"), str(record.dataset)
    settings = ctx.config.scorecard
    try:  # charged at once, on the event loop: concurrent requests cannot overrun it
        runs = ctx.releases.admit_binning(partner, dataset, settings.max_binning_runs)
    except LimitExceeded as exc:
        ctx.store.audit(record.job_id, f"refused a binning run for {caller}: {exc}")
        raise
    await asyncio.to_thread(ctx.releases.write, partner, dataset)  # on disk before any sum leaves
    aligned = await asyncio.to_thread(ctx.aligned_table)
    role = BinningFeatureRole(record.job_id, record.own_id(ctx.me), aligned.features, aligned.feature_names,
                              settings.min_bin_share, engine=ctx.engine,
                              min_key_bits=ctx.config.limits.min_key_bits, max_key_bits=ctx.config.limits.max_key_bits)
    try:
        counts = await asyncio.to_thread(role.answer, request)
    except Exception as exc:
        ctx.store.audit(record.job_id, f"refused a binning request from {caller}: {type(exc).__name__}: {exc}")
        raise
    ctx.job.binning = role
    if record.stage is not Stage.BINNING:
        ctx.advance(Stage.BINNING)
    ctx.store.audit(record.job_id, f"answered binning run {runs} of {settings.max_binning_runs} for {caller}: "
                                   f"{len(counts.characteristics)} characteristics, {role.rows} rows")
    ctx.event("binning: answered %s's encrypted labels for %d characteristics (run %d of %d for %s on %r)",
              caller, len(counts.characteristics), runs, settings.max_binning_runs, partner, dataset)
    return encode_message(counts)


async def apply(ctx: JobContext, body: BinningApply, caller: str) -> dict[str, Any]:
    """A feature party: merge its fine bins as B says, keep B's choice, drop its own correlated ones; store."""
    config = _check(ctx, caller)
    record = ctx.record
    role: BinningFeatureRole | None = ctx.job.binning
    if role is None:
        raise JobError(f"job {record.job_id}: a binning result before this party answered a binning request "
                       "(or this party restarted since)")
    result = BinningResult.model_validate(body.result)
    bins = role.apply(result)
    unknown = sorted(set(body.kept) - set(bins))
    if unknown or len(set(body.kept)) != len(body.kept):
        raise ProtocolError(f"party B keeps characteristics {unknown[:10] or body.kept[:10]} this party did not bin "
                            "(or names one twice)")
    names = [n for n in role.feature_names if n in set(body.kept)]
    encoding = Encoding("indicators", tuple(bins[n] for n in names),
                        tuple(role.directions.get(n) or "none" for n in names))
    aligned = await asyncio.to_thread(ctx.aligned_table)
    # This party knows no IV: it breaks ties between correlated characteristics by its own column order.
    encoding = await asyncio.to_thread(own_selection, encoding, aligned.features, aligned.feature_names,
                                       config.selection, {n: -i for i, n in enumerate(names)})
    width = len(encoding.column_names)
    me, label = record.own_id(ctx.me), ctx.roster.label
    ctx.store.save_scorecard(record.job_id, {"encoding": encoding.to_dict()})
    ctx.update(gradient_lengths={me: width, label: body.label_length})
    ctx.event("binning: kept %d of %d characteristics (%s), %d coded columns", len(encoding.names),
              len(role.feature_names), ", ".join(encoding.names), width)
    return {"gradient_length": width}


__all__ = ["answer", "apply", "is_scorecard", "joint_rows", "run"]
