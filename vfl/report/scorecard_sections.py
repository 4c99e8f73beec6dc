"""The report's scorecard section (issue 28), and the reading of a ``scorecard`` section that the model document shares.

A scorecard job's result (``vfl simulate --scorecard``) and party B's job record
(the services) carry a ``scorecard`` section: every characteristic of every
party with its bins, counts, WOE and IV as B computed them; the points tables;
each partner's range of points totals; the integer score's AUC, KS, Gini and
bands; the baselines; and, once the model serves, its stability. The page
shows what party B may show:

* the bins (counts, event rate, WOE, IV) and the points of **B's own**
  characteristics only; a one-process simulation holds every party's points
  table, but a partner's table never leaves the partner, so the page shows
  only each partner's range of totals (:func:`own_points`, :func:`partner_ranges`);
* the IV of every characteristic of every party, with its band and whether it was selected;
* score bands with their bad rates, KS, Gini and AUC of the integer score, the points distribution;
* score PSI and each characteristic's CSI with the 0.1 and 0.25 bands, when the section has them.

:func:`scorecard_section` is the HTML; :func:`bands_chart` its figure.
"""

from __future__ import annotations

import html
import math
from typing import Any

from vfl.ml.scorecard.binning import Bins, iv_band
from vfl.report import fmt
from vfl.report.markup import figure, html_table, value_span

#: stability bands: below WATCH stable, from WATCH watch, from ALARM alarm (PSI and CSI alike)
WATCH, ALARM = 0.1, 0.25
#: what each IV band means, for the page and the model document
IV_BANDS = [("unpredictive", "< 0.02"), ("weak", "0.02–0.1"), ("medium", "0.1–0.3"), ("strong", "0.3–0.5"),
            ("suspicious", "≥ 0.5 (too good: check for a leak of the outcome)")]
FIGURE = "scorecard_bands.png"


# -- reading a scorecard section ---------------------------------------------------------------------------

def label_party(card: dict[str, Any]) -> str:
    """The label party's name: the holder of a points table that is nobody's partner range ("B" in a simulation)."""
    partners = set(partner_ranges(card))
    for party in card.get("points") or {}:
        if party not in partners:
            return str(party)
    return "B"


