"""The summary a job report is made from: one plain dict, built from a service job's record or a simulation.

Both the services (:func:`summary_from_record`, party B's view of a job it
coordinated) and ``vfl simulate --report`` (:func:`summary_from_simulation`)
produce it; :mod:`vfl.report.figures` draws it and :mod:`vfl.report.html`
writes the page. Its curves come from :func:`vfl.ml.curves.curves_for`, which
party B runs at evaluation on the scores and labels it already holds and which
keeps only aggregate points (thinned ROC, score bands, calibration bins, a
score histogram): the job record never holds a row's score.

With one feature party the page speaks of "party A", as the two-party
protocol does. With k ≥ 2 the summary has a ``feature_parties`` list (see
:func:`_feature_party`), one entry per feature party in roster order, and
every section names each feature party by its id.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import vfl
from vfl.report import fmt


def summary_from_simulation(result: dict[str, Any], title: str, sources: list[str] | None = None) -> dict[str, Any]:
    """A one-process simulation's summary (:func:`vfl.local.simulate.simulate`), which holds every party's weights.

    A scorecard's result (:func:`vfl.local.scorecard.simulate_scorecard`) has no
    weight trajectories or curves but a ``scorecard`` section, which the summary
    keeps; ``sources`` names the input files (B's, then each feature party's).
    """
    parameters = dict(result.get("parameters") or {})
    card = result.get("scorecard")
    feature_list = result.get("feature_parties") or []
    if card and not feature_list:  # a scorecard result names its feature parties by their points ranges
        feature_list = [{"party": p, "source": (sources or [])[i + 1] if sources and len(sources) > i + 1 else None,
                         "features": sum(1 for c in card.get("characteristics") or [] if c.get("party") == p)}
                        for i, p in enumerate(card.get("partner_ranges") or {})]
    parties = [f["party"] for f in feature_list]
    features = None
    if len(parties) > 1:
        # simulate() keys feature parties' trajectories "party A1" … "party Ak"; move them into their entries
        # so each is drawn once, under its feature-party name.
        features = [_feature_party(p, alignment=a, parameters=parameters.pop(f"party {p}", None))
                    for p, a in zip(parties, _pairwise_alignments(result["alignment"], parties))]
    config = result.get("config") or {}
    kept = kept_epoch(config, result["epochs_run"], result.get("validation_loss_history") or [])
    part_b = (result.get("model_parts") or {}).get("party_b")
    if part_b and part_b.get("multiclass"):  # one-vs-rest: K binary parts; the page shows per-class metrics
        part_b = dict(part_b["parts"][0], weights=[])
    coefficients = None
    if part_b and part_b["weights"]:
        coefficients = {"names": list(part_b["feature_names"]), "weights": list(part_b["weights"]),
                        "intercept": part_b.get("intercept") if config.get("fit_intercept", True) else None,
                        "epoch": kept}
    b_features = len(part_b["feature_names"]) if part_b else None
    if card and b_features is None:
        partners = set(card.get("partner_ranges") or {})
        b_features = sum(1 for c in card.get("characteristics") or [] if c.get("party") not in partners) or None
    roles = [{"role": "party B (labels and features)", "id": None, "dataset": sources[0] if sources else None,
              "features": b_features}]
    for f in feature_list:
        name = "party A (features)" if len(feature_list) == 1 else f"feature party {f['party']}"
        roles.append({"role": name, "id": None,
                      "dataset": f.get("source"), "features": f.get("features")})
    summary = {
        "title": title, "state": "succeeded (simulated in one process)", "epochs": result["epochs_run"],
        "stop_reason": result["stop_reason"], "config": config, "alignment": result["alignment"],
        "metrics": result["metrics"], "baseline": _scorecard_baseline(card), "privacy": result.get("privacy"),
        "timings": {**result["timings"], "total": result["seconds"]},
        "loss_history": result.get("loss_history") or [], "validation_loss_history": result.get("validation_loss_history") or [],
        "parameters": parameters, "feature_parties": features,
        "curves": result.get("curves"), "curve_split": result.get("curve_split") or _metric_split(result["metrics"]),
        "decision": result.get("decision"), "scorecard": card,
        # a scorecard is a logistic regression on binned characteristics: the page reads it as one
        "model": "logistic" if card else result.get("model") or config.get("model"),
        "simulated": True, "finished_at": time.time(),
        "version": vfl.__version__, "parties": roles, "kept_epoch": kept, "coefficients": coefficients,
        "rows": {"aligned": result.get("aligned_rows"), "training": result.get("train_rows"),
                 "validation": result.get("validation_rows")},
        "contributions": result.get("contributions"), "ledger": result.get("ledger"),
        "multiclass": result.get("multiclass"), "warnings": list(result.get("warnings") or []),
    }
    summary["learned"] = learned_by_each_party(summary)
    return summary


def summary_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """Party B's view of a service job: B's own weights, and only the norms of each feature party's.

    The feature parties keep their weights; they share only their norms, for this report.
    """
    parties = list((record.get("roster") or {}).get("features") or [])
    features = None
    if len(parties) > 1:  # k = 1 records have no roster (or one feature party) and keep the two-party page
        convergence = dict(record.get("feature_convergence") or {})
        if not convergence and record.get("party_a_convergence"):  # only the first party's summary was kept
            convergence[parties[0]] = record["party_a_convergence"]
        features = [_feature_party(p, alignment=a, convergence=convergence.get(p))
                    for p, a in zip(parties, _pairwise_alignments(record.get("alignment"), parties))]
    spec = record.get("job_spec") or {}
    training = spec.get("training") or {}
    kept = kept_epoch(training, record["epoch"], record.get("validation_loss_history") or [])
    parameters = record.get("parameters") or {"names": [], "history": []}
    metrics = record.get("metrics") or {}
    summary = {
        "title": record["job_id"], "state": record["state"], "epochs": record["epoch"],
        "stop_reason": record.get("stop_reason"), "config": training,
        "alignment": record.get("alignment"), "metrics": record.get("metrics"), "baseline": record.get("baseline"),
        "privacy": record.get("privacy"), "timings": record.get("timings"),
        "party_timings": record.get("party_timings"),
        "loss_history": record.get("loss_history", []),
        "validation_loss_history": record.get("validation_loss_history", []),
        "parameters": {"party B": parameters}, "curves": record.get("curves"),
        "party_a_convergence": record.get("party_a_convergence"), "feature_parties": features,
        "curve_split": record.get("curve_split", "train"), "decision": record.get("decision"),
        "model": training.get("model", "logistic"), "simulated": False,
        "finished_at": record.get("stopped_at") or record.get("updated_at"), "version": vfl.__version__,
        "parties": _record_parties(record, parameters), "psi_key_bits": (spec.get("psi") or {}).get("key_bits"),
        "kept_epoch": kept, "coefficients": _coefficients_from_trajectory(parameters, kept),
        "rows": {"aligned": record.get("n_rows"), "training": (metrics.get("train") or {}).get("rows"),
                 "validation": (metrics.get("validation") or {}).get("rows")},
        "contributions": record.get("contributions"), "ledger": record.get("ledger"),
        "scorecard": record.get("scorecard"), "multiclass": record.get("multiclass"),
        "warnings": list(record.get("warnings") or []),
    }
    if summary["baseline"] is None:
        summary["baseline"] = _scorecard_baseline(record.get("scorecard"))
    summary["learned"] = learned_by_each_party(summary)
    return summary


def _scorecard_baseline(card: dict[str, Any] | None) -> dict[str, Any] | None:
    """A scorecard's bank-only baseline in the summary's ``baseline`` shape (None without one)."""
    alone = ((card or {}).get("baselines") or {}).get("bank_only")
    return {"description": "party B alone", "metrics": alone} if alone else None


def _metric_split(metrics: dict[str, Any] | None) -> str:
    return "validation" if (metrics or {}).get("validation") else "train"


def _feature_party(party: str, *, alignment: dict[str, Any] | None, parameters: dict[str, Any] | None = None,
                   convergence: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of ``summary["feature_parties"]``: what the report shows of one feature party.

    ``parameters`` is its weight trajectory (simulation only), ``convergence`` the
    norms it shares with B (service jobs), ``alignment`` its pairwise PSI summary.
    """
    return {"party": party, "alignment": alignment, "parameters": parameters, "convergence": convergence}


