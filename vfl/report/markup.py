"""What the report's sections are built from: HTML tables, exact-valued cells, figures, and shared wording."""

from __future__ import annotations

import html
from typing import Any

from vfl.report import fmt

#: how the page names each model
MODEL_NAMES = {"logistic": "logistic regression", "linear": "linear regression"}
#: why training stopped, as the page says it
STOP_REASONS = {"max_epochs": "reached its epoch limit", "converged": "converged (the loss stopped moving)",
                "early_stopping": "stopped early (the validation loss stopped improving)"}


class Raw(str):
    """A table cell that is already HTML."""


def html_table(rows: list[list[Any]], header: list[str], css: str = "") -> str:
    """A table with one header row; each cell is escaped and formatted (:func:`vfl.report.fmt.number`) unless Raw."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return f"<td>{value}</td>"
    return f"<td>{html.escape(value if isinstance(value, str) else fmt.number(value))}</td>"


def value_span(value: Any, text: str) -> Raw:
    """A cell that shows ``text`` and keeps the exact value for whoever checks the page."""
    exact = "" if value is None else repr(float(value))
    return Raw(f'<span data-value="{exact}">{html.escape(text)}</span>')


def figure(name: str, image: dict[str, str], caption: str) -> str:
    """An inlined figure with its caption, or nothing when the job has no such figure (or no matplotlib)."""
    if name not in image:
        return ""
    return (f'<figure><img class="figure" alt="{html.escape(name)}" src="data:image/png;base64,{image[name]}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def model_name(summary: dict[str, Any]) -> str:
    """The model in words: "logistic regression", "linear regression"."""
    return MODEL_NAMES.get(summary.get("model") or "", summary.get("model") or "model")


def feature_side(summary: dict[str, Any]) -> str:
    """The feature side, as the page names it: "party A", or "feature parties shop and telco"."""
    features = summary.get("feature_parties")
    if not features:
        return "party A"
    names = [f["party"] for f in features]
    return "feature parties " + (", ".join(names[:-1]) + " and " + names[-1])


def threshold_words(decision: dict[str, Any]) -> str:
    """The decision threshold and how it was chosen: "0.40 (fixed in the job spec)"."""
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