def partner_ranges(card: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Each partner → (lowest, highest) of the points totals it released."""
    return {str(p): (int(r[0]), int(r[1])) for p, r in (card.get("partner_ranges") or {}).items()}


def own_points(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Party B's points rows (characteristic, bin, label, points, code), from either form a section holds.

    A simulation keeps :meth:`PointsTable.rows` (one dict per bin); a service
    record keeps :meth:`PointsTable.to_dict` (per characteristic, its cuts and points).
    """
    table = (card.get("points") or {}).get(label_party(card))
    if not table:
        return []
    if isinstance(table, list):
        return [dict(r) for r in table]
    rows = []
    for c in table.get("characteristics") or []:
        labels = _bin_labels(c.get("bins"), len(c.get("points") or []))
        for b, points in enumerate(c.get("points") or []):
            rows.append({"characteristic": c.get("name"), "bin": b, "label": labels[b], "points": int(points),
                         "code": c.get("code")})
    return rows


def _bin_labels(bins: Any, count: int) -> list[str]:
    try:
        labels = list(Bins.from_dict(bins).labels())
    except Exception:  # noqa: BLE001 - a damaged or foreign table still shows its points, by bin number
        labels = []
    return labels + [f"bin {i}" for i in range(len(labels), count)]


def characteristics(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every characteristic of every party, B's first, each party's by IV (highest first), with its IV band."""
    b = label_party(card)
    out = []
    for c in card.get("characteristics") or []:
        iv = c.get("iv")
        band = c.get("band") or (iv_band(float(iv)) if iv is not None and math.isfinite(float(iv)) else None)
        out.append({**c, "band": band})
    return sorted(out, key=lambda c: (c.get("party") != b, str(c.get("party")), -(c.get("iv") or 0.0)))


def own_characteristics(card: dict[str, Any]) -> list[dict[str, Any]]:
    """B's own characteristics (selected ones first), whose bins the page shows."""
    b = label_party(card)
    mine = [c for c in characteristics(card) if c.get("party") == b]
    return sorted(mine, key=lambda c: not c.get("selected"))


def stability_status(value: float | None) -> str:
    """"stable" < 0.1 ≤ "watch" < 0.25 ≤ "alarm" ("—" without a value)."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return "stable" if value < WATCH else "watch" if value < ALARM else "alarm"


def stability(card: dict[str, Any]) -> dict[str, Any] | None:
    """The section's stability as {score: {psi, status, rows}, characteristics: [{party, characteristic, csi,
    status, rows}]}, or None when the model has not served yet.

    Accepts ``psi`` at the top or under ``score``, and CSI entries under
    ``characteristics`` or ``csi``; a missing status is read from the value.
    """
    raw = card.get("stability")
    if not raw:
        return None
    score = dict(raw.get("score") or {})
    if "psi" not in score and raw.get("psi") is not None:
        score = {"psi": raw.get("psi"), "rows": raw.get("rows"), "status": raw.get("status")}
    if score.get("psi") is not None:
        score["status"] = score.get("status") or stability_status(score["psi"])
    entries = []
    for entry in raw.get("characteristics") or raw.get("csi") or []:
        value = entry.get("csi", entry.get("value"))
        entries.append({"party": entry.get("party", raw.get("party")),
                        "characteristic": entry.get("characteristic", entry.get("name")),
                        "csi": value, "status": entry.get("status") or stability_status(value),
                        "rows": entry.get("rows")})
    return {"score": score or None, "characteristics": entries,
            **{k: v for k, v in raw.items() if k not in ("score", "characteristics", "csi", "psi")}}


def band_range(band: dict[str, Any]) -> str:
    """A score band as people read it: "below 376", "376–447", "509 and above"."""
    lower, upper = band.get("lower"), band.get("upper")
    if lower is None and upper is None:
        return "every score"
    if lower is None:
        return f"below {fmt.number(float(upper))}"
    if upper is None:
        return f"{fmt.number(float(lower))} and above"
    return f"{fmt.number(float(lower))} to below {fmt.number(float(upper))}"


def odds_words(odds: float | None) -> str:
    """0.0526 → "1:19 (good:bad 19:1)"."""
    if not odds:
        return "—"
    return f"{fmt.number(float(odds))} (1:{fmt.number(round(1 / float(odds), 2))})"


# -- the HTML section --------------------------------------------------------------------------------------

def scorecard_section(summary: dict[str, Any], image: dict[str, str]) -> str:
    """The report's scorecard section ("" when the job is not a scorecard)."""
    card = summary.get("scorecard")
    if not card:
        return ""
    esc = html.escape
    b = label_party(card)
    score = card.get("score") or {}
    scaling = card.get("scaling") or {}
    split = score.get("split", "validation")
    where = "held-out validation rows" if split == "validation" else "training rows"
    rows = sum(int(band.get("rows") or 0) for band in score.get("bands") or []) or None
    lead = (f"The integer score (base points plus every party's points) ranks the {fmt.integer(rows)} {where} with "
            f"AUC {fmt.metric('auc', score.get('auc'))}, KS {fmt.metric('ks', score.get('ks'))} and Gini "
            f"{fmt.metric('auc', score.get('gini'))}; before rounding to points the model's AUC was "
            f"{fmt.metric('auc', score.get('auc_before_rounding'))}.")
    scale = (f"Scaling: {fmt.number(scaling.get('points0'))} points at odds {odds_words(scaling.get('odds0'))}, "
             f"{fmt.number(scaling.get('pdo'))} points to double the odds (factor "
             f"{fmt.number(scaling.get('factor'))}, offset {fmt.number(scaling.get('offset'))}). A higher score is a "
             f"lower risk. Party {b} holds the base points, {fmt.number(card.get('base_points'))}.")
    parts = [f'<h2 id="scorecard">Scorecard</h2><p class="lead">{esc(lead)}</p><p class="note">{esc(scale)}</p>',
             _quality_table(card), "<h3>Score bands</h3>", _bands_table(card),
             figure(FIGURE, image, _figure_caption(card)), _distribution(card),
             "<h3>Information value of every characteristic</h3>", _iv_table(card),
             f"<h3>Party {esc(b)}'s bins</h3>", _bins_tables(card),
             f"<h3>Party {esc(b)}'s points table</h3>", _points_table(card),
             "<h3>Partners' points</h3>", _partners(card), _reasons(card), _stability_section(card)]
    return "".join(p for p in parts if p)


