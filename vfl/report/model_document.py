"""A scorecard's model document, in the shape model-risk teams file (SR 11-7), as Markdown or HTML.

Made from the same summary as the job report (:mod:`vfl.report.summary`: a
one-process simulation's result, or party B's record of a service job) when it
has a ``scorecard`` section. It holds what party B may put in writing: its own
bins and points, every characteristic's IV, each partner's range of points
totals (never a partner's table), the performance against the pooled-data and
bank-only baselines, the stability, the limitations and the bounds of what
each party learns.

Sections: 1 purpose; 2 data per party (sources, rows, alignment); 3 method;
4 binning and selection; 5 performance; 6 stability; 7 limitations; 8 threat
model and disclosure bounds; 9 review and approval.

``vfl simulate --scorecard --model-document FILE`` and ``vfl jobs model-document
JOB --out FILE`` write it; a file name ending in .html gets the HTML form.
"""

from __future__ import annotations

import html
from typing import Any

import vfl
from vfl.report import fmt
from vfl.report.html import STYLE
from vfl.report.markup import html_table
from vfl.report.scorecard_sections import (ALARM, IV_BANDS, WATCH, band_range, characteristics, label_party,
                                           odds_words, own_characteristics, own_points, partner_ranges,
                                           selection_words, stability)
from vfl.report.summary import baseline_metrics, pairwise_size

#: one block of the document: ("h", level, text) | ("p", text) | ("ul", [items]) | ("table", header, rows)
Block = tuple

METHODS = {"iv_optimal": "IV-optimal (exact dynamic programme over the fine bins)", "chimerge": "ChiMerge",
           "equal_frequency": "equal-frequency"}


def model_document(summary: dict[str, Any], *, form: str = "markdown") -> str:
    """The document as Markdown (``form="markdown"``) or a self-contained HTML page (``form="html"``)."""
    if not summary.get("scorecard"):
        raise ValueError("a model document is written for a scorecard job; this job has no scorecard section")
    blocks = document_blocks(summary)
    if form == "html":
        return to_html(blocks, f"Model document: {summary.get('title')}")
    if form != "markdown":
        raise ValueError(f"form must be 'markdown' or 'html', got {form!r}")
    return to_markdown(blocks)


def document_blocks(summary: dict[str, Any]) -> list[Block]:
    """The document's content, independent of its form."""
    card = summary["scorecard"]
    return [("h", 1, f"Model document: credit scorecard {summary.get('title')}"),
            *_metadata(summary), *_purpose(summary, card), *_data(summary, card), *_method(summary, card),
            *_binning(card), *_performance(summary, card), *_stability(card), *_limitations(summary, card),
            *_threat_model(card), *_approval()]


# -- sections ----------------------------------------------------------------------------------------------

def _metadata(summary: dict[str, Any]) -> list[Block]:
    config = summary.get("config") or {}
    rows = [["model", "credit scorecard: logistic regression on binned characteristics, scaled to integer points"],
            ["job", str(summary.get("title"))], ["state", str(summary.get("state") or "—")],
            ["finished", fmt.when(summary.get("finished_at"))],
            ["software", f"vfl {summary.get('version') or vfl.__version__}"],
            ["key size", f"{fmt.integer(config.get('key_bits'))}-bit Paillier" if config.get("key_bits") else "—"],
            ["run", "one-process simulation (every party's roles in one process, real encryption)"
             if summary.get("simulated") else "federated service job, as recorded by party B"]]
    return [("table", ["", ""], rows)]


def _purpose(summary: dict[str, Any], card: dict[str, Any]) -> list[Block]:
    b = label_party(card)
    partners = ", ".join(partner_ranges(card)) or "its partners"
    return [("h", 2, "1. Purpose"),
            ("p", f"The scorecard estimates the risk that an applicant is bad (label 1 in party {b}'s data: the "
                  "outcome the bank defines, for example default within its performance window) and expresses it as "
                  "an integer score, higher for lower risk, with up to four principal reasons for an adverse "
                  "decision. It combines the bank's own characteristics with those of "
                  f"{_partner_words(partners)}, without pooling data: each party keeps its data, its bins and its "
                  "points table."),
            ("p", "Intended use: ranking and cut-off decisions on applicants that the bank and its partners can "
                  "match (the aligned population), with the reasons the score gives. Not intended for applicants "
                  "outside that population, nor as a calibrated probability without the monitoring of section 6.")]


def _partner_words(partners: str) -> str:
    return f"feature party {partners}" if "," not in partners else f"feature parties {partners}"


