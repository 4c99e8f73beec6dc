"""A job's HTML report: configuration, alignment, metrics, figures, privacy, timings, who learned what.

One self-contained file (figures are inlined PNGs), written next to party B's
model part and served at ``GET /v1/jobs/{id}/report``. ``vfl simulate
--report`` writes the same page for a simulated job.

The input is a *summary*, a plain dict that both the services and the
simulation produce (:func:`summary_from_record`, :func:`summary_from_simulation`).

With one feature party the page speaks of "party A", as the two-party
protocol does. With k ≥ 2 the summary has a ``feature_parties`` list (see
:func:`_feature_party`), one entry per feature party in roster order, and
every section names each feature party by its id.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from typing import Any

import numpy as np

from vfl.errors import ConfigError
from vfl.metrics import roc_curve

log = logging.getLogger(__name__)

MAX_CURVE_POINTS = 400
#: one panel of the parameter figure: line names, values per epoch, y-axis label
plots_panel = tuple[list[str], list, str]
NO_FIGURES = "<p>No figures: they need matplotlib, which this install lacks (pip install 'vfl[report]').</p>"


def curves_for(model: str, labels: np.ndarray, predictions: np.ndarray, baseline: np.ndarray | None) -> dict[str, Any]:
    """What the third figure needs, small enough to keep in a job record."""
    if model == "logistic":
        fpr, tpr = roc_curve(labels, predictions)
        out: dict[str, Any] = {"kind": "roc", "fpr": _thin(fpr), "tpr": _thin(tpr)}
        if baseline is not None:
            b_fpr, b_tpr = roc_curve(labels, baseline)
            out.update(baseline_fpr=_thin(b_fpr), baseline_tpr=_thin(b_tpr))
        return out
    keep = np.random.default_rng(0).permutation(len(labels))[:MAX_CURVE_POINTS]
    return {"kind": "scatter", "actual": labels[keep].tolist(), "predicted": predictions[keep].tolist()}


def _thin(values: np.ndarray) -> list[float]:
    if len(values) <= MAX_CURVE_POINTS:
        return [float(v) for v in values]
    index = np.unique(np.linspace(0, len(values) - 1, MAX_CURVE_POINTS).astype(int))
    return [float(v) for v in values[index]]


def figures_for(summary: dict[str, Any]) -> dict[str, bytes]:
    """The three figures of a job, as PNG bytes keyed by file name (none without matplotlib)."""
    try:
        from vfl.report import plots
    except ConfigError as exc:  # the `report` extra is not installed: the report goes out without figures
        log.warning("job report without figures: %s", exc)
        return {}

    title = summary["title"]
    figures = {
        "loss.png": plots.loss_curves(
            {title: summary["loss_history"]}, validation={title: summary.get("validation_loss_history") or []},
            title=f"Training loss per epoch — {title}",
        ),
        "parameters.png": plots.parameter_trajectories(_parameter_panels(summary),
                                                       title=f"Parameter trajectories — {title}"),
    }
    curves = summary["curves"]
    split = summary.get("curve_split", "train")
    if curves["kind"] == "roc":
        auc = (summary["metrics"].get(split) or {}).get("auc")
        base = None
        if "baseline_fpr" in curves and summary.get("baseline"):
            base = (curves["baseline_fpr"], curves["baseline_tpr"], summary["baseline"]["metrics"][split].get("auc"))
        figures["roc.png"] = plots.roc(curves["fpr"], curves["tpr"], auc, baseline=base,
                                       title=f"ROC curve on the {split} rows — {title}")
    else:
        figures["roc.png"] = plots.predicted_vs_actual(curves["actual"], curves["predicted"],
                                                       title=f"Predicted against actual ({split} rows) — {title}")
    return figures


def _parameter_panels(summary: dict[str, Any]) -> dict[str, plots_panel]:
    features = summary.get("feature_parties")
    if features:
        return _multiparty_panels(features, summary["parameters"])
    panels: dict[str, plots_panel] = {}
    convergence = summary.get("party_a_convergence")
    if convergence and "party A" not in summary["parameters"]:
        panels["party A (keeps its weights; shares their norms)"] = _norm_panel("A", convergence)
    for party, p in summary["parameters"].items():
        if p["history"]:
            panels[party] = (p["names"], p["history"], "weight (standardised features)")
    return dict(sorted(panels.items()))


def _multiparty_panels(features: list[dict[str, Any]], parameters: dict[str, Any]) -> dict[str, plots_panel]:
    """k ≥ 2: one panel per feature party in roster order, then B's (not sorted: the roster order is the story)."""
    panels: dict[str, plots_panel] = {}
    for f in features:
        party, trajectory, convergence = f["party"], f.get("parameters"), f.get("convergence")
        if trajectory and trajectory.get("history"):  # simulation: every weight is at hand
            panels[f"feature party {party}"] = (trajectory["names"], trajectory["history"],
                                                "weight (standardised features)")
        elif convergence:  # service job: the party kept its weights and shared only their norms
            panels[f"feature party {party} (keeps its weights; shares their norms)"] = _norm_panel(party, convergence)
    for party, p in parameters.items():
        if p["history"]:
            panels[party] = (p["names"], p["history"], "weight (standardised features)")
    return panels