def _quality_table(card: dict[str, Any]) -> str:
    """AUC, KS, Gini of the integer score, against the pooled-data scorecard and party B alone, on the same rows."""
    score = card.get("score") or {}
    split = score.get("split", "validation")
    baselines = card.get("baselines") or {}
    pooled = ((baselines.get("pooled") or {}).get("metrics") or {}).get(split) or {}
    alone = (baselines.get("bank_only") or {}).get(split) or {}
    body = []
    for name, label in (("auc", "AUC"), ("ks", "KS"), ("gini", "Gini")):
        mine = score.get(name)
        p = pooled.get(name) if name != "gini" else (2 * pooled["auc"] - 1 if pooled.get("auc") is not None else None)
        a = alone.get(name) if name != "gini" else (2 * alone["auc"] - 1 if alone.get("auc") is not None else None)
        body.append(f'<tr data-metric="scorecard-{name}"><td>{label}</td>'
                    f"<td>{value_span(mine, fmt.metric('auc', mine))}</td>"
                    f"<td>{value_span(p, fmt.metric('auc', p))}</td><td>{value_span(a, fmt.metric('auc', a))}</td>"
                    "</tr>")
    head = ("<th>metric</th><th>scorecard (integer points)</th><th>pooled-data scorecard</th>"
            "<th>party B alone</th>")
    note = ("The pooled-data scorecard codes every kept characteristic by WOE with the same bins and fits the same "
            "logistic regression on the data put together; party B alone uses only B's features. All on the "
            f"{split} rows.")
    return (f'<table id="scorecard-quality" class="metrics"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><p class="note">{html.escape(note)}</p>')


def _bands_table(card: dict[str, Any]) -> str:
    score = card.get("score") or {}
    bands = score.get("bands") or []
    if not bands:
        return "<p>No score bands in this job's record.</p>"
    total = sum(int(b.get("rows") or 0) for b in bands) or 1
    reference = score.get("reference_counts") or []
    ref_total = sum(reference) or 1
    rows = []
    for i, band in enumerate(bands):
        row = [str(int(band.get("band", i)) + 1), band_range(band), fmt.integer(band.get("rows")),
               fmt.percent((band.get("rows") or 0) / total), fmt.integer(band.get("events")),
               value_span(band.get("bad_rate"), fmt.percent(band.get("bad_rate")))]
        if reference:
            row.append(fmt.percent(reference[i] / ref_total) if i < len(reference) else "—")
        rows.append(row)
    header = ["band (1 = lowest scores)", "score", "rows", "share of rows", "events (label 1)", "bad rate"]
    if reference:
        header.append("share at training (all aligned rows)")
    return ('<div id="scorecard-bands">' + html_table(rows, header) + "</div>"
            f'<p class="note">Bands are equal-frequency on the scores of all aligned rows; counts and bad rates on '
            f"the {html.escape(str(score.get('split', 'validation')))} rows. A working scorecard's bad rate falls as "
            "the score rises.</p>")


def _figure_caption(card: dict[str, Any]) -> str:
    score = card.get("score") or {}
    return (f"Left: share of the {score.get('split', 'validation')} rows in each score band. Right: bad rate (share "
            "of label 1) per band, lowest scores first, against the average bad rate.")


def _distribution(card: dict[str, Any]) -> str:
    d = (card.get("score") or {}).get("distribution") or {}
    if not d:
        return ""
    text = (f"Scores of all aligned rows: lowest {fmt.number(d.get('min'))}, 10th percentile "
            f"{fmt.number(d.get('p10'))}, median {fmt.number(d.get('median'))}, 90th percentile "
            f"{fmt.number(d.get('p90'))}, highest {fmt.number(d.get('max'))}.")
    return f'<p id="scorecard-distribution">{html.escape(text)}</p>'


