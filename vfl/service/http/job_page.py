"""One job's dashboard page (``/ui/jobs/{id}``), drawn here from the job's record and its stability.

The page's facts and, for a scorecard job, its scorecard and stability are drawn here; the live panels
(stage timeline, loss, convergence and ROC curves, metrics against party B alone, timings, the model
version, the ledger entry, the event log and, at party B, the report inline) are empty sections
that ``/static/ui/job.js`` fills from the job's status (``GET /v1/jobs/{id}``) and ``GET /v1/models``,
polling while the job runs.

Every value on the page is HTML-escaped: column names, party ids, codes and
errors come from configs and datasets, not from this code. For a scorecard job
the page shows, at party B, the record's ``scorecard`` section (each
characteristic's IV with its band, B's own points table, the partners' total
range, the integer score's AUC, KS and Gini and its bands) and, at B and at a
feature party, the stability of what the party has served: B's score PSI and
each of the party's own characteristics' CSI, with its status in words and in
colour, read with the bands 0.1 (watch) and 0.25 (alarm).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from vfl.errors import VFLError
from vfl.ml.scorecard.binning import Bins
from vfl.report.scorecard_sections import band_range

#: The bands every stability index is read with (PSI and CSI alike).
WATCH, ALARM = 0.1, 0.25
METRIC_KEYS = ("auc", "macro_auc", "ks", "gini", "accuracy", "f1", "rmse", "mae", "r2")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _number(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(rows: Iterable[Sequence[str]], headers: Sequence[str], *, id: str = "", cls: str = "") -> str:
    """A table from cells that are already HTML (escape before)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    attributes = (f' id="{_e(id)}"' if id else "") + (f' class="{_e(cls)}"' if cls else "")
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def status_word(value: object) -> str:
    """"stable" < 0.1 ≤ "watch" < 0.25 ≤ "alarm" ("—" without a value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return "—"
    return "stable" if value < WATCH else "watch" if value < ALARM else "alarm"


def _status(status: object) -> str:
    word = str(status) if status in ("stable", "watch", "alarm") else "—"
    return f'<span class="status status-{_e(word if word != "—" else "none")}">{_e(word)}</span>'


# -- the page --------------------------------------------------------------------------------------------------------

def render_job(record: dict[str, Any], stability: dict[str, Any] | None, *, stability_error: str | None = None,
               scorecard_job: bool = False, report: bool = False) -> str:
    """The ``<main>`` of a job's page: its facts and the panels its script fills (timeline, curves, metrics,
    timings, model version, ledger entry, event log, and with ``report`` the report inline); for a scorecard job
    its section and stability."""
    job_id = record.get("job_id")
    parts = [f'<p class="crumbs"><a href="/ui">← all jobs</a> · <a href="/v1/jobs/{_e(job_id)}">record (JSON)</a>'
             ' <span id="refreshed" class="muted" role="status"></span></p>',
             f'<section id="job" data-job-id="{_e(job_id)}">',
             f"<h2>Job <code>{_e(job_id)}</code></h2>",
             '<div id="summary"></div>',
             _table([[_e(k), v] for k, v in _facts(record)], ["", ""], cls="facts"),
             "</section>", _LIVE.format(report=_REPORT if report else "")]
    card = record.get("scorecard")
    if isinstance(card, dict) and card:
        parts.append(scorecard_section(card))
    if scorecard_job or card:
        parts.append(stability_section(stability, stability_error))
    # Without script the page still says the metrics (the script draws them, with the baseline, in #metrics-live).
    parts.append(f"<noscript>{_metrics(record.get('metrics'))}</noscript>")
    return "\n".join(parts)


#: What the page's script (``/static/ui/job.js``) fills from ``GET /v1/jobs/{id}`` and ``GET /v1/models``.
_LIVE = """<div class="panels">
<section id="timeline-section" class="panel wide"><h2>Stages</h2><div id="timeline"></div></section>
<section id="curves-section" class="panel wide"><h2>Training</h2><div id="curves" class="figures"></div></section>
<section id="metrics-section" class="panel"><h2>Metrics</h2><div id="metrics-live"></div></section>
<section id="timings-section" class="panel wide"><h2>Timings</h2><div id="timings"></div></section>
<section id="models-section" class="panel"><h2>Model version</h2><div id="job-models"></div></section>
<section id="ledger-section" class="panel"><h2>Ledger entry</h2><div id="ledger"></div></section>
<section id="events-section" class="panel wide"><h2>Event log</h2><div id="events"></div></section>
{report}</div>"""
_REPORT = '<section id="report-section" class="panel wide"><h2>Report</h2><div id="report"></div></section>'


def _facts(record: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("state", f'<span class="state-name">{_e(record.get("state"))}</span> ({_e(record.get("stage"))})'),
             ("epoch", f"{_e(record.get('epoch', 0))}/{_e(record.get('max_epochs') or '?')}")]
    aligned = (record.get("alignment") or {}).get("intersection")
    if aligned is not None:
        facts.append(("aligned", f"{_e(aligned)} rows"))
    if record.get("error"):
        facts.append(("error", f'<span class="error">{_e(record["error"])}</span>'))
    return facts


def _metrics(metrics: object) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    rows = []
    for split, values in metrics.items():
        if isinstance(values, dict):
            shown = "  ".join(f"{k} {_number(values[k])}" for k in METRIC_KEYS if isinstance(values.get(k), float))
            rows.append([_e(split), _e(shown)])
            for name, per in (values.get("per_class") or {}).items():  # a multi-class (one-vs-rest) job
                if isinstance(per, dict):
                    rows.append([_e(f"{split}, class {name}"), _e("  ".join(
                        f"{k} {_number(per.get(k))}" for k in ("auc", "precision", "recall")
                        if isinstance(per.get(k), float)) + f"  rows {per.get('support')}")])
    return "<h3>Metrics</h3>" + _table(rows, ["split", "metrics"], id="metrics") if rows else ""


# -- the scorecard section ------------------------------------------------------------------------------------------

def scorecard_section(card: dict[str, Any]) -> str:
    """Party B's scorecard summary: IV per characteristic, B's points, the partners' range, the score's quality."""
    parts = ['<section id="scorecard"><h2>Scorecard</h2>']
    scaling = card.get("scaling") or {}
    if scaling or card.get("base_points") is not None:
        parts.append(f'<p class="lead">{_e(_scaling_text(scaling, card.get("base_points")))}</p>')
    parts.append("<h3>Characteristics by information value</h3>")
    rows = []
    for c in sorted(card.get("characteristics") or [], key=lambda c: -(c.get("iv") or 0.0)):
        rows.append([_e(c.get("party")), _e(c.get("name", c.get("characteristic"))), _number(c.get("iv")),
                     _e(c.get("band") or ""), "yes" if c.get("selected") else "no"])
    parts.append(_table(rows, ["party", "characteristic", "IV", "band", "selected"], id="scorecard-iv")
                 + '<p class="note">IV bands: below 0.02 unpredictive, 0.02–0.1 weak, 0.1–0.3 medium, 0.3–0.5 '
                   "strong, above 0.5 suspicious.</p>")
    for party, table in (card.get("points") or {}).items():
        parts.append(f"<h3>Points of {_e(party)} (its own characteristics)</h3>" + _points_table(table))
    ranges = card.get("partner_ranges") or {}
    if ranges:
        rows = [[_e(who), _e(_range(span))] for who, span in ranges.items()]
        parts.append("<h3>Partners' points</h3>" + _table(rows, ["partners", "total points, lowest to highest"],
                                                          id="scorecard-partners")
                     + '<p class="note">A partner\'s points table stays with it: party B sees only its points '
                       "total per applicant.</p>")
    parts.append(_score(card.get("score") or {}))
    parts.append("</section>")
    return "".join(parts)


def _scaling_text(scaling: dict[str, Any], base: object) -> str:
    words = []
    if scaling:
        words.append(f"{_number(scaling.get('points0'), 0)} points at odds {_number(scaling.get('odds0'), 4)}, "
                     f"{_number(scaling.get('pdo'), 0)} points to double the odds")
    if base is not None:
        words.append(f"base points {base} (party B's)")
    return "; ".join(words) + "."


def _range(span: object) -> str:
    if isinstance(span, (list, tuple)) and len(span) == 2:
        return f"{span[0]} to {span[1]}"
    return str(span)


def _points_table(table: object) -> str:
    rows = []
    characteristics = (table.get("characteristics") if isinstance(table, dict) else None) or []
    for c in characteristics:
        points = list(c.get("points") or [])
        try:
            labels = Bins.from_dict(c["bins"]).labels()
        except (KeyError, TypeError, VFLError):
            labels = []
        labels = labels if len(labels) == len(points) else [f"bin {i}" for i in range(len(points))]
        for n, (label, value) in enumerate(zip(labels, points)):
            rows.append([_e(c.get("name")) if n == 0 else "", _e(label), _e(value), _e(c.get("code")) if n == 0 else ""])
    return _table(rows, ["characteristic", "bin", "points", "reason code"], cls="scorecard-points")


def _score(score: dict[str, Any]) -> str:
    if not score:
        return ""
    line = (f"The integer score on the {score.get('split', '?')} rows: AUC {_number(score.get('auc'))}, "
            f"KS {_number(score.get('ks'))}, Gini {_number(score.get('gini'))}.")
    rows = []
    for band in score.get("bands") or []:
        rate = band.get("bad_rate")
        rows.append([_e(band_range(band)), _e(band.get("rows")), _e(band.get("events")),
                     "—" if rate is None else _e(f"{100 * float(rate):.1f}%")])
    return (f'<h3>Score</h3><p class="lead" id="scorecard-score">{_e(line)}</p>'
            + _table(rows, ["score band", "rows", "events", "bad rate"], id="scorecard-bands"))


# -- stability -------------------------------------------------------------------------------------------------------

def stability_section(stability: dict[str, Any] | None, error: str | None = None) -> str:
    """The score's PSI (party B) and this party's characteristics' CSI, each with its status, and the bands."""
    bands = (f"Read with the usual bands: below {WATCH} stable, {WATCH} to {ALARM} watch, {ALARM} and above "
             "alarm. Only served applicants count (predictions and batches), not the job's evaluation.")
    parts = ['<section id="stability"><h2>Stability</h2>']
    if stability is None:
        parts.append(f'<p class="muted">No stability here{": " + _e(error) if error else ""}.</p>')
    else:
        score = stability.get("score")
        if isinstance(score, dict):
            if score.get("rows"):
                status = score.get("status") or status_word(score.get("psi"))
                parts.append(f'<p class="lead" id="stability-score" data-status="{_e(status)}">Score PSI '
                             f"{_e(_number(score.get('psi')))} {_status(status)} over {_e(score.get('rows'))} served "
                             "scores, against the training score bands.</p>")
            else:
                parts.append('<p class="lead" id="stability-score">Score PSI: no score served yet.</p>')
        rows = []
        for entry in stability.get("characteristics") or []:
            served = bool(entry.get("rows"))
            status = (entry.get("status") or status_word(entry.get("csi"))) if served else None
            rows.append([_e(entry.get("party", stability.get("party"))), _e(entry.get("characteristic")),
                         _number(entry.get("csi")) if served else "—",
                         _status(status) if served else "no rows served", _e(entry.get("rows", 0))])
        if rows:
            parts.append(_table(rows, ["party", "characteristic", "CSI", "status", "rows"], id="stability-csi"))
    parts.append(f'<p class="note">{_e(bands)} Each party computes its own characteristics\' CSI on the IDs it '
                 "scored; no feature value crosses.</p></section>")
    return "".join(parts)


__all__ = ["render_job", "scorecard_section", "stability_section", "status_word"]
