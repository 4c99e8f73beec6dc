"""What each feature party adds, and the ledger, for people: text tables, the report's section, its bar chart.

* :func:`text_table`: the contributions table ``vfl simulate --contributions`` prints;
* :func:`contributions_section`: the report's "Contributions" section (a table, and the bar chart with figures);
* :func:`bar_chart`: Shapley value and leave-one-out per feature party, as PNG bytes (matplotlib);
* :func:`ledger_section`: the report's lines about the job's ledger entry;
* :func:`show_entry`: one ledger entry as ``vfl ledger show`` prints it.
"""

from __future__ import annotations

import html
from typing import Any

METRIC_NAMES = {"auc": "AUC", "r2": "R²"}


def _metric(contributions: dict[str, Any]) -> str:
    return METRIC_NAMES.get(contributions.get("metric", ""), str(contributions.get("metric")))


def _method(contributions: dict[str, Any]) -> str:
    if contributions.get("method") == "exact":
        return "exact Shapley values"
    return (f"Shapley values estimated from {contributions.get('permutations')} sampled orders "
            f"(seed {contributions.get('seed')}), ± one standard error")


def text_table(contributions: dict[str, Any]) -> str:
    """The table as plain text: one line per feature party, then v(N) and v(∅)."""
    if "error" in contributions:
        return f"contributions: not computed: {contributions['error']}"
    metric = _metric(contributions)
    split = contributions.get("split", "validation")
    lines = [f"contributions ({_method(contributions)}; {metric} on the {split} rows, "
             f"{contributions.get('trainings', 0)} coalition trainings):"]
    width = max([len("party")] + [len(str(p["party"])) for p in contributions["parties"]])
    lines.append(f"  {'party'.ljust(width)}  {'shapley':>9}  {'leave-one-out':>13}  source")
    for p in contributions["parties"]:
        shapley = f"{p['shapley']:+.4f}"
        if p.get("standard_error") is not None:
            shapley += f" ± {p['standard_error']:.4f}"
        lines.append(f"  {str(p['party']).ljust(width)}  {shapley:>9}  {p['leave_one_out']:>+13.4f}  {p.get('source')}")
    lines.append(f"  {metric}: all parties {contributions['full']:.4f}, party B alone "
                 f"{contributions['label_party_alone']:.4f} (Shapley values add up to the difference, "
                 f"{contributions['full'] - contributions['label_party_alone']:+.4f})")
    return "\n".join(lines)


def bar_chart(contributions: dict[str, Any]) -> bytes:
    """Each feature party's Shapley value and leave-one-out figure, side by side (needs matplotlib)."""
    import numpy as np

    from vfl.report import plots

    parties = contributions["parties"]
    names = [str(p["party"]) if not p.get("source") or str(p.get("source")) == str(p["party"])
             else f"{p['party']} ({p['source']})" for p in parties]
    shapley = [p["shapley"] for p in parties]
    loo = [p["leave_one_out"] for p in parties]
    errors = [p.get("standard_error") or 0.0 for p in parties]
    with plots.plt.rc_context(plots.STYLE):
        fig, ax = plots._figure(1, 1, height=max(2.6, 0.75 * len(parties) + 1.6))
        y = np.arange(len(parties))
        ax.barh(y - 0.2, shapley, height=0.38, color=plots.FEDERATED, label="Shapley value",
                xerr=errors if any(errors) else None, capsize=3)
        ax.barh(y + 0.2, loo, height=0.38, color=plots.ALONE, label="leave-one-out")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.axvline(0, color=plots.CHANCE, linewidth=0.8)
        metric = _metric(contributions)
        ax.set_xlabel(f"{metric} added ({contributions.get('split', 'validation')} rows)")
        ax.set_title(f"What each feature party adds to party B's {metric} of {contributions['label_party_alone']:.4f}")
        ax.legend(loc="lower right")
        return plots._png(fig)