def _iv_table(card: dict[str, Any]) -> str:
    b = label_party(card)
    rows = []
    for c in characteristics(card):
        holder = f"{c.get('party')} (label party)" if c.get("party") == b else str(c.get("party"))
        rows.append([holder, str(c.get("name")), value_span(c.get("iv"), f"{float(c.get('iv') or 0):.4f}"),
                     c.get("band") or "—", c.get("direction") or "—", "yes" if c.get("selected") else "no"])
    selection = ((card.get("config") or {}).get("selection") or {})
    rules = selection_words(selection)
    bands = "; ".join(f"{name} {bound}" for name, bound in IV_BANDS)
    return ('<div id="scorecard-iv">' + html_table(rows, ["party", "characteristic", "IV", "band", "monotone direction",
                                                          "selected"]) + "</div>"
            f'<p class="note">IV bands: {html.escape(bands)}. Selection: {html.escape(rules)}. Party B computes every '
            "IV, a feature party's from the event counts of its bins (never their edges).</p>")


def selection_words(selection: dict[str, Any]) -> str:
    """The selection rules in words: "IV ≥ 0.02 per party; |correlation| ≤ 0.9 within each party's own"."""
    rules = []
    if selection.get("min_iv") is not None:
        rules.append(f"IV ≥ {fmt.number(selection['min_iv'])} (each party keeps at least its best characteristic)")
    if selection.get("top_k") is not None:
        rules.append(f"the {selection['top_k']} highest IVs of each party")
    if selection.get("max_correlation") is not None:
        rules.append(f"|correlation| ≤ {fmt.number(selection['max_correlation'])} among each party's own "
                     "characteristics (each party checks its own)")
    if selection.get("max_vif") is not None:
        rules.append(f"VIF ≤ {fmt.number(selection['max_vif'])} among each party's own characteristics")
    return "; ".join(rules) or "none: every characteristic kept"


def _bins_tables(card: dict[str, Any]) -> str:
    out = []
    for c in own_characteristics(card):
        rows = []
        for i, bin_ in enumerate(c.get("bins") or []):
            label = bin_.get("label") or ("missing" if bin_.get("missing") else f"bin {bin_.get('bin', i)}")
            rows.append([label, fmt.integer(bin_.get("total")), fmt.percent(bin_.get("share")),
                         fmt.integer(bin_.get("events")), fmt.integer(bin_.get("nonevents")),
                         fmt.percent(bin_.get("event_rate")) if bin_.get("event_rate") is not None else "—",
                         value_span(bin_.get("woe"), f"{float(bin_.get('woe') or 0):+.4f}".replace("-", "−")),
                         value_span(bin_.get("iv"), f"{float(bin_.get('iv') or 0):.4f}")])
        state = "selected" if c.get("selected") else "not selected"
        summary = (f"{c.get('name')}: IV {float(c.get('iv') or 0):.4f} ({c.get('band')}), "
                   f"{c.get('direction') or 'no'} direction, {state}")
        table = html_table(rows, ["bin", "rows", "share", "events", "non-events", "event rate", "WOE", "IV"])
        opened = " open" if c.get("selected") else ""
        out.append(f'<details{opened} data-characteristic="{html.escape(str(c.get("name")))}">'
                   f"<summary>{html.escape(summary)}</summary>{table}</details>")
    if not out:
        return "<p>No characteristics of party B in this job's record.</p>"
    return ('<div id="scorecard-bins">' + "".join(out) + "</div>"
            '<p class="note">WOE = ln(share of non-events ÷ share of events) in the bin: positive where the bin is '
            "safer than average. IV sums (share of non-events − share of events) × WOE over the bins.</p>")


def _points_table(card: dict[str, Any]) -> str:
    rows = [[str(r.get("characteristic")), str(r.get("label")), value_span(r.get("points"), str(r.get("points"))),
             str(r.get("code") or "")] for r in own_points(card)]
    if not rows:
        return "<p>Party B's points table is not in this job's record.</p>"
    low = sum(min(r["points"] for r in group) for group in _by_characteristic(own_points(card)).values())
    high = sum(max(r["points"] for r in group) for group in _by_characteristic(own_points(card)).values())
    note = (f"Base points {fmt.number(card.get('base_points'))}, held by party {label_party(card)}. Its "
            f"characteristics add from {low} to {high} points.")
    return ('<div id="scorecard-points">' + html_table(rows, ["characteristic", "bin", "points", "reason code"])
            + f'</div><p class="note">{html.escape(note)}</p>')


def _by_characteristic(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("characteristic")), []).append(r)
    return groups


