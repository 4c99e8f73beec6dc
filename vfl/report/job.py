"""A job's HTML report, written for the bank analyst who has to explain the model.

The page opens with the headline (what the federated model gains over party
B's features alone, in AUC, KS and recall, on the same rows), then the job's
context, party B's coefficients, how the model ranks and decides (ROC and KS,
gains and lift, calibration, the confusion matrix at the threshold used; the
residuals for linear regression), every metric, training, privacy, and at the
end the plumbing: alignment (PSI), timings, what each party learned and the
settings in words.

One self-contained file (figures are inlined PNGs), written next to party B's
model part and served at ``GET /v1/jobs/{id}/report``. ``vfl simulate
--report`` writes the same page for a simulated job.

The input is a *summary*, a plain dict that both the services and the
simulation produce (:func:`summary_from_record`, :func:`summary_from_simulation`).
Its curves come from :func:`vfl.ml.curves.curves_for`, which party B runs at evaluation on
the scores and labels it already holds and which keeps only aggregate points
(thinned ROC, score bands, calibration bins, a score histogram): the job record
never holds a row's score.

With one feature party the page speaks of "party A", as the two-party
protocol does. With k ≥ 2 the summary has a ``feature_parties`` list (see
:func:`_feature_party`), one entry per feature party in roster order, and
every section names each feature party by its id.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import time
from typing import Any

import numpy as np

import vfl
from vfl.ml.config import DEFAULT_LEARNING_RATE, DEFAULT_MOMENTUM
from vfl.errors import ConfigError
from vfl.report import fmt
from vfl.report.contributions import ledger_section
from vfl.report.contributions import section as contribution_section

log = logging.getLogger(__name__)

#: one panel of the parameter figure: line names, values per epoch, y-axis label
plots_panel = tuple[list[str], list, str]
NO_FIGURES = "<p>No figures: they need matplotlib, which this install lacks (pip install 'vfl[report]').</p>"
MODEL_NAMES = {"logistic": "logistic regression", "linear": "linear regression"}
STOP_REASONS = {"max_epochs": "reached its epoch limit", "converged": "converged (the loss stopped moving)",
                "early_stopping": "stopped early (the validation loss stopped improving)"}


def _depth(fpr: list[float], tpr: list[float], positives: int, negatives: int) -> list[float]:
    """Share of all rows at or above each ROC cut: what a KS or gains chart puts on its x-axis."""
    n = max(1, positives + negatives)
    return [(t * positives + f * negatives) / n for f, t in zip(fpr, tpr)]


def _captured(depth: list[float], tpr: list[float], share: float) -> float:
    """Share of all positives in the top ``share`` of rows (interpolated between ROC cuts)."""
    return float(np.interp(share, depth, tpr))


# -- figures ----------------------------------------------------------------------------------------------------


def figures_for(summary: dict[str, Any]) -> dict[str, bytes]:
    """The figures of a job, as PNG bytes keyed by file name (none without matplotlib)."""
    try:
        from vfl.report import plots
    except ConfigError as exc:  # the `report` extra is not installed: the report goes out without figures
        log.warning("job report without figures: %s", exc)
        return {}

    kept = summary.get("kept_epoch")
    marked = kept if summary.get("validation_loss_history") else None  # an epoch chosen on validation loss
    figures = {
        "loss.png": plots.training_loss(summary["loss_history"], summary.get("validation_loss_history") or [],
                                        kept_epoch=marked, title="Loss per epoch"),
        "parameters.png": plots.parameter_trajectories(_parameter_panels(summary), kept_epoch=marked,
                                                       title="Parameters after each epoch"),
    }
    curves = summary.get("curves") or {}
    split = summary.get("curve_split", "train")
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = _baseline_metrics(summary, split)
    if curves.get("kind") == "roc":
        curve, baseline = _roc_curves(curves)
        if baseline is not None:
            baseline["auc"] = alone.get("auc")
        figures["roc_ks.png"] = plots.roc_and_ks(curve, auc=metrics.get("auc"), ks=metrics.get("ks"),
                                                 baseline=baseline)
        if curve.get("depth") is not None and curves.get("bands"):
            figures["gains.png"] = plots.gains_and_lift(curve, curves["bands"], baseline=baseline)
        if curves.get("calibration"):
            figures["calibration.png"] = plots.calibration_and_scores(
                curves["calibration"], curves.get("histogram"), threshold=_threshold(summary))
    elif curves.get("kind") == "scatter":
        figures["residuals.png"] = plots.residuals(curves["actual"], curves["predicted"])
    contributions = summary.get("contributions")
    if contributions and contributions.get("parties"):
        from vfl.report.contributions import bar_chart

        figures["contributions.png"] = bar_chart(contributions)
    return figures


def _roc_curves(curves: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The federated model's and party B's own ROC points, with each cut's depth when the class counts are kept."""
    pos, neg = curves.get("positives"), curves.get("negatives")
    curve = {"fpr": curves["fpr"], "tpr": curves["tpr"], "positives": pos, "negatives": neg,
             "ks_point": curves.get("ks_point"),
             "depth": _depth(curves["fpr"], curves["tpr"], pos, neg) if pos is not None else None}
    baseline = None
    if "baseline_fpr" in curves:
        baseline = {"fpr": curves["baseline_fpr"], "tpr": curves["baseline_tpr"],
                    "depth": (_depth(curves["baseline_fpr"], curves["baseline_tpr"], pos, neg)
                              if pos is not None else None)}
    return curve, baseline


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


# -- small HTML helpers ------------------------------------------------------------------------------------------


class Raw(str):
    """A table cell that is already HTML."""


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return f"<td>{value}</td>"
    return f"<td>{html.escape(value if isinstance(value, str) else fmt.number(value))}</td>"


