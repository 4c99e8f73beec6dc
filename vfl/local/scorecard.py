"""A credit scorecard in one process: align, bin (federated), select, train with constraints, points, reasons.

The same roles as the services run over direct calls; only the network is missing::

    from vfl.local.scorecard import simulate_scorecard
    result = simulate_scorecard([shop], bank, TrainingConfig(key_bits=1024), ScorecardConfig())
    result["scorecard"]["points"]["B"]        # the bank's points table
    result["scorecard"]["score"]["auc"]       # AUC of the integer scores

The chain (``vfl simulate --scorecard``):

1. **Alignment**: RSA blind-signature PSI, as every job.
2. **Binning** (:mod:`vfl.protocol.binning`): B bins its own characteristics with
   its labels; each feature party bins its own with B's encrypted labels and
   returns masked encrypted event counts per bin; B computes WOE and IV for all,
   and tells each feature party how its fine bins merge (never a count).
3. **Selection**: B drops characteristics by IV (every party's); each party
   drops its own correlated characteristics locally.
4. **Training**: B's characteristics WOE-coded, a feature party's as bin
   indicators (:mod:`vfl.ml.scorecard.encoding`), with the four-step protocol and
   each party projecting its own weights onto its constraints after every step.
5. **Points**: every party turns its weights into its own points table; B adds
   the base points. At scoring a feature party releases its points total.
6. **Reasons**: each party's largest shortfalls from its characteristics' best
   points; B merges them into the top four.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vfl.compute.engine import Engine, make_engine
from vfl.crypto.keys import PrivateKey, PublicKey
from vfl.data.table import PartyTable
from vfl.errors import ConfigError
from vfl.ml.multiclass import class_values, is_multiclass
from vfl.local.simulate import ProgressFn, StageFn, TrainedRun, align_parties, check_label_table, train_federated
from vfl.ml.config import TrainingConfig
from vfl.ml.metrics import model_metrics
from vfl.ml.parts import label_party_alone
from vfl.ml.plaintext import train_plaintext
from vfl.ml.scaling import Standardizer
from vfl.ml.scorecard import reasons as reason_codes
from vfl.ml.scorecard.binning import Bins, iv_band
from vfl.ml.scorecard.card import card_for
from vfl.ml.scorecard.config import ScorecardConfig, training_problem
from vfl.ml.scorecard.encoding import Encoding, own_selection
from vfl.ml.scorecard.points import Scaling, base_points
from vfl.ml.scorecard.selection import by_iv
from vfl.ml.scorecard.stability import score_summary
from vfl.protocol.binning import BinningFeatureRole, BinningLabelRole
from vfl.protocol.roster import Roster


def simulate_scorecard(
    table_a: PartyTable | Sequence[PartyTable],
    table_b: PartyTable,
    config: TrainingConfig,
    scorecard: ScorecardConfig,
    *,
    workers: int | None = None,
    engine: Engine | str | None = None,
    job_id: str = "scorecard",
    progress: ProgressFn | None = None,
    keypair: tuple[PublicKey, PrivateKey] | None = None,
    psi_key_bits: int | None = None,
    examples: int = 5,
    on_stage: StageFn | None = None,
) -> dict[str, Any]:
    """Align, bin, select, train, score; return the JSON-ready result with a ``scorecard`` section.

    ``on_stage(text)`` hears each long step as it begins (aligning, binning, training), as in :func:`simulate`.

    ``result["cards"]`` holds each party's :class:`PartyCard`, ``result["bins"]``
    every characteristic each party binned (name → :class:`Bins`), and
    ``result["applicants"]`` every aligned applicant's score, points per party
    and reasons (neither is JSON; a service keeps each card with its party).
    ``examples`` applicants' reasons are shown in the ``scorecard`` section.
    """
    started = time.perf_counter()
    problem = training_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    check_label_table(table_b, config)
    if is_multiclass(table_b.labels, config.model):
        raise ConfigError(f"{table_b.source}: the label has {len(class_values(table_b.labels))} classes; a scorecard is "
                          "binary only (points and reasons for one event). Recode the label to 0/1 (1 for the event "
                          "to score), or drop --scorecard to train one-vs-rest logistic regression")
    engine = engine if isinstance(engine, Engine) else make_engine(engine or "local", workers=workers)
    say = on_stage or (lambda text: None)
    say(f"aligning: RSA PSI with {psi_key_bits or config.key_bits}-bit keys between party B ({len(table_b)} IDs) "
        "and the feature parties")
    aligned = align_parties(table_a, table_b, config, engine, psi_key_bits)
    roster, min_bits, alignment = aligned.roster, aligned.min_bits, aligned.alignment
    parts, b_rows = aligned.parts, aligned.b_rows
    labels = np.asarray(b_rows.labels, dtype=np.float64)
    say(f"binning: {len(b_rows)} aligned rows; each feature party's bins from B's encrypted labels "
        f"({config.key_bits}-bit Paillier keys)")

    # -- 2. binning --------------------------------------------------------------------------------------
    binning_started = time.perf_counter()
    label_role = BinningLabelRole(job_id, labels, scorecard.binning, features={p: None for p in roster.features},
                                  party=roster.label, engine=engine, key_bits=config.key_bits, min_key_bits=min_bits)
    own = label_role.bin_own(b_rows.features, b_rows.feature_names)
    feature_bins: dict[str, dict[str, Bins]] = {}
    for party, part in zip(roster.features, parts):
        role = BinningFeatureRole(job_id, party, part.features, part.feature_names, engine=engine,
                                  min_key_bits=min_bits)
        counts = role.answer(label_role.request(party))
        feature_bins[party] = role.apply(label_role.receive_counts(counts))
    binning_seconds = time.perf_counter() - binning_started
    report = label_role.characteristics()  # B's view: every characteristic of every party, with counts, WOE and IV

    # -- 3. selection: B by IV for every party; each party its own correlated characteristics --------------
    ivs = {(c.party, c.name): c.iv_total for c in report}
    kept_by_iv = {p: by_iv({n: iv for (q, n), iv in ivs.items() if q == p}, min_iv=scorecard.selection.min_iv,
                           top_k=scorecard.selection.top_k) for p in [roster.label, *roster.features]}
    for p, kept in kept_by_iv.items():
        if not kept:
            kept_by_iv[p] = [max(((n, iv) for (q, n), iv in ivs.items() if q == p), key=lambda t: t[1])[0]]
    by_name = {(c.party, c.name): c for c in report}
    b_encoding = _label_encoding(own, by_name, roster.label, kept_by_iv[roster.label])
    b_encoding = own_selection(b_encoding, b_rows.features, b_rows.feature_names, scorecard.selection,
                               priority={n: ivs[(roster.label, n)] for n in b_encoding.names})
    a_encodings = []
    for party, part in zip(roster.features, parts):
        bins = feature_bins[party]
        names = kept_by_iv[party]
        encoding = Encoding("indicators", tuple(bins[n] for n in names),
                            tuple(by_name[(party, n)].direction for n in names))
        # A does not know its IVs: it breaks ties between correlated characteristics by its own column order.
        a_encodings.append(own_selection(encoding, part.features, part.feature_names, scorecard.selection,
                                         priority={n: -i for i, n in enumerate(names)}))

    def train(a_encs: list[Encoding], b_enc: Encoding, name: str, report: ProgressFn | None = None) -> TrainedRun:
        return _train_coded(parts, b_rows, a_encs, b_enc, config, roster=roster, engine=engine, job_id=name,
                            progress=report, keypair=keypair, min_bits=min_bits)

    stepwise: list[dict[str, Any]] = []
    if scorecard.selection.stepwise == "backward":
        a_encodings, b_encoding, stepwise = _backward_stepwise(
            a_encodings, b_encoding, [roster.label, *roster.features], train, scorecard.selection.stepwise_max_steps,
            config.fit_intercept)

    # -- 4. training on the coded characteristics, each party projecting its own weights -----------------
    say(f"training: the scorecard on {len(b_rows)} rows, at most {config.epochs} epochs")
    run = train(a_encodings, b_encoding, job_id, progress)

    # -- 5. points: every party its own table; B the base points ------------------------------------------
    scaling = Scaling(scorecard.points0, scorecard.odds0, scorecard.pdo)
    cards = {}
    for party, part, enc, model in zip(roster.features, parts, a_encodings, run.models):
        cards[party] = card_for(party, part.features, part.feature_names, enc, model.scaler, model.weights, scaling)
    model_b = run.model_b
    cards[roster.label] = card_for(roster.label, b_rows.features, b_rows.feature_names, b_encoding, model_b.scaler,
                                     model_b.weights, scaling)
    base = base_points(model_b.intercept, scaling)
    # What each feature party releases at scoring: its points total per applicant (not u_A).
    released = {party: cards[party].totals(part.features) for party, part in zip(roster.features, parts)}
    scores = base + cards[roster.label].totals(b_rows.features) + sum(released.values())

    splits = run.splits
    metric_split = "validation" if "validation" in splits else "train"
    rows = splits[metric_split]
    score_section = score_summary(scores, labels, rows, run.predictions, bands=scorecard.bands, split=metric_split,
                                  scaling=scaling)

    # -- 6. reasons: each party's top shortfalls, merged at B (for every aligned applicant) ------------------
    everyone = [(roster.label, b_rows), *zip(roster.features, parts)]
    candidates = [reason_codes.top_candidates(cards[p].table.shortfalls(cards[p].bin_indices(t.features)),
                                              cards[p].table.codes, scorecard.reasons)
                  for p, t in everyone]
    merged = reason_codes.merge(candidates, scorecard.reasons) if scorecard.reasons else [[] for _ in labels]
    shown = np.arange(min(examples, len(labels)))

    # -- baselines: B alone, and the pooled-data scorecard on the same bins and WOE coding -----------------
    alone, _ = label_party_alone(run.party_b, labels, splits)
    pooled = _pooled_baseline(parts, b_rows, a_encodings, b_encoding, by_name, roster, config, labels, splits)

    characteristics = []
    for c in report:
        characteristics.append({"party": c.party, "name": c.name, "iv": c.iv_total, "band": iv_band(c.iv_total),
                                "direction": c.direction, "selected": c.name in cards[c.party].encoding.names,
                                "bins": c.bin_rows()})

    result = {
        "model": "scorecard",
        "job_id": job_id,
        "aligned_rows": alignment.size,
        "alignment": alignment.summary(),
        "train_rows": int(run.party_b.schedule.n_train),
        "validation_rows": int(len(run.party_b.schedule.validation_rows)),
        "epochs_run": run.party_b.epochs_run,
        "stop_reason": run.party_b.stop_reason,
        "loss_history": run.party_b.train_losses,
        "metrics": run.metrics,
        "decision": run.decision,
        "config": config.model_dump(),
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {"alignment": round(alignment.seconds, 3), "binning": round(binning_seconds, 3),
                    "training": round(run.seconds, 3)},
        "scorecard": {
            "config": scorecard.model_dump(),
            "scaling": {"points0": scaling.points0, "odds0": scaling.odds0, "pdo": scaling.pdo,
                        "factor": scaling.factor, "offset": scaling.offset},
            "base_points": base,
            "characteristics": characteristics,
            "points": {p: card.table.rows() for p, card in cards.items()},
            "partner_ranges": {p: list(cards[p].table.range()) for p in roster.features},
            "score": score_section,
            "baselines": {"bank_only": alone["metrics"], "pooled": pooled},
            "stepwise": stepwise,
            "reasons": [{"row": int(i), "id": b_rows.ids[i], "score": int(scores[i]), "reasons": r}
                        for i, r in zip(shown, merged)],
        },
        "cards": cards,
        # Every characteristic each party binned, kept or not (its bins stay with it; exported by --tables).
        "bins": {roster.label: dict(own), **feature_bins},
        "scores": scores,
        # Every aligned applicant: what B serves (score, each party's points total, reasons).
        "applicants": {"ids": list(b_rows.ids), "scores": scores,
                       "points": {p: cards[p].totals(t.features) for p, t in everyone}, "reasons": merged},
    }
    return result


# -- steps ------------------------------------------------------------------------------------------------

def _label_encoding(own: dict[str, Bins], by_name: dict, party: str, names: list[str]) -> Encoding:
    """B's WOE coding of its kept characteristics, from its own binning report."""
    return Encoding("woe", tuple(own[n] for n in names), tuple(by_name[(party, n)].direction for n in names),
                    tuple(np.array(by_name[(party, n)].woe) for n in names))