def _data(summary: dict[str, Any], card: dict[str, Any]) -> list[Block]:
    alignment = summary.get("alignment") or {}
    counts = summary.get("rows") or {}
    parties = summary.get("parties") or []
    b = label_party(card)
    offered: dict[str, int] = {}
    selected: dict[str, int] = {}
    for c in card.get("characteristics") or []:
        offered[str(c.get("party"))] = offered.get(str(c.get("party")), 0) + 1
        selected[str(c.get("party"))] = selected.get(str(c.get("party")), 0) + bool(c.get("selected"))
    features = summary.get("feature_parties") or []
    partner_names = list(partner_ranges(card))
    rows = []
    for i, role in enumerate(parties):
        if role["role"] == "arbiter":
            continue
        if i == 0:
            name, held = b, alignment.get("party_b_ids")
        else:
            name = str(role.get("id") or (partner_names[i - 1] if i - 1 < len(partner_names) else role["role"]))
            pair = (features[i - 1].get("alignment") or {}) if i - 1 < len(features) else alignment
            held = pair.get("party_a_ids")
        rows.append([f"{name} ({'label party' if i == 0 else 'feature party'})", role.get("dataset") or "—",
                     fmt.integer(held), fmt.integer(offered.get(name, offered.get(str(role.get("id")), 0))),
                     fmt.integer(selected.get(name, selected.get(str(role.get("id")), 0)))])
    split = [f"{fmt.integer(counts[s])} {s}" for s in ("training", "validation") if counts.get(s)]
    text = (f"Alignment by {alignment.get('method') or 'RSA blind-signature PSI'}: "
            f"{fmt.integer(alignment.get('intersection'))} "
            "applicants are held by every party (the aligned rows, the only rows binned, trained and scored)")
    text += f"; split {', '.join(split)}." if split else "."
    if features:
        text += " Pairwise: " + "; ".join(
            f"{f['party']} shares {fmt.integer(pairwise_size(f))} IDs with {b}" for f in features) + "."
    return [("h", 2, "2. Data"),
            ("table", ["party", "source", "rows (IDs held)", "characteristics offered", "characteristics selected"],
             rows),
            ("p", text),
            ("p", "Each party's IDs are matched without revealing the others: each learns the intersection and the "
                  "other side's set size, nothing else. Missing values are kept and binned on their own.")]


def _method(summary: dict[str, Any], card: dict[str, Any]) -> list[Block]:
    config = card.get("config") or {}
    binning = config.get("binning") or {}
    scaling = card.get("scaling") or {}
    training = summary.get("config") or {}
    b = label_party(card)
    monotone = binning.get("monotone", "auto")
    by = binning.get("monotone_by") or {}
    return [("h", 2, "3. Method"),
            ("h", 3, "3.1 Federated binning with encrypted labels"),
            ("p", "Every party bins its own characteristics into fine bins "
                  f"({binning.get('fine_bins', '—')} at most, equal-frequency, missing values in a bin of their "
                  "own). For a feature party's characteristics, "
                  f"party {b} encrypts its labels under a Paillier key of its own (with a proof that the key is a "
                  "Paillier modulus); the feature party sums the ciphertexts per fine bin, masks each sum so that "
                  f"only its residue modulo (rows + 1) is readable, re-randomises it and returns it with the bin's "
                  f"row count, never the bin edges. Party {b} decrypts the event counts and merges the fine bins "
                  f"into at most {binning.get('max_bins', '—')} coarse bins by "
                  f"{METHODS.get(binning.get('method'), binning.get('method') or '—')}, each holding at least "
                  f"{fmt.percent(binning.get('min_share'))} of the rows and {binning.get('min_events', '—')} events, "
                  f"monotone in WOE ({monotone}" + (f"; per characteristic {by}" if by else "") + "). It tells each "
                  "feature party only how its fine bins merge and the monotone direction."),
            ("h", 3, "3.2 Coding and constraints"),
            ("p", f"Party {b}'s characteristics enter as their weight of evidence (WOE), which only {b} can compute; "
                  "each coefficient is constrained to keep the sign that makes points rise with WOE. A feature "
                  "party's characteristics enter as bin indicators, with the coefficients constrained to be monotone "
                  "across the ordered bins in the direction the binning found: the feature party learns no label "
                  "statistic beyond what training already gives. Each party projects its own weights onto its "
                  "constraints after every update, locally."),
            ("h", 3, "3.3 Training"),
            ("p", "Logistic regression (second-order Taylor approximation of the log-loss) trained with vfl's "
                  "Paillier four-step protocol: the feature parties' partial scores are encrypted, the gradients "
                  "are masked before the arbiter decrypts them, and no party sees another's features, weights or "
                  f"(except {b}) the labels. Optimiser {training.get('optimizer', 'newton')}, at most "
                  f"{training.get('epochs', '—')} epochs ({fmt.integer(summary.get('epochs'))} run, "
                  f"{summary.get('stop_reason') or '—'}), validation fraction "
                  f"{fmt.number(training.get('validation_fraction'))}, L2 {fmt.number(training.get('l2'))}, key size "
                  f"{fmt.integer(training.get('key_bits'))} bits."),
            ("h", 3, "3.4 Scaling to points"),
            ("p", f"Score = offset + factor · ln(odds good:bad), with {fmt.number(scaling.get('points0'))} points at "
                  f"odds (bad:good) {odds_words(scaling.get('odds0'))} and {fmt.number(scaling.get('pdo'))} points to "
                  f"double the odds: factor = pdo / ln 2 = {fmt.number(scaling.get('factor'))}, offset = "
                  f"{fmt.number(scaling.get('offset'))}. Each bin's points are −factor times its contribution to the "
                  f"log-odds, rounded to an integer. The base points, {fmt.number(card.get('base_points'))}, "
                  f"belong to party {b}. Each party holds the points table of its own characteristics; at scoring a "
                  "feature party sends only its points total per applicant."),
            ("h", 3, "3.5 Reasons"),
            ("p", f"Up to {config.get('reasons', 4)} principal reasons: the characteristics with the largest "
                  "shortfall from their best points, across all parties. A feature party takes part only if its "
                  "configuration allows it, sending its own top candidates as (reason code, shortfall) from its "
                  f"published code list; party {b} merges them.")]


