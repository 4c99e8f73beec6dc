"""The figures of a job, as PNG bytes.

For the job report (each one a full-width figure, drawn 10 inches wide so it
shows at about its natural size in the page):

* :func:`training_loss`: training and validation loss per epoch, the kept epoch marked;
* :func:`parameter_trajectories`: each party's parameters after every epoch, one panel per party;
* :func:`roc_and_ks`: the ROC curve, and the KS chart (cumulative shares of positives and negatives);
* :func:`gains_and_lift`: cumulative gains, and the lift of each score band (decile);
* :func:`calibration_and_scores`: observed rate against predicted probability, and the scores of
  each class with the decision threshold;
* :func:`residuals`: predicted against actual, and residuals against predicted (linear regression).

:func:`loss_curves`, :func:`roc` and :func:`predicted_vs_actual` draw single
panels for ``scripts/compare_domains.py``.

matplotlib is an optional dependency (the ``report`` extra); importing this
module without it raises a ConfigError that says how to install it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vfl.errors import ConfigError

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("figures need matplotlib: pip install 'vfl[report]'") from exc


#: panels per row of the parameter figure: two keep each panel 5 inches wide, readable at the page's width
MAX_PANEL_COLUMNS = 2
#: inches; at DPI this is about the report's column width, so figures show at their natural size
FULL_WIDTH = 10.0
DPI = 110
FEDERATED, ALONE, CHANCE = "#1f5fa8", "#e07b18", "#888888"
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.spines.top": False, "axes.spines.right": False}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _figure(rows: int = 1, columns: int = 2, height: float = 4.3, **kwargs: Any):
    return plt.subplots(rows, columns, figsize=(FULL_WIDTH, height), layout="constrained", **kwargs)


def training_loss(train: Sequence[float], validation: Sequence[float] | None = None, *,
                  kept_epoch: int | None = None, title: str = "Loss per epoch") -> bytes:
    """Training loss (solid) and validation loss (dashed); a vertical line at the epoch the model keeps."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 3.8), layout="constrained")
        ax.plot(np.arange(1, len(train) + 1), train, marker="o", markersize=4, color=FEDERATED, label="training")
        if validation:
            ax.plot(np.arange(1, len(validation) + 1), validation, marker="o", markersize=4, linestyle="--",
                    color=ALONE, label="validation")
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color=CHANCE, linestyle=":", label=f"model kept: epoch {kept_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        return _png(fig)