def contributions_section(contributions: dict[str, Any] | None, image: dict[str, str]) -> str:
    """The report's "Contributions" section (empty when the job did not ask for them)."""
    if not contributions:
        return ""
    esc = html.escape
    if "error" in contributions:
        return f"<h2>Contributions</h2><p>Not computed: {esc(str(contributions['error']))}</p>"
    metric = _metric(contributions)
    sampled = contributions.get("method") != "exact"
    head = ["feature party", "source", f"Shapley value ({metric})"] + (["± standard error"] if sampled else []) + [
        f"leave-one-out ({metric})"]
    rows = []
    for p in contributions["parties"]:
        cells = [p["party"], str(p.get("source") or ""), f"{p['shapley']:+.4f}"]
        if sampled:
            cells.append(f"{p.get('standard_error', 0.0):.4f}")
        cells.append(f"{p['leave_one_out']:+.4f}")
        rows.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    table = (f"<table id=\"contributions\"><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    coalitions = contributions.get("coalitions") or []
    detail = ""
    if coalitions:
        items = "".join(f"<tr><td>B + {esc(' + '.join(c['parties']))}</td><td>{c['value']:.4f}</td>"
                        f"<td>{esc(_seconds(c.get('seconds')))}</td></tr>" for c in coalitions)
        detail = (f"<details><summary>Every coalition's {esc(metric)} ({len(coalitions)} models)</summary>"
                  f"<table><thead><tr><th>coalition</th><th>{esc(metric)}</th><th>training</th></tr></thead>"
                  f"<tbody><tr><td>B alone</td><td>{contributions['label_party_alone']:.4f}</td><td>plaintext, "
                  f"at B</td></tr>{items}</tbody></table></details>")
    figure = ""
    if "contributions.png" in image:
        figure = (f'<figure><img class="figure" alt="contributions" src="data:image/png;base64,'
                  f'{image["contributions.png"]}"><figcaption>Shapley value (blue) and leave-one-out (orange) of each '
                  f"feature party, in {esc(metric)} on the {esc(contributions.get('split', 'validation'))} rows; "
                  "the Shapley values add up to the bar between B alone and the full model.</figcaption></figure>")
    gap = contributions["full"] - contributions["label_party_alone"]
    return f"""<h2>Contributions</h2>
<p>What each feature party adds, as {esc(_method(contributions))}: every coalition of feature parties was trained
with party B through the same encrypted protocol, on the job's own aligned rows (the same customers and the same
validation split), and scored by {esc(metric)} on the {esc(contributions.get('split', 'validation'))} rows
({contributions.get('trainings', 0)} extra trainings). Party B alone scores {contributions['label_party_alone']:.4f},
all parties {contributions['full']:.4f}; the Shapley values add up to the difference, {gap:+.4f}. Leave-one-out
is the full model's {esc(metric)} minus the {esc(metric)} without that party.</p>
{table}
{figure}
{detail}"""


def _seconds(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f} s"


def ledger_section(ledger: dict[str, Any] | None) -> str:
    """A paragraph on the job's entry in the federation's ledger (party B's job record)."""
    if not ledger:
        return ""
    esc = html.escape
    if ledger.get("entry") is None:
        reason = ledger.get("reason") or "; ".join(ledger.get("problems") or []) or "not written"
        return f"<h2>Ledger</h2><p>No ledger entry: {esc(reason)}</p>"
    verified = "every signature verified" if ledger.get("signatures_verified") else "NOT every signature verified"
    problems = "".join(f"<li>{esc(p)}</li>" for p in ledger.get("problems") or [])
    where = ledger.get("appended_at")
    appended = f"; appended at {esc(', '.join(where))}" if where else (
        f"; in {esc(str(ledger['folder']))}" if ledger.get("folder") else "")
    return (f"<h2>Ledger</h2><p>Entry {ledger['entry']} of the ledger (digest "
            f"<code>{esc(str(ledger.get('digest'))[:16])}…</code>), signed by "
            f"{esc(', '.join(ledger.get('signed_by') or []))}: {verified}{appended}.</p>"
            + (f"<ul>{problems}</ul>" if problems else ""))


def show_entry(entry: dict[str, Any]) -> str:
    """One entry for ``vfl ledger show``: when, which job, who took part with what, the metrics, contributions."""
    fields = entry.get("fields") or {}
    lines = [f"entry {entry.get('index')}  {fields.get('time')}  job {fields.get('job_id')}  ({fields.get('model')})",
             f"  digest {str(entry.get('digest'))[:16]}…  previous {str(entry.get('previous'))[:16]}…  "
             f"config {str(fields.get('config_digest'))[:16]}…"]
    for p in fields.get("parties") or []:
        model = str(p.get("model_digest"))[:16] + "…" if p.get("model_digest") else "-"
        dataset = p.get("dataset") or "-"
        lines.append(f"  party {p.get('party')} ({p.get('role')}): dataset {dataset}, model {model}")
    for split, values in (fields.get("metrics") or {}).items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in (values or {}).items() if isinstance(v, float))
        lines.append(f"  {split}: {shown}")
    if fields.get("contributions"):
        lines += ["  " + line for line in text_table(fields["contributions"]).splitlines()]
    signed = ", ".join(str(s.get("party")) for s in entry.get("signatures") or [])
    lines.append(f"  signed by: {signed or 'nobody'}")
    return "\n".join(lines)
