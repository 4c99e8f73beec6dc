"""The figures of a job report, as PNG bytes: loss, parameters, ROC and KS, gains, calibration, residuals.

They need matplotlib (the ``report`` extra); without it :func:`figures_for`
returns none and the page says so.
"""

from __future__ import annotations

import logging
from typing import Any

from vfl.errors import ConfigError
from vfl.report.contributions import bar_chart
from vfl.report.scorecard_sections import FIGURE, bands_chart
from vfl.report.summary import baseline_metrics, decision_threshold

log = logging.getLogger(__name__)


#: one panel of the parameter figure: line names, values per epoch, y-axis label
ParameterPanel = tuple[list[str], list, str]


def _multiclass_figures(summary: dict[str, Any], plots: Any) -> dict[str, bytes]:
    """A one-vs-rest model: each class training's loss per epoch, and each class's ROC against the rest."""
    figures: dict[str, bytes] = {}
    per_class = (summary.get("multiclass") or {}).get("per_class") or []
    losses = {f"class {c['class']}": c["loss_history"] for c in per_class if c.get("loss_history")}
    if losses:
        figures["class_losses.png"] = plots.loss_curves(losses, title="Training loss per epoch, one model per class")
    curves = summary.get("curves") or {}
    if curves.get("kind") == "roc_per_class":
        split = summary.get("curve_split", "train")
        by_class = ((summary.get("metrics") or {}).get(split) or {}).get("per_class") or {}
        aucs = {name: (values or {}).get("auc") for name, values in by_class.items()}
        figures["class_roc.png"] = plots.class_rocs(curves["classes"], aucs)
    return figures


def figures_for(summary: dict[str, Any]) -> dict[str, bytes]:
    """The figures of a job, as PNG bytes keyed by file name (none without matplotlib)."""
    try:
        from vfl.report import plots  # here, not at the top: it raises ConfigError without matplotlib
    except ConfigError as exc:  # the `report` extra is not installed: the report goes out without figures
        log.warning("job report without figures: %s", exc)
        return {}
    if summary.get("multiclass"):
        return _multiclass_figures(summary, plots)

    kept = summary.get("kept_epoch")
    marked = kept if summary.get("validation_loss_history") else None  # an epoch chosen on validation loss
    figures = {
        "loss.png": plots.training_loss(summary["loss_history"], summary.get("validation_loss_history") or [],
                                        kept_epoch=marked, title="Loss per epoch"),
    }
    panels = parameter_panels(summary)
    if panels:  # a scorecard's result keeps no weight trajectories (its points tables say more)
        figures["parameters.png"] = plots.parameter_trajectories(panels, kept_epoch=marked,
                                                                 title="Parameters after each epoch")
    curves = summary.get("curves") or {}
    split = summary.get("curve_split", "train")
    metrics = (summary.get("metrics") or {}).get(split) or {}
    alone = baseline_metrics(summary, split)
    if curves.get("kind") == "roc":
        curve, baseline = roc_curves(curves)
        if baseline is not None:
            baseline["auc"] = alone.get("auc")
        figures["roc_ks.png"] = plots.roc_and_ks(curve, auc=metrics.get("auc"), ks=metrics.get("ks"),
                                                 baseline=baseline)
        if curve.get("depth") is not None and curves.get("bands"):
            figures["gains.png"] = plots.gains_and_lift(curve, curves["bands"], baseline=baseline)
        if curves.get("calibration"):
            figures["calibration.png"] = plots.calibration_and_scores(
                curves["calibration"], curves.get("histogram"), threshold=decision_threshold(summary))
    elif curves.get("kind") == "scatter":
        figures["residuals.png"] = plots.residuals(curves["actual"], curves["predicted"])
    card = summary.get("scorecard")
    if card and (card.get("score") or {}).get("bands"):
        figures[FIGURE] = bands_chart(card)
    contributions = summary.get("contributions")
    if contributions and contributions.get("parties"):
        figures["contributions.png"] = bar_chart(contributions)
    return figures


def roc_curves(curves: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
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


def _depth(fpr: list[float], tpr: list[float], positives: int, negatives: int) -> list[float]:
    """Share of all rows at or above each ROC cut: what a KS or gains chart puts on its x-axis."""
    n = max(1, positives + negatives)
    return [(t * positives + f * negatives) / n for f, t in zip(fpr, tpr)]


def parameter_panels(summary: dict[str, Any]) -> dict[str, ParameterPanel]:
    """The panels of the parameter figure by title: each party's weights, or the norms a feature party shares."""
    features = summary.get("feature_parties")
    if features:
        return _multiparty_panels(features, summary["parameters"])
    panels: dict[str, ParameterPanel] = {}
    convergence = summary.get("party_a_convergence")
    if convergence and "party A" not in summary["parameters"]:
        panels["party A (keeps its weights; shares their norms)"] = _norm_panel("A", convergence)
    for party, p in summary["parameters"].items():
        if p["history"]:
            panels[party] = (p["names"], p["history"], "weight (standardised features)")
    return dict(sorted(panels.items()))


def _multiparty_panels(features: list[dict[str, Any]], parameters: dict[str, Any]) -> dict[str, ParameterPanel]:
    """k ≥ 2: one panel per feature party in roster order, then B's (not sorted: the roster order is the story)."""
    panels: dict[str, ParameterPanel] = {}
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


def _norm_panel(party: str, convergence: dict[str, Any]) -> ParameterPanel:
    """A feature party that keeps its weights: the size of its weight vector and of each epoch's step."""
    history = list(zip(convergence["weight_norm"], convergence["step_norm"]))
    return [f"‖θ_{party}‖ after the epoch", f"‖Δθ_{party}‖ in the epoch"], history, "L2 norm"
