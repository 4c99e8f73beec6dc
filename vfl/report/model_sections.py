"""The report's sections on the model: the uplift headline, party B's coefficients, ranking and decisions, metrics."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from vfl.report import fmt
from vfl.report.figures import roc_curves
from vfl.report.markup import feature_side, figure, html_table, model_name, threshold_words, value_span
from vfl.report.summary import baseline_metrics, decision_threshold, feature_party_count


#: the metrics the headline compares, by model; the first one makes the lead sentence
HEADLINE_METRICS = {"logistic": ["auc", "ks", "recall"], "linear": ["r2", "rmse", "mae"]}


def headline_section(summary: dict[str, Any]) -> str:
    """What federation adds: the federated model against party B alone on the same rows."""
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = baseline_metrics(summary, split)
    names = HEADLINE_METRICS.get(summary.get("model") or "logistic", HEADLINE_METRICS["logistic"])
    table_rows = []
    for name in names:
        label = fmt.METRIC_NAMES[name]
        if name == "recall" and decision_threshold(summary) is not None:
            label += f" at threshold {decision_threshold(summary):.2f}"
        table_rows.append(
            f'<tr data-metric="{name}"><td>{html.escape(label)}</td>'
            f"<td>{value_span(metrics.get(name), fmt.metric(name, metrics.get(name)))}</td>"
            f"<td>{value_span(alone.get(name), fmt.metric(name, alone.get(name))) if alone else 'not trained'}</td>"
            f"<td>{html.escape(fmt.metric_change(name, metrics.get(name), alone.get(name)))}</td></tr>")
    table = ('<table id="uplift" class="headline"><thead><tr><th>metric</th><th>federated model</th>'
             f"<th>party B alone</th><th>difference</th></tr></thead><tbody>{''.join(table_rows)}</tbody></table>")
    lead_metric = names[0]
    if alone and metrics.get(lead_metric) is not None and alone.get(lead_metric) is not None:
        new, old = metrics[lead_metric], alone[lead_metric]
        verb = "raises" if new > old else "lowers" if new < old else "leaves"
        change = fmt.metric_change(lead_metric, new, old).split(" (")[0]
        lead = (f"Adding the features of {feature_side(summary)} {verb} {fmt.METRIC_NAMES[lead_metric]} "
                f"from {fmt.metric(lead_metric, old)} (party B alone) to {fmt.metric(lead_metric, new)} ({change}) "
                f"on {fmt.integer(rows)} {where}.")
    elif metrics:
        lead = (f"The federated {model_name(summary)} reaches {fmt.METRIC_NAMES[lead_metric]} "
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


def _split_words(summary: dict[str, Any]) -> tuple[str, int | None]:
    """("held-out validation rows", 69), or ("training rows", 278) without a validation split."""
    split = summary.get("curve_split", "train")
    rows = ((summary.get("metrics") or {}).get(split) or {}).get("rows")
    return ("held-out validation rows" if split == "validation" else "training rows (no validation split)"), rows


def coefficients_section(summary: dict[str, Any]) -> str:
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
            cells = [f"<td>{html.escape(name)}</td>", f"<td>{value_span(w, _signed(w))}</td>",
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
                        f"<td>{value_span(coefficients['intercept'], _signed(coefficients['intercept']))}</td>"
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
        holders = "that party" if feature_party_count(summary) == 1 else "those parties"
        return (f"The weights of {feature_side(summary)} are not shown here: in a service job they never leave "
                f"{holders}, and party B never learns them. This "
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


def performance_section(summary: dict[str, Any], image: dict[str, str]) -> str:
    """How the model ranks and decides (logistic), or how close it comes (linear)."""
    curves = summary.get("curves") or {}
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = baseline_metrics(summary, split)
    model = model_name(summary)
    on_rows = f"on the {fmt.integer(rows)} {where}"
    out = []
    if curves.get("kind") == "roc":
        curve, baseline = roc_curves(curves)
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
        out.append(figure("roc_ks.png", image, caption + "."))
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
            out.append(figure("gains.png", image, text + "."))
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
                    f"and the threshold {decision_threshold(summary):.2f}: rows to its right are predicted 1")
            out.append(figure("calibration.png", image, text + "."))
    elif curves.get("kind") == "scatter":
        sample = len(curves["actual"])
        total = curves.get("rows") or rows
        sampled = (f"{fmt.integer(sample)} rows sampled from the {fmt.integer(total)} {where}"
                   if total and sample < total else f"the {fmt.integer(sample)} {where}")
        text = (f"Left: predictions of the federated {model} against the actual label for {sampled} "
                f"(RMSE {fmt.metric('rmse', metrics.get('rmse'))}, R² {fmt.metric('r2', metrics.get('r2'))}). "
                "Right: residuals (actual − predicted) against the prediction; a band without trend or funnel "
                "around zero means the errors do not depend on the predicted value")
        out.append(figure("residuals.png", image, text + "."))
    return "".join(o for o in out if o)


def _captured(depth: list[float], tpr: list[float], share: float) -> float:
    """Share of all positives in the top ``share`` of rows (interpolated between ROC cuts)."""
    return float(np.interp(share, depth, tpr))


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
    return (f"<details><summary>Rows, label-1 count and lift per score band</summary>{html_table(rows, header)}"
            "</details>")


def _decision(summary: dict[str, Any]) -> str:
    """The confusion matrix at the threshold used, and party B's decision layer."""
    split = summary.get("curve_split", "train")
    where, rows = _split_words(summary)
    metrics = (summary.get("metrics") or {}).get(split) or {}
    threshold = decision_threshold(summary)
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
        tables = [_confusion_table(counts, threshold, f"federated {model_name(summary)}", "confusion")]
        alone = _confusion(summary, baseline_metrics(summary, split))
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
                 f"{threshold_words(decision)}. Scores keep their order, so AUC and KS do not change; the metrics "
                 "before calibration are in the last column of the metrics table.")
        parts.append(f'<p class="note">{html.escape(text)}</p>')
    return "".join(parts)


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


def metrics_section(summary: dict[str, Any]) -> str:
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
            mine, alone = metrics[split].get(name), baseline_metrics(summary, split).get(name)
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