def _train_coded(parts: list[PartyTable], b_rows: PartyTable, a_encodings: list[Encoding], b_encoding: Encoding,
                 config: TrainingConfig, **options: Any) -> TrainedRun:
    """The four-step protocol on every party's coded characteristics, each party projecting its own weights."""
    coded_parts = [_coded(part, enc) for part, enc in zip(parts, a_encodings)]

    def constrain(features: list, party_b: Any) -> None:
        for role, enc in zip(features, a_encodings):
            role.projection = enc.projection(role.scaler.scale)
        party_b.projection = b_encoding.projection(party_b.scaler.scale, extra_columns=int(config.fit_intercept))

    return train_federated(coded_parts, _coded(b_rows, b_encoding), config, prepare=constrain, **options)


def _bic(run: TrainedRun, a_encodings: list[Encoding], b_encoding: Encoding, fit_intercept: bool) -> float:
    """BIC of a trained federated model: 2·n·(the protocol's mean training loss) + its columns · ln n."""
    rows = int(run.party_b.schedule.n_train)
    columns = sum(len(e.column_names) for e in [*a_encodings, b_encoding]) + int(fit_intercept)
    return 2 * rows * float(run.party_b.train_losses[-1]) + columns * math.log(rows)


def _backward_stepwise(a_encodings: list[Encoding], b_encoding: Encoding, parties: list[str],
                       train: Callable[[list[Encoding], Encoding, str], TrainedRun], max_steps: int,
                       fit_intercept: bool) -> tuple[list[Encoding], Encoding, list[dict[str, Any]]]:
    """Backward elimination across parties, driven by the k-party loss the protocol already computes.

    Each round trains the federated model once without each remaining
    characteristic (of any party) and drops the one whose removal lowers BIC
    most; it stops when no removal lowers it, or after ``max_steps`` drops.
    Every party keeps at least one characteristic (a party without any would
    leave the job). Only B sees the losses; a feature party learns which of
    its characteristics were dropped, as it learns its IV selection.
    """
    encodings = [b_encoding, *a_encodings]  # B first, as ``parties``
    current = _bic(train(a_encodings, b_encoding, "stepwise-0"), a_encodings, b_encoding, fit_intercept)
    steps: list[dict[str, Any]] = [{"step": 0, "dropped": None, "bic": current}]
    for step in range(1, max_steps + 1):
        trials = []
        for h, (party, enc) in enumerate(zip(parties, encodings)):
            if len(enc.names) < 2:
                continue
            for name in enc.names:
                trial = [e.subset([n for n in e.names if n != name]) if g == h else e for g, e in enumerate(encodings)]
                run = train(trial[1:], trial[0], f"stepwise-{step}-{party}-{name}")
                trials.append((_bic(run, trial[1:], trial[0], fit_intercept), party, name, trial))
        if not trials:
            break
        bic, party, name, trial = min(trials, key=lambda t: t[0])
        if bic >= current:
            break
        encodings, current = trial, bic
        steps.append({"step": step, "dropped": {"party": party, "name": name}, "bic": bic})
    return encodings[1:], encodings[0], steps