def _norm_panel(party: str, convergence: dict[str, Any]) -> plots_panel:
    history = list(zip(convergence["weight_norm"], convergence["step_norm"]))
    return [f"‖θ_{party}‖ after the epoch", f"‖Δθ_{party}‖ in the epoch"], history, "L2 norm"


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _metrics_table(summary: dict[str, Any]) -> str:
    rows = []
    for split, metrics in (summary.get("metrics") or {}).items():
        baseline = ((summary.get("baseline") or {}).get("metrics") or {}).get(split, {})
        for name, value in metrics.items():
            if name == "rows":
                continue
            rows.append([split, name, value, baseline.get(name)])
    return _table(rows, ["rows", "metric", "federated", "party B alone"])


def _decision_html(decision: dict[str, Any] | None) -> str:
    """Party B's decision layer: the calibration map and threshold, and what the metrics were without them."""
    if not decision:
        return ""
    calibration = decision.get("calibration")
    threshold = decision["threshold"]
    how = {"fixed": "fixed in the job spec", "max_f1": "the best F1", "max_ks": "the largest KS",
           "precision": f"the most recall at precision ≥ {threshold.get('target')}"}.get(threshold["rule"], threshold["rule"])
    text = (f"Platt scaling p = σ({calibration['a']:.4f}·u {calibration['b']:+.4f})" if calibration
            else "No calibration: p = σ(u)")
    text += (f", fitted by party B on its {decision['rows']} {decision['fitted_on']} rows; threshold "
             f"{threshold['value']:.4f} ({how}{'' if threshold.get('reached', True) else ', target not reached'}).")
    before = [[split, name, value] for split, metrics in (decision.get("uncalibrated") or {}).items()
              for name, value in metrics.items() if name in ("accuracy", "f1", "log_loss", "brier")]
    return (f"<p>{html.escape(text)} Scores stay in the same order, so AUC and KS do not change.</p>"
            + _table(before, ["rows", "metric", "before calibration, at 0.5"]))