def _binning(card: dict[str, Any]) -> list[Block]:
    b = label_party(card)
    selection = (card.get("config") or {}).get("selection") or {}
    iv_rows = [[str(c.get("party")), str(c.get("name")), f"{float(c.get('iv') or 0):.4f}", c.get("band") or "—",
                c.get("direction") or "—", "yes" if c.get("selected") else "no"] for c in characteristics(card)]
    out: list[Block] = [
        ("h", 2, "4. Binning and selection"),
        ("p", "Selection rules applied: " + selection_words(selection) + ". Party " + b + " applies the IV rule to "
              "every party's characteristics (it computes every IV); each party applies the correlation and VIF "
              "rules to its own characteristics, locally."),
        ("p", "IV bands: " + "; ".join(f"{n} {r}" for n, r in IV_BANDS) + "."),
        ("h", 3, "4.1 Information value of every characteristic"),
        ("table", ["party", "characteristic", "IV", "band", "monotone direction", "selected"], iv_rows),
    ]
    suspicious = [f"{c.get('party')}:{c.get('name')}" for c in characteristics(card)
                  if c.get("band") == "suspicious" and c.get("selected")]
    if suspicious:
        out.append(("p", f"Selected characteristics with a suspicious IV (≥ 0.5), to be reviewed for a leak of the "
                         f"outcome or a data error: {', '.join(suspicious)}."))
    out.append(("h", 3, f"4.2 Party {b}'s bins"))
    for c in own_characteristics(card):
        if not c.get("selected"):
            continue
        rows = [[bin_.get("label") or ("missing" if bin_.get("missing") else f"bin {bin_.get('bin', i)}"),
                 fmt.integer(bin_.get("total")), fmt.integer(bin_.get("events")), fmt.integer(bin_.get("nonevents")),
                 fmt.percent(bin_.get("event_rate")) if bin_.get("event_rate") is not None else "—",
                 f"{float(bin_.get('woe') or 0):+.4f}", f"{float(bin_.get('iv') or 0):.4f}"]
                for i, bin_ in enumerate(c.get("bins") or [])]
        out.append(("p", f"{c.get('name')}: IV {float(c.get('iv') or 0):.4f} ({c.get('band')}), "
                         f"{c.get('direction') or 'no'} direction."))
        out.append(("table", ["bin", "rows", "events", "non-events", "event rate", "WOE", "IV"], rows))
    out.append(("h", 3, f"4.3 Points: party {b}'s table and each partner's range"))
    out.append(("p", f"Base points: {fmt.number(card.get('base_points'))} (party {b})."))
    points = [[str(r.get("characteristic")), str(r.get("label")), str(r.get("points")), str(r.get("code") or "")]
              for r in own_points(card)]
    out.append(("table", ["characteristic", "bin", "points", "reason code"], points))
    ranges = [[p, str(low), str(high)] for p, (low, high) in partner_ranges(card).items()]
    if ranges:
        out.append(("p", "Each partner keeps its own points table; this document gives only the range of its totals."))
        out.append(("table", ["partner", "lowest total", "highest total"], ranges))
    return out