def _coded(table: PartyTable, encoding: Encoding) -> PartyTable:
    """The table the protocol trains on: the party's coded characteristics as its features."""
    return replace(table, features=encoding.design_from(table.features, table.feature_names),
                   feature_names=encoding.column_names)


def _pooled_baseline(parts: list[PartyTable], b_rows: PartyTable, a_encodings: list[Encoding], b_encoding: Encoding,
                     by_name: dict, roster: Roster, config: TrainingConfig, labels: np.ndarray,
                     splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """The pooled-data scorecard: every kept characteristic WOE-coded with the same bins, one plaintext LR."""
    columns = [b_encoding.design_from(b_rows.features, b_rows.feature_names)]
    for party, part, enc in zip(roster.features, parts, a_encodings):
        woe = tuple(np.array(by_name[(party, n)].woe) for n in enc.names)
        pooled = Encoding("woe", enc.bins, enc.directions, woe)
        columns.append(pooled.design_from(part.features, part.feature_names))
    X = np.hstack(columns)
    scaler = Standardizer.fit(X[splits["train"]])
    design = scaler.transform(X)
    result = train_plaintext(np.zeros((len(labels), 0)), design, labels, config)
    w = result.weights_b
    u = design @ w[: design.shape[1]] + (w[-1] if config.fit_intercept else 0.0)
    p = 1 / (1 + np.exp(-u))
    return {"description": "every kept characteristic WOE-coded with the same bins, pooled, same algorithm",
            "metrics": {name: model_metrics("logistic", labels[r], p[r]) for name, r in splits.items()}}