def render(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report page. Figures are inlined, so the file stands alone."""
    esc = html.escape
    parameters_caption = ("Each party's weights after every epoch; party A keeps its weights, so a service "
                          "job shows only their norm and each epoch's change")
    if summary.get("feature_parties"):  # k ≥ 2: name the panels, since the image is all the page has of them
        parameters_caption = ("Each party's weights after every epoch, one panel each: "
                              + "; ".join(_parameter_panels(summary)) + ". Each feature party keeps its weights, "
                              "so a service job shows only their norm and each epoch's change")
    images = "".join(
        f'<figure><img class="figure" alt="{esc(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{esc(caption)}</figcaption></figure>'
        for name, png, caption in (
            (n, figures[n], c) for n, c in (
                ("loss.png", "Loss per epoch: training loss (solid) is measured at each batch before its update, "
                             "validation loss (dashed) after the epoch; Taylor log-loss, or ½·MSE on the "
                             "standardised label"),
                ("parameters.png", parameters_caption),
                ("roc.png", "ROC curve, or predicted against actual for linear regression"),
            ) if n in figures
        )
    )
    privacy = summary.get("privacy")
    privacy_html = (
        _table([[k, v] for k, v in privacy.items()], ["privacy", "value"]) if privacy
        else "<p>Not differentially private: no noise was added (exact federated training).</p>"
    )
    learned = "".join(f"<li><b>{esc(party)}</b>: {esc(text)}</li>" for party, text in summary["learned"])
    config = esc(json.dumps(summary.get("config", {}), indent=2))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vfl job report — {esc(summary['title'])}</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
 table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
 th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
 th {{ background: #f3f3f3; }}
 figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
 img.figure {{ max-width: 520px; border: 1px solid #ddd; }}
 pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
</style></head>
<body>
<h1>vfl job report</h1>
<p><b>{esc(summary['title'])}</b> — {esc(summary.get('state', ''))}, {esc(str(summary.get('epochs')))} epochs
({esc(str(summary.get('stop_reason')))}).</p>
<h2>Alignment (RSA blind-signature PSI)</h2>
{_alignment_tables(summary)}
<h2>Metrics</h2>
{_metrics_table(summary)}
{_decision_html(summary.get("decision"))}
<h2>Figures</h2>
<div id="figures">{images or NO_FIGURES}</div>
<h2>Privacy</h2>
{privacy_html}
<h2>Timings (seconds)</h2>
{_table([[k, v] for k, v in (summary.get("timings") or {}).items() if not isinstance(v, dict)], ["stage", "seconds"])}
<h2>What each party learned</h2>
<ul>{learned}</ul>
<h2>Configuration</h2>
<pre>{config}</pre>
<script>
  // Lets a headless browser check that every figure decoded and drew.
  window.addEventListener("load", () => {{
    const images = Array.from(document.querySelectorAll("img.figure"));
    document.body.dataset.figures = images.length;
    document.body.dataset.figuresLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  }});
</script>
</body></html>
"""


def _alignment_tables(summary: dict[str, Any]) -> str:
    alignment = summary.get("alignment") or {}
    features = summary.get("feature_parties")
    if not features:
        return _table([["party A IDs", alignment.get("party_a_ids")], ["party B IDs", alignment.get("party_b_ids")],
                       ["shared IDs", alignment.get("intersection")], ["share of A", alignment.get("overlap_of_a")],
                       ["share of B", alignment.get("overlap_of_b")], ["seconds", alignment.get("seconds")],
                       ["bytes exchanged", alignment.get("bytes")]], ["alignment", "value"])
    # k ≥ 2: B ran one PSI per feature party; the job trains on the IDs all of them share with B.
    joint = _table([["party B IDs", alignment.get("party_b_ids")],
                    ["joint IDs (held by every party)", alignment.get("intersection")],
                    ["share of B", alignment.get("overlap_of_b")], ["seconds", alignment.get("seconds")],
                    ["bytes exchanged", alignment.get("bytes")]], ["alignment", "value"])
    pairwise = _table([[f["party"], (f.get("alignment") or {}).get("party_a_ids"), _pairwise_size(f),
                        (f.get("alignment") or {}).get("overlap_of_a")] for f in features],
                      ["feature party", "its IDs", "shared with party B (pairwise PSI)", "share of its IDs"])
    return joint + pairwise


def _pairwise_size(feature: dict[str, Any]) -> int | None:
    pair = feature.get("alignment") or {}
    return pair.get("pairwise_intersection", pair.get("intersection"))


def learned_by_each_party(summary: dict[str, Any]) -> list[tuple[str, str]]:
    alignment = summary.get("alignment") or {}
    shared = alignment.get("intersection")
    loss = "the training loss of every epoch" + (" and the validation loss" if summary.get("validation_loss_history") else "")
    if summary.get("feature_parties"):
        return _learned_with_k_feature_parties(summary, loss)
    return [
        ("party A (features)", f"the {shared} shared IDs and that party B holds {alignment.get('party_b_ids')} IDs; "
         "its own gradient each batch (masked to everyone else) and its own weights; when to stop. "
         "No label, no loss, no residual in plaintext."),
        ("party B (features and labels)", f"the {shared} shared IDs and that party A holds "
         f"{alignment.get('party_a_ids')} IDs; {loss}; its own gradient and weights; party A's plaintext "
         "partial scores for the shared rows (evaluation) and for every ID it asks a prediction for"
         + ("; after training, the norm of party A's weights and of their change per epoch (for this report)"
            if summary.get("party_a_convergence") else "") + "."),
        ("arbiter", "gradients masked with values uniform over the plaintext space (indistinguishable from "
         f"random), and {loss}. Nothing about features, labels or weights."),
    ]


def _learned_with_k_feature_parties(summary: dict[str, Any], loss: str) -> list[tuple[str, str]]:
    """k ≥ 2: each feature party sees only its own PSI with B; B sees every pair (see :mod:`vfl.align`)."""
    alignment = summary.get("alignment") or {}
    joint = alignment.get("intersection")
    features = summary["feature_parties"]
    rows = []
    for f in features:
        pair = f.get("alignment") or {}
        b_size = pair.get("declared_size_b") or alignment.get("declared_size_b") or alignment.get("party_b_ids")
        rows.append((f"feature party {f['party']} (features)",
                     f"the {_pairwise_size(f)} IDs it shares with party B and that party B holds {b_size} IDs; "
                     f"which {joint} of its shared IDs every party holds (the joint rows it trains on); "
                     "its own gradient each batch (masked to everyone else) and its own weights; when to stop. "
                     "No label, no loss, no residual in plaintext."))
    sizes = "; ".join(f"{f['party']}: {(f.get('alignment') or {}).get('party_a_ids')} IDs, {_pairwise_size(f)} shared"
                      for f in features)
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


def summary_from_simulation(result: dict[str, Any], title: str) -> dict[str, Any]:
    parameters = dict(result["parameters"])
    parties = [f["party"] for f in result.get("feature_parties") or []]
    features = None
    if len(parties) > 1:
        # simulate() keys feature parties' trajectories "party A1" … "party Ak"; move them into their entries
        # so each is drawn once, under its feature-party name.
        features = [_feature_party(p, alignment=a, parameters=parameters.pop(f"party {p}", None))
                    for p, a in zip(parties, _pairwise_alignments(result["alignment"], parties))]
    summary = {
        "title": title, "state": "succeeded (simulated in one process)", "epochs": result["epochs_run"],
        "stop_reason": result["stop_reason"], "config": result["config"], "alignment": result["alignment"],
        "metrics": result["metrics"], "baseline": None, "privacy": result.get("privacy"),
        "timings": {**result["timings"], "total": result["seconds"]},
        "loss_history": result["loss_history"], "validation_loss_history": result["validation_loss_history"],
        "parameters": parameters, "feature_parties": features,
        "curves": result["curves"], "curve_split": result["curve_split"], "decision": result.get("decision"),
    }
    summary["learned"] = learned_by_each_party(summary)
    return summary


def summary_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """Party B's view of a service job: B's own weights, and only the norms of each feature party's (they keep theirs)."""
    parties = list((record.get("roster") or {}).get("features") or [])
    features = None
    if len(parties) > 1:  # k = 1 records have no roster (or one feature party) and keep the two-party page
        convergence = dict(record.get("feature_convergence") or {})
        if not convergence and record.get("party_a_convergence"):  # only the first party's summary was kept
            convergence[parties[0]] = record["party_a_convergence"]
        features = [_feature_party(p, alignment=a, convergence=convergence.get(p))
                    for p, a in zip(parties, _pairwise_alignments(record.get("alignment"), parties))]
    summary = {
        "title": record["job_id"], "state": record["state"], "epochs": record["epoch"],
        "stop_reason": record.get("stop_reason"), "config": record["spec"].get("training", {}),
        "alignment": record.get("alignment"), "metrics": record.get("metrics"), "baseline": record.get("baseline"),
        "privacy": record.get("privacy"), "timings": record.get("timings"),
        "loss_history": record.get("loss_history", []),
        "validation_loss_history": record.get("validation_loss_history", []),
        "parameters": {"party B": record["parameters"]}, "curves": record["curves"],
        "party_a_convergence": record.get("party_a_convergence"), "feature_parties": features,
        "curve_split": record.get("curve_split", "train"), "decision": record.get("decision"),
    }
    summary["learned"] = learned_by_each_party(summary)
    return summary