def _performance(summary: dict[str, Any], card: dict[str, Any]) -> list[Block]:
    score = card.get("score") or {}
    baselines = card.get("baselines") or {}
    pooled = (baselines.get("pooled") or {}).get("metrics") or {}
    metrics = summary.get("metrics") or {}
    rows = []
    for split in sorted(metrics, key=lambda s: {"train": 0, "validation": 1}.get(s, 2)):
        values = metrics.get(split) or {}
        if not isinstance(values, dict):
            continue
        entries = [("federated scorecard (before rounding)", values)]
        if split == score.get("split"):
            entries.append(("federated scorecard, integer points", score))
        entries += [("pooled-data scorecard", pooled.get(split)),
                    ("party B alone",
                     (baselines.get("bank_only") or {}).get(split) or baseline_metrics(summary, split))]
        for name, m in entries:
            if not m:
                rows.append([split, name, "not available", "—", "—", "—"])
                continue
            gini = m.get("gini", 2 * m["auc"] - 1 if m.get("auc") is not None else None)
            rows.append([split, name, fmt.integer(m.get("rows") or values.get("rows")), fmt.metric("auc", m.get("auc")),
                         fmt.metric("ks", m.get("ks")), fmt.metric("auc", gini)])
    out: list[Block] = [("h", 2, "5. Performance"),
                        ("table", ["split", "model", "rows", "AUC", "KS", "Gini"], rows)]
    notes = ["The pooled-data scorecard codes every kept characteristic by WOE with the same bins and fits the same "
             "logistic regression on the data put together: what the federation should match. Party B alone uses "
             "only the bank's own features: what the federation adds."]
    if not pooled:
        notes.append("A service job cannot pool the parties' data, so it has no pooled-data baseline; "
                     "`vfl simulate --scorecard` on the same data computes one.")
    if score.get("auc") is not None and score.get("auc_before_rounding") is not None:
        notes.append(f"Rounding to integer points moves AUC by "
                     f"{abs(score['auc'] - score['auc_before_rounding']):.4f} (goal: at most 0.001).")
    out.append(("p", " ".join(notes)))
    bands = score.get("bands") or []
    if bands:
        out.append(("h", 3, f"5.1 Score bands ({score.get('split', 'validation')} rows)"))
        out.append(("table", ["band", "score", "rows", "events", "bad rate"],
                    [[str(int(bd.get("band", i)) + 1), band_range(bd), fmt.integer(bd.get("rows")),
                      fmt.integer(bd.get("events")), fmt.percent(bd.get("bad_rate"))] for i, bd in enumerate(bands)]))
    d = score.get("distribution") or {}
    if d:
        out.append(("p", f"Scores of all aligned rows: lowest {fmt.number(d.get('min'))}, 10th percentile "
                         f"{fmt.number(d.get('p10'))}, median {fmt.number(d.get('median'))}, 90th percentile "
                         f"{fmt.number(d.get('p90'))}, highest {fmt.number(d.get('max'))}."))
    return out


def _stability(card: dict[str, Any]) -> list[Block]:
    score = card.get("score") or {}
    out: list[Block] = [("h", 2, "6. Stability"),
                        ("p", f"Alarm bands, for the score's population stability index (PSI) and each "
                              f"characteristic's stability index (CSI): below {WATCH} stable, {WATCH} to {ALARM} "
                              f"watch (investigate), {ALARM} and above alarm (the population has shifted: review or "
                              "redevelop). Party B computes the score PSI on the scores it serves, by the training "
                              "score bands; each party computes its own characteristics' CSI on the IDs it scored, "
                              "and no feature value crosses.")]
    reference = score.get("reference_counts") or []
    edges = score.get("band_edges") or []
    if reference:
        total = sum(reference) or 1
        bounds = [None, *edges, None]
        rows = [[str(i + 1), band_range({"lower": bounds[i], "upper": bounds[i + 1]}) if len(bounds) > i + 1 else "—",
                 fmt.integer(n), fmt.percent(n / total)] for i, n in enumerate(reference)]
        out.append(("h", 3, "6.1 Reference distribution (all aligned rows at training)"))
        out.append(("table", ["band", "score", "rows", "share"], rows))
    data = stability(card)
    if data is None:
        out.append(("p", "No stability measured yet: the model has not served applicants in this record."))
        return out
    out.append(("h", 3, "6.2 Measured stability"))
    s = data.get("score")
    if s and s.get("psi") is not None:
        out.append(("p", f"Score PSI {float(s['psi']):.4f}: {s['status']} ({fmt.integer(s.get('rows'))} served "
                         "scores)."))
    if data["characteristics"]:
        out.append(("table", ["party", "characteristic", "CSI", "status", "rows"],
                    [[str(e["party"]), str(e["characteristic"]),
                      f"{float(e['csi']):.4f}" if e["csi"] is not None else "—", str(e["status"]),
                      fmt.integer(e.get("rows"))] for e in data["characteristics"]]))
    return out