def _table(rows: list[list[Any]], header: list[str], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _valued(value: Any, text: str) -> Raw:
    """A cell that shows ``text`` and keeps the exact value for whoever checks the page."""
    exact = "" if value is None else repr(float(value))
    return Raw(f'<span data-value="{exact}">{html.escape(text)}</span>')


# -- who the page talks about -------------------------------------------------------------------------------------


def _k(summary: dict[str, Any]) -> int:
    return len(summary.get("feature_parties") or []) or 1


def _others(summary: dict[str, Any]) -> str:
    """The feature side, as the page names it: "party A", or "feature parties shop and telco"."""
    features = summary.get("feature_parties")
    if not features:
        return "party A"
    names = [f["party"] for f in features]
    return "feature parties " + (", ".join(names[:-1]) + " and " + names[-1])


def _model_name(summary: dict[str, Any]) -> str:
    return MODEL_NAMES.get(summary.get("model") or "", summary.get("model") or "model")


def _split_words(summary: dict[str, Any]) -> tuple[str, int | None]:
    """("held-out validation rows", 69), or ("training rows", 278) without a validation split."""
    split = summary.get("curve_split", "train")
    rows = ((summary.get("metrics") or {}).get(split) or {}).get("rows")
    return ("held-out validation rows" if split == "validation" else "training rows (no validation split)"), rows


def _baseline_metrics(summary: dict[str, Any], split: str) -> dict[str, Any]:
    return (((summary.get("baseline") or {}).get("metrics") or {}).get(split)) or {}


def _threshold(summary: dict[str, Any]) -> float | None:
    decision = summary.get("decision")
    if decision:
        return float(decision["threshold"]["value"])
    return 0.5 if summary.get("model") == "logistic" else None


# -- sections ------------------------------------------------------------------------------------------------------

HEADLINE_METRICS = {"logistic": ["auc", "ks", "recall"], "linear": ["r2", "rmse", "mae"]}


def _headline(summary: dict[str, Any]) -> str:
    """What federation adds: the federated model against party B alone on the same rows."""
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = _baseline_metrics(summary, split)
    names = HEADLINE_METRICS.get(summary.get("model") or "logistic", HEADLINE_METRICS["logistic"])
    table_rows = []
    for name in names:
        label = fmt.METRIC_NAMES[name]
        if name == "recall" and _threshold(summary) is not None:
            label += f" at threshold {_threshold(summary):.2f}"
        table_rows.append(
            f'<tr data-metric="{name}"><td>{html.escape(label)}</td>'
            f"<td>{_valued(metrics.get(name), fmt.metric(name, metrics.get(name)))}</td>"
            f"<td>{_valued(alone.get(name), fmt.metric(name, alone.get(name))) if alone else 'not trained'}</td>"
            f"<td>{html.escape(fmt.metric_change(name, metrics.get(name), alone.get(name)))}</td></tr>")
    table = ('<table id="uplift" class="headline"><thead><tr><th>metric</th><th>federated model</th>'
             f"<th>party B alone</th><th>difference</th></tr></thead><tbody>{''.join(table_rows)}</tbody></table>")
    lead_metric = names[0]
    if alone and metrics.get(lead_metric) is not None and alone.get(lead_metric) is not None:
        new, old = metrics[lead_metric], alone[lead_metric]
        verb = "raises" if new > old else "lowers" if new < old else "leaves"
        change = fmt.metric_change(lead_metric, new, old).split(" (")[0]
        lead = (f"Adding the features of {_others(summary)} {verb} {fmt.METRIC_NAMES[lead_metric]} "
                f"from {fmt.metric(lead_metric, old)} (party B alone) to {fmt.metric(lead_metric, new)} ({change}) "
                f"on {fmt.integer(rows)} {where}.")
    elif metrics:
        lead = (f"The federated {_model_name(summary)} reaches {fmt.METRIC_NAMES[lead_metric]} "
                f"{fmt.metric(lead_metric, metrics.get(lead_metric))} on {fmt.integer(rows)} {where}. "
                "No bank-only baseline was trained for this job (a simulation trains only the federated model; "
                "vfl compare trains both), so the uplift is not known.")
    else:
        lead = "This job has no metrics."
    notes = []
    if alone:
        same = ", with the same calibration and threshold rule." if summary.get("decision") else "."
        notes.append("Both models are the same algorithm on the same rows; party B alone uses only its own features"
                     + same)
    if rows is not None and rows < 500 and alone:
        notes.append(f"With {fmt.integer(rows)} rows a difference of a few hundredths is within noise.")
    note = f'<p class="note">{html.escape(" ".join(notes))}</p>' if notes else ""
    return f'<p class="lead">{html.escape(lead)}</p>{table}{note}'


def _context(summary: dict[str, Any]) -> str:
    """The job in one table: when, which version, who, what data, which model and settings."""
    config = summary.get("config") or {}
    rows: list[list[Any]] = [["job", summary["title"]], ["state", summary.get("state") or "—"]]
    if summary.get("finished_at"):
        rows.append(["finished", fmt.when(summary["finished_at"])])
    rows.append(["vfl version", summary.get("version") or vfl.__version__])
    for party in summary.get("parties") or []:
        pieces = [party["id"]] if party.get("id") else []
        if party.get("dataset"):
            pieces.append(f"dataset “{party['dataset']}”")
        if party.get("features") is not None:
            pieces.append(fmt.plural(party["features"], "feature"))
        rows.append([party["role"], ", ".join(pieces) or "—"])
    model = _model_name(summary)
    epochs = summary.get("epochs")
    stop = STOP_REASONS.get(summary.get("stop_reason") or "", summary.get("stop_reason") or "")
    text = f"{model}, {config.get('optimizer', 'newton')} optimiser; {fmt.plural(int(epochs or 0), 'epoch')} run"
    if config.get("epochs"):
        text += f" of at most {fmt.integer(config['epochs'])}"
    rows.append(["model", text + (f", {stop}" if stop else "")])
    kept = summary.get("kept_epoch")
    if kept is not None and summary.get("validation_loss_history"):
        rows.append(["weights kept", f"epoch {kept}, the lowest validation loss"])
    counts = summary.get("rows") or {}
    if counts.get("aligned") is not None:
        text = f"{fmt.integer(counts['aligned'])} aligned rows"
        parts = [f"{fmt.integer(counts[s])} {s}" for s in ("training", "validation") if counts.get(s)]
        rows.append(["rows", text + (f": {', '.join(parts)}" if parts else "")])
    if config.get("key_bits"):
        psi = f", {fmt.integer(summary['psi_key_bits'])}-bit RSA (PSI)" if summary.get("psi_key_bits") else ""
        rows.append(["key size", f"{fmt.integer(config['key_bits'])}-bit Paillier (training){psi}"])
    decision = summary.get("decision")
    if decision:
        rows.append(["threshold", _threshold_words(decision)])
        rows.append(["calibration", "Platt scaling" if decision.get("calibration") else "none: p = σ(u)"])
    elif summary.get("model") == "logistic":
        rows.append(["threshold", "0.50"])
    privacy = summary.get("privacy")
    rows.append(["differential privacy",
                 f"ε = {privacy['epsilon']:g}, δ = {privacy['delta']:g}" if privacy else "off"])
    return _table(rows, ["", ""], css="context")


def _threshold_words(decision: dict[str, Any]) -> str:
    threshold = decision["threshold"]
    how = {"fixed": "fixed in the job spec", "max_f1": "picked for the best F1",
           "max_ks": "picked for the largest KS",
           "precision": f"picked for the most recall at precision ≥ {threshold.get('target')}"}.get(
        threshold["rule"], threshold["rule"])
    if threshold["rule"] != "fixed":
        how += f" on the {fmt.integer(decision.get('rows'))} {decision.get('fitted_on', '')} rows"
    if not threshold.get("reached", True):
        how += ", target not reached"
    return f"{threshold['value']:.2f} ({how})"


def _coefficients(summary: dict[str, Any]) -> str:
    """Party B's weights by name and sign; the feature parties' weights stay with them."""
    coefficients = summary.get("coefficients")
    parts = []
    if coefficients and coefficients.get("names"):
        logistic = summary.get("model") == "logistic"
        platt = ((summary.get("decision") or {}).get("calibration") or {}) if logistic else {}
        slope = platt.get("a", 1.0)
        weights = coefficients["weights"]
        total = sum(abs(w) for w in weights) or 1.0
        order = sorted(range(len(weights)), key=lambda i: -abs(weights[i]))
        header = ["feature", "weight (per SD)", "direction", "share of |weights|"]
        if logistic:
            header.insert(3, "odds ratio per +1 SD")
        body = []
        for i in order:
            name, w = coefficients["names"][i], weights[i]
            what = "score" if logistic else "prediction"
            direction = (f"raises the {what}" if w > 0 else f"lowers the {what}" if w < 0 else "no effect")
            cells = [f"<td>{html.escape(name)}</td>", f"<td>{_valued(w, _signed(w))}</td>",
                     f"<td>{'▲' if w > 0 else '▼' if w < 0 else '·'} {direction}</td>"]
            if logistic:
                odds = math.exp(slope * w)
                cells.append(f"<td>{odds:.2f}×</td>" if odds >= 0.01 else "<td>&lt; 0.01×</td>")  # not 0.00×
            share = abs(w) / total
            cells.append(f'<td><span class="bar" style="width:{100 * share:.0f}px"></span> '
                         f"{fmt.percent(share, 0)}</td>")
            body.append(f'<tr data-feature="{html.escape(name)}">{"".join(cells)}</tr>')
        if coefficients.get("intercept") is not None:
            span = len(header) - 2
            intercept_words = ("the score u (log-odds before calibration) of a row whose features, every party's, "
                               "all sit at their means" if logistic else
                               "the prediction for a row whose features, every party's, all sit at their means "
                               "(in standard deviations of the label from its mean)")
            body.append(f'<tr data-feature="intercept"><td><i>intercept</i></td>'
                        f"<td>{_valued(coefficients['intercept'], _signed(coefficients['intercept']))}</td>"
                        f'<td colspan="{span}">{intercept_words}</td></tr>')
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        unit = ("Weights act on standardised features (per standard deviation), so their sizes compare; "
                + ("the odds ratio is the model's "
                   + (f"(after calibration, Platt slope {slope:.3f}) " if platt else "")
                   + "for one standard deviation more of the feature, all else equal. "
                   if logistic else "for linear regression they are in standard deviations of the label. ")
                + (f"From epoch {coefficients['epoch']}, the weights the model keeps." if coefficients.get("epoch")
                   else ""))
        parts.append(f'<p class="note">{html.escape(unit)}</p>'
                     f'<table id="coefficients"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    else:
        parts.append("<p>Party B's weights are not in this job's record.</p>")
    parts.append(f"<p>{html.escape(_hidden_weights(summary))}</p>")
    return "".join(parts)


def _signed(value: float) -> str:
    """A weight with its sign and three decimals: "+0.304", "−1.336"; "0.000" for what rounds to zero."""
    if abs(value) < 0.0005:
        return "0.000"
    return f"{value:+.3f}".replace("-", "−")


def _hidden_weights(summary: dict[str, Any]) -> str:
    """What party B can say about weights it never sees."""
    kept = summary.get("kept_epoch")
    simulated = summary.get("simulated")

    def norm(convergence: dict[str, Any] | None) -> str:
        if not convergence or not convergence.get("weight_norm"):
            return ""
        values = convergence["weight_norm"]
        at = kept - 1 if kept and kept <= len(values) else len(values) - 1
        return f" (‖θ‖ = {values[at]:.3f} at epoch {at + 1})"

    if simulated:
        return (f"The weights of {_others(summary)} are not shown here: in a service job they never leave "
                f"{'that party' if _k(summary) == 1 else 'those parties'}, and party B never learns them. This "
                "one-process simulation holds them, so their trajectories are in the parameter figure below.")
    if summary.get("feature_parties"):
        listed = "; ".join(f"{f['party']}{norm(f.get('convergence'))}" for f in summary["feature_parties"])
        return ("Each feature party's weights stay with that party: party B never learns them, only the overall "
                f"size of each party's weight vector, which it shares for this report: {listed}.")
    features = next((p.get("features") for p in summary.get("parties") or [] if p["role"].startswith("party A")),
                    None)
    count = f"{fmt.plural(features, 'weight')}" if features else "weights"
    return (f"Party A's {count} stay with party A: party B never learns them, only the overall size of A's weight "
            f"vector{norm(summary.get('party_a_convergence'))}, which A shares for this report.")


def _performance(summary: dict[str, Any], image: dict[str, str]) -> str:
    """How the model ranks and decides (logistic), or how close it comes (linear)."""
    curves = summary.get("curves") or {}
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = _baseline_metrics(summary, split)
    model = _model_name(summary)
    on_rows = f"on the {fmt.integer(rows)} {where}"
    out = []
    if curves.get("kind") == "roc":
        curve, baseline = _roc_curves(curves)
        versus = (f" against party B's features alone (AUC {fmt.metric('auc', alone.get('auc'))})" if baseline else "")
        caption = (f"Left: ROC of the federated {model} (AUC {fmt.metric('auc', metrics.get('auc'))}){versus}, "
                   f"{on_rows}. Right: KS chart: ranking the rows by the federated score, the share of all label-1 "
                   f"rows ({fmt.integer(curves.get('positives'))}) and of all label-0 rows "
                   f"({fmt.integer(curves.get('negatives'))}) found so far; the largest gap is KS "
                   f"{fmt.metric('ks', metrics.get('ks'))}")
        if curves.get("ks_point"):
            caption += f", reached in the top {fmt.percent(curves['ks_point']['depth'], 0)} of rows"
        if curve.get("depth") is None:
            caption = (f"ROC of the federated {model} (AUC {fmt.metric('auc', metrics.get('auc'))}){versus}, "
                       f"{on_rows}. This job's record keeps no class counts, so there is no KS chart")
        out.append(_figure("roc_ks.png", image, caption + "."))
        if "gains.png" in image:
            bands = curves["bands"]
            top = 1 / len(bands["rows"])
            found = _captured(curve["depth"], curve["tpr"], 0.2)
            text = (f"Left: share of all {fmt.integer(curves['positives'])} label-1 rows found by contacting the "
                    f"highest-scored rows first, {on_rows}: the federated {model} finds {fmt.percent(found, 0)} of "
                    "them in the top 20% of rows")
            if baseline and baseline.get("depth"):
                text += f", party B alone {fmt.percent(_captured(baseline['depth'], baseline['tpr'], 0.2), 0)}"
            text += (f". Right: lift of each band of {fmt.percent(top, 0)} of rows by score (1 = highest), its "
                     "rate of label 1 over the average rate"
                     f" ({fmt.percent(curves['positives'] / max(1, curves['positives'] + curves['negatives']))})")
            out.append(_figure("gains.png", image, text + "."))
            out.append(_bands_table(curves))
        out.append(_decision(summary))
        if "calibration.png" in image:
            calibration = curves["calibration"]
            fitted = summary.get("decision") or {}
            how = ("after Platt scaling fitted by party B on the "
                   f"{fmt.integer(fitted.get('rows'))} {fitted.get('fitted_on', '')} rows"
                   if fitted.get("calibration") else "without calibration (p = σ(u))")
            text = (f"Left: the federated {model}'s predicted probabilities ({how}) against what happened, "
                    f"{on_rows} in {len(calibration['rows'])} bins of about "
                    f"{fmt.integer(sum(calibration['rows']) / len(calibration['rows']))} rows by prediction; points on "
                    "the diagonal are well calibrated. Right: the predicted probabilities of label-1 and label-0 rows, "
                    f"and the threshold {_threshold(summary):.2f}: rows to its right are predicted 1")
            out.append(_figure("calibration.png", image, text + "."))
    elif curves.get("kind") == "scatter":
        sample = len(curves["actual"])
        total = curves.get("rows") or rows
        sampled = (f"{fmt.integer(sample)} rows sampled from the {fmt.integer(total)} {where}"
                   if total and sample < total else f"the {fmt.integer(sample)} {where}")
        text = (f"Left: predictions of the federated {model} against the actual label for {sampled} "
                f"(RMSE {fmt.metric('rmse', metrics.get('rmse'))}, R² {fmt.metric('r2', metrics.get('r2'))}). "
                "Right: residuals (actual − predicted) against the prediction; a band without trend or funnel "
                "around zero means the errors do not depend on the predicted value")
        out.append(_figure("residuals.png", image, text + "."))
    return "".join(o for o in out if o)


def _figure(name: str, image: dict[str, str], caption: str) -> str:
    if name not in image:
        return ""
    return (f'<figure><img class="figure" alt="{html.escape(name)}" src="data:image/png;base64,{image[name]}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _bands_table(summary_curves: dict[str, Any]) -> str:
    bands = summary_curves["bands"]
    total_pos = max(1, sum(bands["positives"]))
    rate = sum(bands["positives"]) / max(1, sum(bands["rows"]))
    rows, found, seen = [], 0, 0
    alone = bands.get("baseline_positives")
    for i, (n, p) in enumerate(zip(bands["rows"], bands["positives"])):
        found += p
        seen += n
        row = [str(i + 1), fmt.integer(n), fmt.integer(p), fmt.percent(p / n if n else 0),
               f"{(p / n / rate if n and rate else 0):.2f}", fmt.percent(found / total_pos, 0)]
        if alone:
            row.append(f"{(alone[i] / n / rate if n and rate else 0):.2f}")
        rows.append(row)
    header = ["band (1 = highest scores)", "rows", "label 1", "rate of label 1", "lift", "cumulative share of label 1"]
    if alone:
        header.append("lift, party B alone")
    return f'<details><summary>Rows, label-1 count and lift per score band</summary>{_table(rows, header)}</details>'


def _confusion(summary: dict[str, Any], metrics: dict[str, Any]) -> dict[str, int] | None:
    """True/false positives and negatives at the threshold, from the metrics and the class counts.

    recall = TP / positives and accuracy = (TP + TN) / rows are exact ratios of
    counts, so the counts come back exactly; a check on precision guards the step.
    """
    curves = summary.get("curves") or {}
    positives, negatives = curves.get("positives"), curves.get("negatives")
    if positives is None or not metrics or metrics.get("recall") is None or metrics.get("accuracy") is None:
        return None
    n = positives + negatives
    tp = round(metrics["recall"] * positives)
    tn = round(metrics["accuracy"] * n) - tp
    fp, fn = negatives - tn, positives - tp
    if min(tp, tn, fp, fn) < 0 or (metrics.get("rows") not in (None, n)):
        return None
    precision = tp / (tp + fp) if tp + fp else 0.0
    if metrics.get("precision") is not None and abs(precision - metrics["precision"]) > 1e-6:
        return None
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn}


def _confusion_table(counts: dict[str, int], threshold: float | None, title: str, css_id: str) -> str:
    positives, negatives = counts["tp"] + counts["fn"], counts["fp"] + counts["tn"]
    cut = f"p ≥ {threshold:.2f}" if threshold is not None else "its threshold"

    def cell(key: str, of: int, good: bool, actual: int) -> str:
        share = fmt.percent(counts[key] / of, 0) if of else "—"
        return (f'<td class="{"good" if good else "bad"}" data-{key}="{counts[key]}">'
                f"<b>{fmt.integer(counts[key])}</b><br><small>{share} of actual {actual}s</small></td>")

    return (f'<table class="confusion" id="{css_id}"><caption>{html.escape(title)}</caption>'
            f"<thead><tr><th></th><th>predicted 1<br><small>({cut})</small></th><th>predicted 0</th><th>total</th></tr>"
            f"</thead><tbody><tr><th>actual 1</th>{cell('tp', positives, True, 1)}{cell('fn', positives, False, 1)}"
            f"<td>{fmt.integer(positives)}</td></tr>"
            f"<tr><th>actual 0</th>{cell('fp', negatives, False, 0)}{cell('tn', negatives, True, 0)}"
            f"<td>{fmt.integer(negatives)}</td></tr></tbody></table>")


def _decision(summary: dict[str, Any]) -> str:
    """The confusion matrix at the threshold used, and party B's decision layer."""
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    threshold = _threshold(summary)
    counts = _confusion(summary, metrics)
    parts = [f"<h3>Decisions at threshold {threshold:.2f}</h3>"]
    if counts is None:
        parts.append("<p>This job's record does not keep the class counts, so the confusion matrix is not shown.</p>")
    else:
        flagged = counts["tp"] + counts["fp"]
        tp, actual = counts["tp"], counts["tp"] + counts["fn"]
        text = (f"On the {fmt.integer(rows)} {where} the federated model flags {fmt.plural(flagged, 'row')} as 1: it "
                f"catches {fmt.integer(tp)} of the {fmt.integer(actual)} actual 1s (recall "
                f"{fmt.percent(metrics.get('recall'))})")
        if flagged:
            text += (f", and {fmt.integer(tp)} of the {fmt.integer(flagged)} it flags are right (precision "
                     f"{fmt.percent(metrics.get('precision'))})")
        parts.append(f"<p>{html.escape(text)}.</p>")
        tables = [_confusion_table(counts, threshold, f"federated {_model_name(summary)}", "confusion")]
        alone = _confusion(summary, _baseline_metrics(summary, split))
        if alone is not None:
            rule = ((summary.get("decision") or {}).get("threshold") or {}).get("rule", "fixed")
            tables.append(_confusion_table(alone, threshold if rule == "fixed" else None,
                                           "party B alone" + ("" if rule == "fixed" else
                                                              " (its own threshold, same rule)"), "confusion-alone"))
        parts.append(f'<div class="side">{"".join(tables)}</div>')
    decision = summary.get("decision")
    if decision:
        calibration = decision.get("calibration")
        text = (f"Platt scaling p = σ({calibration['a']:.3f}·u {'+' if calibration['b'] >= 0 else '−'} "
                f"{abs(calibration['b']):.3f})"
                if calibration else "No calibration: p = σ(u)")
        text += (f", fitted by party B on its {fmt.integer(decision['rows'])} {decision['fitted_on']} rows; threshold "
                 f"{_threshold_words(decision)}. Scores keep their order, so AUC and KS do not change; the metrics "
                 "before calibration are in the last column of the metrics table.")
        parts.append(f'<p class="note">{html.escape(text)}</p>')
    return "".join(parts)


def _metrics_table(summary: dict[str, Any]) -> str:
    """Every metric on every split: federated, party B alone, the difference, and before calibration."""
    metrics = summary.get("metrics") or {}
    splits = sorted(metrics, key=lambda s: {"validation": 0, "train": 1}.get(s, 2))
    uncalibrated = (summary.get("decision") or {}).get("uncalibrated") or {}
    top, sub = ["<th></th>"], ["<th>metric</th>"]
    for split in splits:
        columns = ["federated", "party B alone", "difference"]
        columns += ["before calibration"] if uncalibrated.get(split) else []
        label = {"train": "training rows", "validation": "validation rows"}.get(split, split)
        top.append(f'<th colspan="{len(columns)}" class="group">{fmt.integer(metrics[split].get("rows"))} '
                   f"{html.escape(label)}</th>")
        sub += [("<th class='group'>" if i == 0 else "<th>") + html.escape(c) + "</th>" for i, c in enumerate(columns)]
    present = [n for n in dict.fromkeys(k for s in splits for k in metrics[s]) if n != "rows"]
    names = [n for n in fmt.METRIC_NAMES if n in present] + [n for n in present if n not in fmt.METRIC_NAMES]
    body = []
    for name in names:
        cells = [f"<td>{html.escape(fmt.METRIC_NAMES.get(name, name))}</td>"]
        for split in splits:
            mine, alone = metrics[split].get(name), _baseline_metrics(summary, split).get(name)
            change = fmt.metric_change(name, mine, alone)
            text, _, verdict = change.partition(" (")
            css = {"better)": "good", "worse)": "bad"}.get(verdict, "")
            cells += [f'<td class="group">{fmt.metric(name, mine)}</td>', f"<td>{fmt.metric(name, alone)}</td>",
                      f'<td class="{css}">{html.escape(text)}</td>']
            if uncalibrated.get(split):
                cells.append(f"<td>{fmt.metric(name, uncalibrated[split].get(name))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = ("Difference: federated minus party B alone, in points for AUC, KS, F1, log-loss and Brier score and in "
            "percentage points (pp) for shares; green where the federated model is better (higher, or lower for "
            "losses and errors).")
    if uncalibrated:
        note += " Before calibration: σ(u) with the threshold at 0.50."
    return (f'<table class="metrics"><thead><tr>{"".join(top)}</tr><tr>{"".join(sub)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><p class="note">{html.escape(note)}</p>')


def _privacy(privacy: dict[str, Any] | None) -> str:
    if not privacy:
        return "<p>Not differentially private: no noise was added (exact federated training).</p>"
    words = {"epsilon": ("ε spent", lambda v: f"{v:g}"), "delta": ("δ", lambda v: f"{v:g}"),
             "noise_multiplier": ("noise multiplier σ", lambda v: f"{v:.3g}"),
             "sensitivity": ("sensitivity S", lambda v: f"{v:.3g}"),
             "noise_std": ("noise standard deviation σ·S", lambda v: f"{v:.3g}"),
             "sampling_rate": ("sampling rate (batch ÷ rows)", fmt.percent),
             "steps": ("noisy steps", fmt.integer), "row_clip": ("row clip C", fmt.number),
             "weight_bound": ("weight bound W", fmt.number), "label_clip": ("label clip Y (linear)", fmt.number),
             "accountant": ("accountant", str)}
    rows = [[words.get(k, (k, fmt.number))[0], words.get(k, (k, fmt.number))[1](v)] for k, v in privacy.items()
            if v is not None]
    return _table(rows, ["privacy", "value"])


def _timings(summary: dict[str, Any]) -> str:
    names = {"alignment": "alignment (PSI)", "training": "training", "total": "total, submission to result"}
    rows = [[names.get(k, k), fmt.seconds(v)] for k, v in (summary.get("timings") or {}).items()
            if not isinstance(v, dict)]
    return _table(rows, ["stage", "time"])


def _settings(summary: dict[str, Any]) -> str:
    """The training settings in words: "all training rows", "default (0.7 for newton)", never null."""
    config = dict(summary.get("config") or {})
    model = config.get("model") or summary.get("model") or "logistic"
    optimizer = config.get("optimizer") or "newton"
    validation = config.get("validation_fraction") or 0
    words = {
        "model": lambda v: MODEL_NAMES.get(v, v),
        "epochs": lambda v: f"at most {fmt.integer(v)}",
        "batch_size": lambda v: "all training rows (full batch)" if v is None else f"{fmt.integer(v)} rows",
        "optimizer": lambda v: {"newton": "Newton (party-local)", "adam": "Adam", "sgd": "SGD"}.get(v, v),
        "learning_rate": lambda v: (f"default ({DEFAULT_LEARNING_RATE.get(optimizer, '—')} for {optimizer})"
                                    if v is None else fmt.number(v)),
        "momentum": lambda v: (f"default ({DEFAULT_MOMENTUM.get(optimizer, 0)} for {optimizer})"
                               if v is None else fmt.number(v)),
        "decay": lambda v: "none" if not v else f"lr ÷ (1 + {fmt.number(v)}·epoch)",
        "decay_sqrt": lambda v: "yes" if v else "no",
        "l2": lambda v: "none" if not v else f"λ = {fmt.number(v)}",
        "fit_intercept": lambda v: "yes" if v or v is None else "no",
        "tol": lambda v: f"stop when the loss moves less than {v:g}" if v else "never stop on the loss",
        "seed": lambda v: fmt.number(v),
        "validation_fraction": lambda v: (f"{fmt.percent(v, 0)} of the aligned rows" if v
                                          else "none: every aligned row trains"),
        "early_stopping_rounds": lambda v: ("off" if not v else "not used (no validation split)" if not validation
                                            else f"after {fmt.plural(v, 'epoch')} without improvement"),
        "loss_every": lambda v: "every batch" if v in (None, 1) else f"every {fmt.integer(v)} batches",
        "key_bits": lambda v: f"{fmt.integer(v)} bits",
        "feature_frac_bits": lambda v: f"{v} fractional bits",
        "value_frac_bits": lambda v: f"{v} fractional bits",
        "obfuscation": lambda v: {"djn": "DJN (fast)", "strict": "strict (fresh randomness per value)"}.get(v, v),
        "privacy": lambda v: ("off" if not v else
                              ", ".join(f"{k} {fmt.number(x)}" for k, x in v.items() if x is not None)),
        "calibration": lambda v: ("none (linear model)" if model == "linear" else
                                  "default (Platt scaling)" if v is None else {"platt": "Platt scaling",
                                                                              "none": "none"}.get(v, v)),
        "threshold": lambda v: ("not used (linear model)" if model == "linear" else
                                f"{float(v):.2f}, fixed" if isinstance(v, (int, float)) else
                                f"picked by {v.get('pick')}" + (f", target {v['target']}" if v.get("target") else "")),
    }
    labels = {"batch_size": "batch size", "learning_rate": "learning rate", "decay_sqrt": "square-root decay",
              "l2": "L2 penalty", "fit_intercept": "intercept", "tol": "tolerance",
              "validation_fraction": "validation split", "early_stopping_rounds": "early stopping",
              "loss_every": "loss computed", "key_bits": "Paillier key", "feature_frac_bits": "feature precision",
              "value_frac_bits": "score precision", "obfuscation": "ciphertext obfuscation",
              "privacy": "differential privacy"}
    rows = []
    for key in list(words) + [k for k in config if k not in words]:
        if key not in config and key not in ("batch_size", "learning_rate", "momentum", "privacy", "calibration"):
            continue
        value = config.get(key)
        try:
            text = words[key](value) if key in words else ("default" if value is None else fmt.number(value))
        except (TypeError, ValueError, AttributeError):
            text = "default" if value is None else fmt.number(value)
        rows.append([labels.get(key, key.replace("_", " ")), text])
    return _table(rows, ["setting", "value"], css="settings")


STYLE = """
 body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1040px; margin: 2em auto;
        padding: 0 1em; color: #222; line-height: 1.45; }
 h1 { margin-bottom: 0.1em; }
 h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
 .subtitle { color: #555; margin-top: 0; }
 .lead { font-size: 1.3em; margin: 0.6em 0; }
 .note { color: #555; font-size: 0.95em; }
 table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
 th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; vertical-align: top; }
 th { background: #f3f3f3; }
 td span[data-value], table.metrics td:not(:first-child) { font-variant-numeric: tabular-nums; }
 table.headline { font-size: 1.15em; }
 table.headline td:not(:first-child) { text-align: right; min-width: 7em; }
 table.context td:first-child, table.settings td:first-child { color: #555; white-space: nowrap; }
 table.context thead, table.settings thead { display: none; }
 .side { display: flex; gap: 2em; flex-wrap: wrap; }
 table.confusion { margin: 0.3em 0 1em; }
 table.metrics td:not(:first-child) { text-align: right; }
 table.metrics .group { border-left: 2px solid #999; }
 table.metrics td.good { color: #1d6b1d; background: none; } table.metrics td.bad { color: #a12a2a; background: none; }
 table.confusion caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
 table.confusion td { text-align: center; min-width: 5.5em; }
 td.good { background: #eaf3ea; } td.bad { background: #fbeeee; }
 .bar { display: inline-block; height: 0.7em; background: #1f5fa8; vertical-align: middle; }
 figure { margin: 1em 0 1.5em; }
 img.figure { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
 figcaption { color: #444; font-size: 0.95em; margin-top: 0.3em; }
 details { margin-bottom: 1em; } summary { cursor: pointer; color: #1f5fa8; }
"""


def render(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report page. Figures are inlined, so the file stands alone."""
    esc = html.escape
    image = {name: base64.b64encode(png).decode() for name, png in figures.items()}
    model = _model_name(summary)
    kept = summary.get("kept_epoch")
    parameters_caption = (f"Each party's weights after every epoch of this {model}; party A keeps its weights, "
                          "so a service job shows only their norm and each epoch's change")
    if summary.get("simulated") and not summary.get("feature_parties"):
        parameters_caption = (f"Each party's weights after every epoch of this {model} (a one-process simulation "
                              "holds them all)")
    if summary.get("feature_parties"):  # k ≥ 2: name the panels, since the image is all the page has of them
        parameters_caption = (f"Each party's weights after every epoch of this {model}, one panel each: "
                              + "; ".join(_parameter_panels(summary)) + ". Each feature party keeps its weights, "
                              "so a service job shows only their norm and each epoch's change")
    if kept is not None and summary.get("validation_loss_history"):
        parameters_caption += f". The dotted line marks epoch {kept}, whose weights the model keeps"
    epochs = summary.get("epochs") or len(summary.get("loss_history") or [])
    stop = STOP_REASONS.get(summary.get("stop_reason") or "", summary.get("stop_reason") or "")
    loss_kind = ("the second-order Taylor approximation of the log-loss" if summary.get("model") == "logistic"
                 else "½·MSE on the standardised label")
    validation_rows = ((summary.get("metrics") or {}).get("validation") or {}).get("rows")
    loss_caption = (f"Loss of this {model} over its {fmt.plural(int(epochs), 'epoch')} ({stop}): {loss_kind}; "
                    "training loss (solid) measured at each batch before its update")
    if summary.get("validation_loss_history"):
        loss_caption += (f", validation loss (dashed) on the {fmt.integer(validation_rows)} validation rows after "
                         f"each epoch. The model keeps epoch {kept}, the lowest validation loss")
    else:
        loss_caption += ". No validation split: the model keeps the last epoch"
    training = (_figure("loss.png", image, loss_caption + ".")
                + _figure("parameters.png", image, parameters_caption + "."))
    performance = _performance(summary, image)
    learned = "".join(f"<li><b>{esc(party)}</b>: {esc(text)}</li>" for party, text in summary["learned"])
    heading = ("How the model ranks and decides" if summary.get("model") == "logistic"
               else "How close the predictions come")
    subtitle = f"{model} · {fmt.plural(_k(summary), 'feature party', 'feature parties')} and party B"
    if summary.get("finished_at"):
        subtitle += f" · finished {fmt.when(summary['finished_at'])}"
    if _k(summary) == 1:
        subtitle = subtitle.replace("1 feature party", "party A")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vfl job report — {esc(summary['title'])}</title>
<style>{STYLE}</style></head>
<body>
<h1>Federated model report: {esc(summary['title'])}</h1>
<p class="subtitle">{esc(subtitle)}</p>
<h2>Headline: what {esc(_others(summary))} {"adds" if _k(summary) == 1 else "add"}</h2>
{_headline(summary)}
<h2>Job</h2>
{_context(summary)}
<h2>Party B's coefficients</h2>
{_coefficients(summary)}
<h2>{esc(heading)}</h2>
{"" if figures else NO_FIGURES}
{performance}
<h2>Metrics</h2>
{_metrics_table(summary)}
{contribution_section(summary.get("contributions"), image)}
{ledger_section(summary.get("ledger"))}
<h2>Training</h2>
<div id="figures">{training or NO_FIGURES}</div>
<h2>Privacy</h2>
{_privacy(summary.get("privacy"))}
<h2>Alignment (RSA blind-signature PSI)</h2>
{_alignment_tables(summary)}
<h2>Timings</h2>
{_timings(summary)}
<h2>What each party learned</h2>
<ul>{learned}</ul>
<h2>Configuration</h2>
{_settings(summary)}
<script>
  // Lets a headless browser check that every figure decoded and drew.
  window.addEventListener("load", () => {{
    const images = Array.from(document.querySelectorAll("img.figure"));
    document.body.dataset.figures = images.length;
    document.body.dataset.figuresLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
    // shown width over drawn width: a figure squeezed to half its size reads 0.5
    document.body.dataset.figureScales = images.map(
      i => (i.getBoundingClientRect().width / Math.max(1, i.naturalWidth)).toFixed(2)).join(",");
  }});
</script>
</body></html>
"""


def _alignment_tables(summary: dict[str, Any]) -> str:
    alignment = summary.get("alignment") or {}
    features = summary.get("feature_parties")
    if not features:
        return _table([["party A IDs", alignment.get("party_a_ids")], ["party B IDs", alignment.get("party_b_ids")],
                       ["shared IDs", alignment.get("intersection")],
                       ["share of A", fmt.percent(alignment.get("overlap_of_a"))],
                       ["share of B", fmt.percent(alignment.get("overlap_of_b"))],
                       ["time", fmt.seconds(alignment.get("seconds"))],
                       ["bytes exchanged", fmt.size(alignment.get("bytes"))]], ["alignment", "value"])
    # k ≥ 2: B ran one PSI per feature party; the job trains on the IDs all of them share with B.
    joint = _table([["party B IDs", alignment.get("party_b_ids")],
                    ["joint IDs (held by every party)", alignment.get("intersection")],
                    ["share of B", fmt.percent(alignment.get("overlap_of_b"))],
                    ["time", fmt.seconds(alignment.get("seconds"))],
                    ["bytes exchanged", fmt.size(alignment.get("bytes"))]], ["alignment", "value"])
    pairwise = _table([[f["party"], (f.get("alignment") or {}).get("party_a_ids"), _pairwise_size(f),
                        fmt.percent((f.get("alignment") or {}).get("overlap_of_a"))] for f in features],
                      ["feature party", "its IDs", "shared with party B (pairwise PSI)", "share of its IDs"])
    return joint + pairwise


def _pairwise_size(feature: dict[str, Any]) -> int | None:
    pair = feature.get("alignment") or {}
    return pair.get("pairwise_intersection", pair.get("intersection"))


# -- who learned what ----------------------------------------------------------------------------------------------


def learned_by_each_party(summary: dict[str, Any]) -> list[tuple[str, str]]:
    alignment = summary.get("alignment") or {}
    shared = fmt.number(alignment.get("intersection"))
    loss = "the training loss of every epoch" + (" and the validation loss" if summary.get("validation_loss_history") else "")
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
                     f"the {fmt.number(_pairwise_size(f))} IDs it shares with party B and that party B holds "
                     f"{fmt.number(b_size)} IDs; which {joint} of its shared IDs every party holds (the joint rows it "
                     "trains on); its own gradient each batch (masked to everyone else) and its own weights; when "
                     "to stop. No label, no loss, no residual in plaintext."))
    sizes = "; ".join(f"{f['party']}: {fmt.number((f.get('alignment') or {}).get('party_a_ids'))} IDs, "
                      f"{fmt.number(_pairwise_size(f))} shared" for f in features)
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


# -- summaries -----------------------------------------------------------------------------------------------------


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


def summary_from_simulation(result: dict[str, Any], title: str) -> dict[str, Any]:
    parameters = dict(result["parameters"])
    feature_list = result.get("feature_parties") or []
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
    coefficients = None
    if part_b:
        coefficients = {"names": list(part_b["feature_names"]), "weights": list(part_b["weights"]),
                        "intercept": part_b.get("intercept") if config.get("fit_intercept", True) else None,
                        "epoch": kept}
    roles = [{"role": "party B (labels and features)", "id": None, "dataset": None,
              "features": len(part_b["feature_names"]) if part_b else None}]
    for f in feature_list:
        name = "party A (features)" if len(feature_list) == 1 else f"feature party {f['party']}"
        roles.append({"role": name, "id": None,
                      "dataset": f.get("source"), "features": f.get("features")})
    summary = {
        "title": title, "state": "succeeded (simulated in one process)", "epochs": result["epochs_run"],
        "stop_reason": result["stop_reason"], "config": config, "alignment": result["alignment"],
        "metrics": result["metrics"], "baseline": None, "privacy": result.get("privacy"),
        "timings": {**result["timings"], "total": result["seconds"]},
        "loss_history": result["loss_history"], "validation_loss_history": result["validation_loss_history"],
        "parameters": parameters, "feature_parties": features,
        "curves": result["curves"], "curve_split": result["curve_split"], "decision": result.get("decision"),
        "model": result.get("model") or config.get("model"), "simulated": True, "finished_at": time.time(),
        "version": vfl.__version__, "parties": roles, "kept_epoch": kept, "coefficients": coefficients,
        "rows": {"aligned": result.get("aligned_rows"), "training": result.get("train_rows"),
                 "validation": result.get("validation_rows")},
        "contributions": result.get("contributions"), "ledger": result.get("ledger"),
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
    }
    summary["learned"] = learned_by_each_party(summary)
    return summary


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