def _pairwise_alignments(alignment: dict[str, Any] | None, parties: list[str]) -> list[dict[str, Any] | None]:
    """Each feature party's pairwise PSI summary, in roster order.

    Service summaries name the party; the simulation's are in roster order without a name.
    """
    entries = list((alignment or {}).get("feature_parties") or [])
    by_name = {e["party"]: e for e in entries if "party" in e}
    if by_name:
        return [by_name.get(p) for p in parties]
    return [entries[i] if i < len(entries) else None for i in range(len(parties))]


def _coefficients_from_trajectory(parameters: dict[str, Any] | None, epoch: int | None) -> dict[str, Any] | None:
    """Party B's weights at the kept epoch, from its trajectory (the job record keeps no model part)."""
    if not parameters or not parameters.get("history") or epoch is None:
        return None
    names, row = list(parameters["names"]), list(parameters["history"][min(epoch, len(parameters["history"])) - 1])
    intercept = None
    if names and names[-1] == "intercept":
        names, intercept = names[:-1], row[-1]
        row = row[:-1]
    return {"names": names, "weights": row, "intercept": intercept, "epoch": epoch}


def _record_parties(record: dict[str, Any], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Who took part, with each party's dataset and feature count as party B knows them."""
    spec = record.get("job_spec") or {}
    peers = record.get("peers") or {}
    roster = record.get("roster") or {}
    lengths = record.get("gradient_lengths") or {}
    b_names = [n for n in parameters.get("names") or [] if n != "intercept"]
    label = roster.get("label") or peers.get("B") or "party B"
    out = [{"role": "party B (labels and features)", "id": label, "dataset": (spec.get("party_b") or {}).get("dataset"),
            "features": len(b_names) or None}]
    refs = spec.get("feature_parties") or ([spec["party_a"]] if spec.get("party_a") else [])
    by_peer = {r.get("peer"): r for r in refs}
    features = list(roster.get("features") or [])
    if len(features) > 1:
        for pid in features:
            ref = by_peer.get(pid) or {}
            out.append({"role": f"feature party {pid}", "id": pid, "dataset": ref.get("dataset"),
                        "features": lengths.get(pid, ref.get("n_features"))})
    else:
        pid = features[0] if features else peers.get("A") or (refs[0].get("peer") if refs else None)
        ref = by_peer.get(pid) or (refs[0] if refs else {})
        out.append({"role": "party A (features)", "id": pid, "dataset": ref.get("dataset"),
                    "features": lengths.get("A", lengths.get(pid, ref.get("n_features")))})
    arbiter = roster.get("arbiter") or peers.get("C") or (spec.get("arbiter") or {}).get("peer")
    if arbiter:
        out.append({"role": "arbiter", "id": arbiter, "dataset": None, "features": None})
    return out


def kept_epoch(config: dict[str, Any], epochs: int, validation_losses: list[float]) -> int | None:
    """The epoch (1-based) whose weights the model keeps, by the arbiter's rule (:mod:`vfl.ml.convergence`).

    With a validation split, early stopping on and no differential privacy, the first
    epoch of lowest validation loss; otherwise the last epoch.
    """
    if not epochs:
        return None
    keeps_best = (bool(validation_losses) and (config.get("early_stopping_rounds", 5) or 0) > 0
                  and not config.get("privacy"))
    if keeps_best:
        return int(np.argmin(validation_losses[:epochs])) + 1
    return epochs


def learned_by_each_party(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(party, what it learned) for the page's "What each party learned" list, two-party wording for k = 1."""
    alignment = summary.get("alignment") or {}
    shared = fmt.number(alignment.get("intersection"))
    loss = "the training loss of every epoch" + (" and the validation loss" if summary.get("validation_loss_history")
                                                 else "")
    if summary.get("feature_parties"):
        return _learned_with_k_feature_parties(summary, loss)
    return [
        ("party A (features)", f"the {shared} shared IDs and that party B holds "
         f"{fmt.number(alignment.get('party_b_ids'))} IDs; its own gradient each batch (masked to everyone else) and "
         "its own weights; when to stop. No label, no loss, no residual in plaintext."),
        ("party B (features and labels)", f"the {shared} shared IDs and that party A holds "
         f"{fmt.number(alignment.get('party_a_ids'))} IDs; {loss}; its own gradient and weights; party A's plaintext "
         "partial scores for the shared rows (evaluation) and for every ID it asks a prediction for"
         + ("; after training, the norm of party A's weights and of their change per epoch (for this report)"
            if summary.get("party_a_convergence") else "") + "."),
        ("arbiter", "gradients masked with values uniform over the plaintext space (indistinguishable from "
         f"random), and {loss}. Nothing about features, labels or weights."),
    ]


def _learned_with_k_feature_parties(summary: dict[str, Any], loss: str) -> list[tuple[str, str]]:
    """k ≥ 2: each feature party sees only its own PSI with B; B sees every pair (see :mod:`psi.joint`)."""
    alignment = summary.get("alignment") or {}
    joint = fmt.number(alignment.get("intersection"))
    features = summary["feature_parties"]
    rows = []
    for f in features:
        pair = f.get("alignment") or {}
        b_size = pair.get("declared_size_b") or alignment.get("declared_size_b") or alignment.get("party_b_ids")
        rows.append((f"feature party {f['party']} (features)",
                     f"the {fmt.number(pairwise_size(f))} IDs it shares with party B and that party B holds "
                     f"{fmt.number(b_size)} IDs; which {joint} of its shared IDs every party holds (the joint rows it "
                     "trains on); its own gradient each batch (masked to everyone else) and its own weights; when "
                     "to stop. No label, no loss, no residual in plaintext."))
    sizes = "; ".join(f"{f['party']}: {fmt.number((f.get('alignment') or {}).get('party_a_ids'))} IDs, "
                      f"{fmt.number(pairwise_size(f))} shared" for f in features)
    shares_norms = any(f.get("convergence") for f in features)
    rows.append(("party B (features and labels)",
                 f"the {joint} joint IDs and, from each pairwise PSI, each feature party's ID count and "
                 f"intersection with B ({sizes}); {loss}; its own gradient and weights; every feature party's "
                 "plaintext partial scores for the joint rows (evaluation) and for every ID it asks a prediction for"
                 + ("; after training, the norm of each feature party's weights and of their change per epoch "
                    "(for this report)" if shares_norms else "") + "."))
    rows.append(("arbiter", "gradients masked with values uniform over the plaintext space (indistinguishable from "
                 f"random), and {loss}. Nothing about features, labels or weights."))
    return rows


# What the figures and the page read from a summary, in one place so that both read it the same way.


def feature_party_count(summary: dict[str, Any]) -> int:
    """k, the number of feature parties (1 for a two-party job)."""
    return len(summary.get("feature_parties") or []) or 1


def baseline_metrics(summary: dict[str, Any], split: str) -> dict[str, Any]:
    """Party B alone's metrics on ``split`` ({} when no baseline was trained)."""
    return (((summary.get("baseline") or {}).get("metrics") or {}).get(split)) or {}


def decision_threshold(summary: dict[str, Any]) -> float | None:
    """The threshold the job's decisions used: party B's decision layer's, else 0.5 (logistic) or none (linear)."""
    decision = summary.get("decision")
    if decision:
        return float(decision["threshold"]["value"])
    return 0.5 if summary.get("model") == "logistic" else None


def pairwise_size(feature: dict[str, Any]) -> int | None:
    """How many IDs one feature party shares with party B (its pairwise PSI), from its ``feature_parties`` entry."""
    pair = feature.get("alignment") or {}
    return pair.get("pairwise_intersection", pair.get("intersection"))