def _partners(card: dict[str, Any]) -> str:
    ranges = partner_ranges(card)
    if not ranges:
        return "<p>No partner points.</p>"
    rows = [[f"party {p}", low, high] for p, (low, high) in ranges.items()]
    return ('<div id="scorecard-partners">' + html_table(rows, ["holder", "lowest total", "highest total"]) + "</div>"
            '<p class="note">Each partner keeps the points table of its own characteristics: at scoring it sends '
            "only its points total per applicant (and, if it allows, reason codes with their shortfalls). This page "
            "therefore shows only the range of each partner's totals.</p>")


def _reasons(card: dict[str, Any]) -> str:
    examples = card.get("reasons") or []
    if not examples:
        return ""
    rows = [[str(e.get("id")), e.get("score"), ", ".join(e.get("reasons") or []) or "none"] for e in examples]
    return ("<h3>Principal reasons (examples)</h3>" + html_table(rows, ["applicant", "score", "reasons (up to four)"])
            + '<p class="note">The characteristics with the largest shortfall from their best points, across all '
            "parties; a partner's reasons are codes from its published code list.</p>")


def _stability_section(card: dict[str, Any]) -> str:
    data = stability(card)
    bands = f"PSI and CSI read: below {WATCH} stable, {WATCH} to {ALARM} watch, {ALARM} and above alarm."
    if data is None:
        return (f'<h3>Stability</h3><p id="scorecard-stability">No stability yet: the score PSI and each '
                f"characteristic's CSI are measured on the applicants the model serves. {html.escape(bands)}</p>")
    parts = ['<h3>Stability</h3><div id="scorecard-stability">']
    score = data.get("score")
    if score and score.get("psi") is not None:
        text = (f"Score PSI {float(score['psi']):.4f} ({score['status']}) over "
                f"{fmt.integer(score.get('rows'))} served scores, against the training distribution by score band.")
        parts.append(f'<p class="lead" data-status="{html.escape(str(score["status"]))}">{html.escape(text)}</p>')
    if data["characteristics"]:
        rows = [[str(e["party"]), str(e["characteristic"]), value_span(e["csi"], f"{float(e['csi']):.4f}"),
                 e["status"], fmt.integer(e.get("rows"))] for e in data["characteristics"] if e["csi"] is not None]
        parts.append(html_table(rows, ["party", "characteristic", "CSI", "status", "rows"]))
    parts.append(f'</div><p class="note">{html.escape(bands)} Each party computes its own characteristics\' CSI '
                 "on the IDs it scored; no feature value crosses.</p>")
    return "".join(parts)


# -- the figure --------------------------------------------------------------------------------------------

def bands_chart(card: dict[str, Any]) -> bytes:
    """Rows per score band (left) and each band's bad rate (right), in the report's plot style (needs matplotlib)."""
    import numpy as np

    from vfl.report import plots

    bands = (card.get("score") or {}).get("bands") or []
    x = np.arange(1, len(bands) + 1)
    rows = np.array([b.get("rows") or 0 for b in bands], dtype=float)
    events = np.array([b.get("events") or 0 for b in bands], dtype=float)
    rates = [b.get("bad_rate") if b.get("bad_rate") is not None else 0.0 for b in bands]
    names = [band_range(b).replace(" to below ", "–").replace(" and above", "+").replace("below ", "<")
             for b in bands]
    with plots.plt.rc_context(plots.STYLE):
        fig, (left, right) = plots._figure()
        left.bar(x, rows / max(1.0, rows.sum()), color=plots.FEDERATED)
        left.set_xticks(x, names, rotation=45, ha="right")
        left.set_xlabel("score band")
        left.set_ylabel("share of rows")
        left.yaxis.set_major_formatter(plots.PercentFormatter(1.0, decimals=0))
        left.set_title("Score distribution")
        left.grid(alpha=0.3, axis="y")
        right.bar(x, rates, color=plots.ALONE)
        average = events.sum() / max(1.0, rows.sum())
        right.axhline(average, color=plots.CHANCE, linestyle=":", label=f"average {100 * average:.1f}%")
        right.set_xticks(x, names, rotation=45, ha="right")
        right.set_xlabel("score band")
        right.set_ylabel("bad rate (share of label 1)")
        right.yaxis.set_major_formatter(plots.PercentFormatter(1.0, decimals=0))
        right.set_title("Bad rate per score band")
        right.legend(loc="upper right")
        right.grid(alpha=0.3, axis="y")
        return plots._png(fig)