def loss_curves(curves: dict[str, Sequence[float]], *, title: str = "Training loss per epoch",
                validation: dict[str, Sequence[float]] | None = None) -> bytes:
    """One line per job or domain; dashed lines for validation loss when given."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for i, (label, losses) in enumerate(curves.items()):
            color = f"C{i}"
            ax.plot(np.arange(1, len(losses) + 1), losses, marker="o", markersize=3, color=color, label=label)
            if validation and validation.get(label):
                v = validation[label]
                ax.plot(np.arange(1, len(v) + 1), v, linestyle="--", color=color, label=f"{label} (validation)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        return _png(fig)


def parameter_trajectories(histories: dict[str, tuple], *, title: str = "Parameter trajectories per epoch",
                           kept_epoch: int | None = None) -> bytes:
    """One panel per party; one line per parameter, its value after each epoch.

    Each value is ``(names, history)`` or ``(names, history, y-axis label)``.
    Panels wrap after :data:`MAX_PANEL_COLUMNS`, so k feature parties stay
    readable; each panel's legend sits under it, so it hides no line.
    """
    n = max(len(histories), 1)
    columns = min(n, MAX_PANEL_COLUMNS)
    rows = math.ceil(n / columns)
    longest = max((len(p[0]) for p in histories.values()), default=1)
    legend_rows = math.ceil(min(longest, 15) / 3)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, columns, figsize=(FULL_WIDTH, (3.4 + 0.25 * legend_rows) * rows),
                                 squeeze=False, layout="constrained")
        for ax in axes.flat[len(histories):]:  # the last row may be short
            ax.set_visible(False)
        for ax, (party, panel) in zip(axes.flat, histories.items()):
            names, history = panel[0], panel[1]
            ylabel = panel[2] if len(panel) > 2 else "weight (standardised features)"
            values = np.asarray(history, dtype=np.float64)
            epochs = np.arange(1, len(values) + 1)
            for j, name in enumerate(names):
                # up to 10 lines: 10 well-separated colours; beyond, 20 colours, then the same dashed,
                # so no two of 40 lines look alike
                color = plt.cm.tab10(j) if len(names) <= 10 else plt.cm.tab20(j % 20)
                ax.plot(epochs, values[:, j], label=name, color=color,
                        linestyle=("-", "--", ":")[(j // 20) % 3], marker="o" if len(epochs) <= 12 else None,
                        markersize=3)
            if kept_epoch is not None:
                ax.axvline(kept_epoch, color=CHANCE, linestyle=":", linewidth=1)
            ax.set_title(party, fontsize=11)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if len(names) <= 15:
                ax.legend(fontsize=9, ncol=min(3, len(names)), loc="upper center", bbox_to_anchor=(0.5, -0.2),
                          frameon=False)
        fig.suptitle(title)
        return _png(fig)


def roc_and_ks(curve: dict[str, Any], *, auc: float | None, ks: float | None,
               baseline: dict[str, Any] | None = None, title: str = "") -> bytes:
    """Left: ROC. Right: the KS chart (cumulative share of positives and negatives by score rank).

    ``curve`` has ``fpr``, ``tpr`` and, for the KS panel, ``depth`` (share of rows
    at or above each cut); ``baseline`` the same for party B alone, plus its ``auc``.
    """
    with plt.rc_context(STYLE):
        if curve.get("depth") is not None:
            fig, (left, right) = _figure()
        else:  # a record without class counts: the ROC alone, at half width
            fig, left = plt.subplots(figsize=(FULL_WIDTH / 2, 4.6), layout="constrained")
            right = None
        left.plot(curve["fpr"], curve["tpr"], color=FEDERATED, linewidth=2,
                  label="federated model" + (f" (AUC {auc:.3f})" if auc is not None else ""))
        if baseline is not None:
            b_auc = baseline.get("auc")
            left.plot(baseline["fpr"], baseline["tpr"], color=ALONE, linewidth=1.5,
                      label="party B alone" + (f" (AUC {b_auc:.3f})" if b_auc is not None else ""))
        left.plot([0, 1], [0, 1], color=CHANCE, linestyle=":", label="chance")
        left.set_xlabel("false positive rate")
        left.set_ylabel("true positive rate")
        left.set_title("ROC curve")
        left.set_aspect("equal")
        left.legend(loc="lower right")
        left.grid(alpha=0.3)
        if right is not None:
            depth = curve["depth"]
            right.plot(depth, curve["tpr"], color=FEDERATED, linewidth=2, label="positives (label 1) captured")
            right.plot(depth, curve["fpr"], color=ALONE, linewidth=2, label="negatives (label 0) captured")
            point = curve.get("ks_point")
            if point is not None:
                right.vlines(point["depth"], point["fpr"], point["tpr"], color="black", linewidth=1.5)
                right.annotate(f"KS {ks:.3f}" if ks is not None else "KS",
                               (point["depth"], (point["fpr"] + point["tpr"]) / 2), xytext=(8, 0),
                               textcoords="offset points", va="center")
            right.set_xlabel("share of rows, highest scores first")
            right.set_ylabel("cumulative share of the class")
            right.xaxis.set_major_formatter(PercentFormatter(1.0))
            right.yaxis.set_major_formatter(PercentFormatter(1.0))
            right.set_title("KS chart (federated model)")
            right.legend(loc="lower right")
            right.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        return _png(fig)


def gains_and_lift(curve: dict[str, Any], bands: dict[str, Any], *, baseline: dict[str, Any] | None = None,
                   title: str = "") -> bytes:
    """Left: cumulative gains (share of all positives found in the top x% of scores). Right: lift per band."""
    with plt.rc_context(STYLE):
        fig, (left, right) = _figure()
        left.plot(curve["depth"], curve["tpr"], color=FEDERATED, linewidth=2, label="federated model")
        if baseline is not None:
            left.plot(baseline["depth"], baseline["tpr"], color=ALONE, linewidth=1.5, label="party B alone")
        share = curve["positives"] / max(1, curve["positives"] + curve["negatives"])
        left.plot([0, share, 1], [0, 1, 1], color="#4a9a4a", linestyle="--", linewidth=1, label="perfect model")
        left.plot([0, 1], [0, 1], color=CHANCE, linestyle=":", label="random order")
        left.set_xlabel("share of rows contacted, highest scores first")
        left.set_ylabel("share of all positives found")
        left.xaxis.set_major_formatter(PercentFormatter(1.0))
        left.yaxis.set_major_formatter(PercentFormatter(1.0))
        left.set_title("Cumulative gains")
        left.legend(loc="lower right")
        left.grid(alpha=0.3)

        n_bands = len(bands["rows"])
        x = np.arange(1, n_bands + 1)
        rate = sum(bands["positives"]) / max(1, sum(bands["rows"]))
        lift = [p / r / rate if r and rate else 0.0 for p, r in zip(bands["positives"], bands["rows"])]
        width = 0.4 if bands.get("baseline_positives") else 0.7
        right.bar(x - (width / 2 if bands.get("baseline_positives") else 0), lift, width=width, color=FEDERATED,
                  label="federated model")
        if bands.get("baseline_positives"):
            b_lift = [p / r / rate if r and rate else 0.0 for p, r in zip(bands["baseline_positives"], bands["rows"])]
            right.bar(x + width / 2, b_lift, width=width, color=ALONE, label="party B alone")
        right.axhline(1.0, color=CHANCE, linestyle=":", label="average rate")
        right.set_xticks(x)
        right.set_xlabel(f"score band (1 = highest {100 // n_bands}% of scores)")
        right.set_ylabel("lift (band's positive rate ÷ average)")
        right.set_title(f"Lift per {'decile' if n_bands == 10 else 'band'}")
        right.legend(loc="upper right")
        right.grid(alpha=0.3, axis="y")
        if title:
            fig.suptitle(title)
        return _png(fig)


def calibration_and_scores(calibration: dict[str, Any], histogram: dict[str, Any] | None, *,
                           threshold: float | None, title: str = "") -> bytes:
    """Left: observed positive rate against mean predicted probability per bin. Right: scores of each class."""
    with plt.rc_context(STYLE):
        fig, (left, right) = _figure()
        predicted, observed = calibration["predicted"], calibration["observed"]
        high = max(max(predicted, default=0), max(observed, default=0), 0.05) * 1.1
        high = min(1.0, high)
        left.plot([0, high], [0, high], color=CHANCE, linestyle=":", label="perfectly calibrated")
        left.plot(predicted, observed, marker="o", markersize=7, color=FEDERATED, linewidth=2,
                  label="federated model")
        for p, o, r in zip(predicted, observed, calibration["rows"]):
            left.annotate(f"{r:,} rows", (p, o), xytext=(7, 4), textcoords="offset points", fontsize=9,
                          color="#555555")
        left.set_xlim(0, high)
        left.set_ylim(0, high)
        left.set_xlabel("mean predicted probability in the bin")
        left.set_ylabel("observed share of label 1")
        for axis in (left.xaxis, left.yaxis):
            axis.set_major_locator(MaxNLocator(6, steps=[1, 2, 5, 10]))
            axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        left.set_title("Calibration (rows per bin marked)")
        left.legend(loc="upper left")
        left.grid(alpha=0.3)
        if histogram is not None:
            edges = np.asarray(histogram["edges"])
            pos = np.asarray(histogram["positives"], dtype=float)
            neg = np.asarray(histogram["negatives"], dtype=float)
            # label 0 filled, label 1 as an outline on top: both stay visible where they overlap
            right.stairs(neg / max(1.0, neg.sum()), edges, fill=True, alpha=0.35, color=ALONE,
                         label=f"label 0 ({int(neg.sum()):,} rows)")
            right.stairs(pos / max(1.0, pos.sum()), edges, linewidth=2, color=FEDERATED,
                         label=f"label 1 ({int(pos.sum()):,} rows)")
            if threshold is not None:
                right.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
            right.set_xlabel("predicted probability")
            right.set_ylabel("share of the class's rows")
            right.set_ylim(bottom=0)
            for axis in (right.xaxis, right.yaxis):
                axis.set_major_locator(MaxNLocator(6, steps=[1, 2, 5, 10]))
                axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            right.set_title("Scores by actual label")
            right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
            right.grid(alpha=0.3)
        else:
            right.set_visible(False)
        if title:
            fig.suptitle(title)
        return _png(fig)


def residuals(actual: Sequence[float], predicted: Sequence[float], *, title: str = "") -> bytes:
    """Left: predicted against actual. Right: residual (actual − predicted) against predicted."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    with plt.rc_context(STYLE):
        fig, (left, right) = _figure()
        left.scatter(actual, predicted, s=12, alpha=0.55, color=FEDERATED)
        low = float(min(actual.min(), predicted.min()))
        high = float(max(actual.max(), predicted.max()))
        left.plot([low, high], [low, high], color=CHANCE, linestyle=":", label="perfect prediction")
        left.set_xlabel("actual")
        left.set_ylabel("predicted")
        left.set_title("Predicted against actual")
        left.legend(loc="upper left")
        left.grid(alpha=0.3)
        right.scatter(predicted, actual - predicted, s=12, alpha=0.55, color=FEDERATED)
        right.axhline(0.0, color=CHANCE, linestyle=":")
        right.set_xlabel("predicted")
        right.set_ylabel("residual (actual − predicted)")
        right.set_title("Residuals")
        right.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        return _png(fig)


