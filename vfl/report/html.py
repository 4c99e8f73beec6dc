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
--report`` writes the same page for a simulated job. :func:`render` takes a
summary (:mod:`vfl.report.summary`) and its figures (:mod:`vfl.report.figures`).
"""

from __future__ import annotations

import base64
import html
from typing import Any

from vfl.report import fmt
from vfl.report.contributions import contributions_section, ledger_section
from vfl.report.figures import parameter_panels
from vfl.report.job_sections import (alignment_section, context_section, privacy_section, settings_section,
                                     timings_section)
from vfl.report.markup import STOP_REASONS, feature_side, figure, model_name
from vfl.report.multiclass_sections import (multiclass_headline, multiclass_metrics_section,
                                            multiclass_training_section)
from vfl.report.model_sections import coefficients_section, headline_section, metrics_section, performance_section
from vfl.report.scorecard_sections import scorecard_section
from vfl.report.summary import feature_party_count


NO_FIGURES = "<p>No figures: they need matplotlib, which this install lacks (pip install 'vfl[report]').</p>"


STYLE = """
 body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1040px; margin: 2em auto;
        padding: 0 1em; color: #222; line-height: 1.45; }
 h1 { margin-bottom: 0.1em; }
 h3 { margin-top: 1.5em; }
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


def warnings_block(warnings: list[str] | None) -> str:
    """What looks wrong with the data though the job ran (ID formats, label leakage), before anything else."""
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f'<div class="warnings"><h2>Warnings about the data</h2><ul>{items}</ul></div>'


def render(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report page. Figures are inlined, so the file stands alone."""
    image = {name: base64.b64encode(png).decode() for name, png in figures.items()}
    if summary.get("multiclass"):
        return _render_multiclass(summary, image)
    esc = html.escape
    model = model_name(summary)
    k = feature_party_count(summary)
    kept = summary.get("kept_epoch")
    parameters_caption = (f"Each party's weights after every epoch of this {model}; party A keeps its weights, "
                          "so a service job shows only their norm and each epoch's change")
    if summary.get("simulated") and not summary.get("feature_parties"):
        parameters_caption = (f"Each party's weights after every epoch of this {model} (a one-process simulation "
                              "holds them all)")
    if summary.get("feature_parties"):  # k ≥ 2: name the panels, since the image is all the page has of them
        parameters_caption = (f"Each party's weights after every epoch of this {model}, one panel each: "
                              + "; ".join(parameter_panels(summary)) + ". Each feature party keeps its weights, "
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
    training = (figure("loss.png", image, loss_caption + ".")
                + figure("parameters.png", image, parameters_caption + "."))
    performance = performance_section(summary, image)
    learned = "".join(f"<li><b>{esc(party)}</b>: {esc(text)}</li>" for party, text in summary["learned"])
    heading = ("How the model ranks and decides" if summary.get("model") == "logistic"
               else "How close the predictions come")
    subtitle = f"{model} · {fmt.plural(k, 'feature party', 'feature parties')} and party B"
    if summary.get("finished_at"):
        subtitle += f" · finished {fmt.when(summary['finished_at'])}"
    if k == 1:
        subtitle = subtitle.replace("1 feature party", "party A")
    return f"""{_page_head(summary['title'], subtitle)}
<h2>Headline: what {esc(feature_side(summary))} {"adds" if k == 1 else "add"}</h2>
{headline_section(summary)}
{warnings_block(summary.get("warnings"))}
<h2>Job</h2>
{context_section(summary)}
{scorecard_section(summary, image) or "<h2>Party B's coefficients</h2>" + coefficients_section(summary)}
<h2>{esc(heading)}</h2>
{"" if figures else NO_FIGURES}
{performance}
<h2>Metrics</h2>
{metrics_section(summary)}
{contributions_section(summary.get("contributions"), image)}
{ledger_section(summary.get("ledger"))}
<h2>Training</h2>
<div id="figures">{training or NO_FIGURES}</div>
<h2>Privacy</h2>
{privacy_section(summary.get("privacy"))}
<h2>Alignment (RSA blind-signature PSI)</h2>
{alignment_section(summary)}
<h2>Timings</h2>
{timings_section(summary)}
<h2>What each party learned</h2>
<ul>{learned}</ul>
<h2>Configuration</h2>
{settings_section(summary)}
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



def _page_head(title: str, subtitle: str) -> str:
    """The report's document head, title and subtitle (escaped), shared by the binary and one-vs-rest pages."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vfl job report — {html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Federated model report: {html.escape(title)}</h1>
<p class="subtitle">{html.escape(subtitle)}</p>"""

def _render_multiclass(summary: dict[str, Any], image: dict[str, str]) -> str:
    """A one-vs-rest model's page: macro and per-class metrics, each class's ROC, and each class's training."""
    esc = html.escape
    learned = "".join(f"<li><b>{esc(party)}</b>: {esc(text)}</li>" for party, text in summary["learned"])
    classes = len(summary["multiclass"]["classes"])  # a simulation's names, or a job record's values
    split = summary.get("curve_split", "train")
    return f"""{_page_head(summary['title'], f"one-vs-rest logistic regression · {classes} classes")}
<h2>Headline</h2>
{multiclass_headline(summary)}
<h2>Job</h2>
{context_section(summary)}
<h2>Metrics per class</h2>
{multiclass_metrics_section(summary)}
{figure("class_roc.png", image, f"Each class against the rest, on the {split} rows: the ROC of the federated "
        "model's class probabilities (normalised over the classes)")}
<h2>Training, one binary model per class</h2>
{multiclass_training_section(summary)}
{figure("class_losses.png", image, "The training loss of each class's binary model after every epoch")}
<h2>Privacy</h2>
{privacy_section(summary.get("privacy") if isinstance(summary.get("privacy"), dict) else None)}
<h2>Alignment (PSI)</h2>
{alignment_section(summary)}
<h2>Timings</h2>
{timings_section(summary)}
<h2>What each party learned</h2>
<ul>{learned}</ul>
<p>Each party learned this once per class: {classes} trainings.</p>
<h2>Configuration</h2>
{settings_section(summary)}
</body></html>
"""
