"""The job report of a multi-class (one-vs-rest) model: macro and per-class metrics, and each class's training.

A one-vs-rest model is K binary models (:mod:`vfl.ml.multiclass`), so the binary
page's ROC, KS, score bands, threshold and scorecard do not apply: this page
shows the macro AUC, the accuracy, and per class its AUC (class against the
rest), precision, recall and support, then each class's binary training.
"""

from __future__ import annotations

import html
from typing import Any

from vfl.report import fmt


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def class_names(info: dict[str, Any]) -> list[str]:
    """The classes as shown: a simulation keeps their names, a job record their values (and names)."""
    return [str(c) for c in info.get("class_names") or info["classes"]]


def multiclass_headline(summary: dict[str, Any]) -> str:
    """Macro AUC and accuracy on each split, in one sentence per split."""
    info = summary["multiclass"]
    lines = []
    for split, values in (summary.get("metrics") or {}).items():
        where = {"train": "training rows", "validation": "validation rows"}.get(split, split)
        lines.append(f"<li data-split=\"{html.escape(split)}\">on the {fmt.integer(values.get('rows'))} "
                     f"{html.escape(where)}: macro AUC <b>{_number(values.get('macro_auc'))}</b>, accuracy "
                     f"<b>{_number(values.get('accuracy'))}</b>, log-loss {_number(values.get('log_loss'))}</li>")
    return (f"<p>One-vs-rest logistic regression over {len(info['classes'])} classes "
            f"({html.escape(', '.join(class_names(info)))}): one binary model per class, each trained through the "
            "same encrypted protocol on the same aligned rows. Class probabilities: "
            f"{html.escape(info.get('probabilities') or '')}.</p><ul id=\"multiclass-headline\">{''.join(lines)}</ul>")


def multiclass_metrics_section(summary: dict[str, Any]) -> str:
    """Per split: every class's AUC, precision, recall and support, then the macro averages."""
    out = []
    for split, values in (summary.get("metrics") or {}).items():
        rows = []
        for name, per in (values.get("per_class") or {}).items():
            rows.append(f'<tr data-class="{html.escape(name)}"><td>{html.escape(name)}</td>'
                        f"<td>{_number(per.get('auc'))}</td><td>{_number(per.get('precision'))}</td>"
                        f"<td>{_number(per.get('recall'))}</td><td>{fmt.integer(per.get('support'))}</td></tr>")
        rows.append(f"<tr><td><b>macro</b></td><td>{_number(values.get('macro_auc'))}</td>"
                    f"<td>{_number(values.get('macro_precision'))}</td><td>{_number(values.get('macro_recall'))}</td>"
                    f"<td>{fmt.integer(values.get('rows'))}</td></tr>")
        where = {"train": "training rows", "validation": "validation rows"}.get(split, split)
        out.append(f"<h3>{html.escape(where.capitalize())}</h3><table class=\"multiclass\" "
                   f"data-split=\"{html.escape(split)}\"><thead><tr><th>class</th><th>AUC (class vs rest)</th>"
                   "<th>precision</th><th>recall</th><th>rows</th></tr></thead><tbody>"
                   + "".join(rows) + "</tbody></table>")
    return "".join(out) + ("<p>The predicted class is the one with the largest probability; precision and recall "
                           "count it against each class.</p>")


def multiclass_training_section(summary: dict[str, Any]) -> str:
    """Each class's binary training: epochs, why it stopped, its last loss."""
    rows = []
    for item in summary["multiclass"].get("per_class") or []:
        losses = item.get("loss_history") or []
        rows.append(f"<tr><td>{html.escape(str(item.get('class')))}</td>"
                    f"<td>{html.escape(str(item.get('job_id') or 'this job'))}</td>"
                    f"<td>{fmt.integer(item.get('epochs_run')) if item.get('epochs_run') is not None else 'n/a'}</td>"
                    f"<td>{html.escape(str(item.get('stop_reason') or ''))}</td>"
                    f"<td>{_number(losses[-1] if losses else None)}</td></tr>")
    return ("<table class=\"multiclass-training\"><thead><tr><th>class</th><th>training job</th><th>epochs</th>"
            "<th>stopped</th><th>last training loss</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