def class_rocs(classes: Sequence[dict[str, Any]], aucs: dict[str, float | None], *,
               title: str = "ROC curve of each class against the rest") -> bytes:
    """One ROC line per class of a one-vs-rest model, each labelled with its AUC."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FULL_WIDTH / 2 + 1, 5), layout="constrained")
        for i, curve in enumerate(classes):
            auc = aucs.get(curve["class"])
            ax.plot(curve["fpr"], curve["tpr"], color=f"C{i}", linewidth=1.8,
                    label=f"class {curve['class']}" + (f" (AUC {auc:.3f})" if auc is not None else ""))
        ax.plot([0, 1], [0, 1], color=CHANCE, linestyle=":", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        return _png(fig)


def roc(fpr: Sequence[float], tpr: Sequence[float], auc: float | None, *, title: str = "ROC curve",
        baseline: tuple[Sequence[float], Sequence[float], float | None] | None = None) -> bytes:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(fpr, tpr, label=f"federated model (AUC {auc:.3f})" if auc is not None else "federated model")
        if baseline is not None:
            b_fpr, b_tpr, b_auc = baseline
            ax.plot(b_fpr, b_tpr, label=f"party B alone (AUC {b_auc:.3f})" if b_auc is not None else "party B alone")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title)
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        return _png(fig)


def predicted_vs_actual(actual: Sequence[float], predicted: Sequence[float], *,
                        title: str = "Predicted against actual") -> bytes:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(actual, predicted, s=8, alpha=0.5)
        low = float(min(np.min(actual), np.min(predicted)))
        high = float(max(np.max(actual), np.max(predicted)))
        ax.plot([low, high], [low, high], color="grey", linestyle=":", label="perfect prediction")
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
        return _png(fig)