def _limitations(summary: dict[str, Any], card: dict[str, Any]) -> list[Block]:
    items = [
        "Population: the scorecard is built on the applicants every party holds (the aligned rows) and on the "
        "labels as defined in the bank's data; no reject inference was applied. Applicants outside the aligned "
        "population are not represented.",
        "Odds anchor: the points' odds are those of the development sample; if its bad rate differs from the "
        "population's, the base points must be adjusted before cut-offs are set.",
        "Training uses a second-order Taylor approximation of the log-loss (as the encrypted protocol requires); "
        "the pooled-data baseline measures how much that and the constraints cost.",
        "Binning is data-driven on the development sample: a bin with few rows or events (minimum share and events "
        "as configured) carries a noisy WOE. Monotone constraints may flatten a characteristic to no effect.",
        "Party B cannot inspect a partner's bins or points: it relies on each partner's points totals and on the "
        "partner applying its own constraints; a partner's data errors show only in the IV and in the performance.",
    ]
    if stability(card) is None:
        items.append("Stability can only be measured once the model serves; until then section 6 gives the "
                     "reference only.")
    flat = [name for name, group in _groups(own_points(card)).items() if len({r["points"] for r in group}) == 1]
    if flat:
        items.append(f"Party {label_party(card)}'s characteristics with the same points in every bin (no effect on "
                     f"the score after the constraints): {', '.join(flat)}.")
    rows = (summary.get("rows") or {}).get("validation")
    if rows is not None and rows < 1000:
        items.append(f"Only {fmt.integer(rows)} validation rows: differences of a few hundredths of AUC are noise.")
    if not (card.get("baselines") or {}).get("pooled"):
        items.append("No pooled-data baseline in this record (a service job cannot pool the data).")
    return [("h", 2, "7. Limitations"), ("ul", items)]


def _groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(str(r.get("characteristic")), []).append(r)
    return out


def _threat_model(card: dict[str, Any]) -> list[Block]:
    b = label_party(card)
    items = [
        f"Party {b} (the label party) learns, for each characteristic of each feature party, the number of fine "
        "bins, the rows of each bin and its event counts: the standard price of federated binning, from which it "
        "computes WOE and IV. It does not learn a partner's bin edges, nor which row falls in which bin.",
        "A feature party learns, per characteristic, how its own fine bins are merged (the partition of its fine "
        "bins) and the monotone direction; no count, event rate, WOE or IV of its bins.",
        f"A deviating {b} that encrypts any vector instead of its labels learns at most Σ_b log2(n_b + 1) bits per "
        "characteristic per run about the feature party's rows beyond the bin sizes (n_b: rows of fine bin b), what "
        "an honest 0/1 label vector carries; weighting rows to read every row's bin in one run fails. An indicator "
        "of one customer still reveals that customer's fine bin (one of at most 1/min_share bins).",
        "Binning runs are budgeted per partner and dataset by each feature party (and its minimum bin share is a "
        "floor the label party cannot lower), which bounds the indicator attack to the budgeted number of runs.",
        "Training keeps vfl's guarantees: masked gradients, the arbiter's decryption schedule, no party sees "
        "another's features or weights.",
        "At scoring, a feature party releases only its points total per applicant and, if its configuration "
        "allows, reason codes from its published list with their shortfalls; each release counts against that "
        "party's release budget. Its points table never leaves it.",
    ]
    return [("h", 2, "8. Threat model and disclosure bounds"), ("ul", items)]


def _approval() -> list[Block]:
    return [("h", 2, "9. Review and approval"),
            ("table", ["role", "name", "date", "decision"],
             [[role, "", "", ""] for role in ("model owner", "independent validation", "model risk committee")])]


# -- forms -------------------------------------------------------------------------------------------------

def to_markdown(blocks: list[Block]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            body.append(html_table([[str(c) for c in row] for row in block[2]], list(block[1])))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
