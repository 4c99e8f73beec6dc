"""The three figures of a job, as PNG bytes.

* the training loss per epoch, several jobs or domains on one figure;
* each party's parameter trajectories, one panel per party;
* the ROC curve for logistic regression, or predicted against actual for linear.

matplotlib is an optional dependency (the ``report`` extra); importing this
module without it raises a ConfigError that says how to install it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from vfl.errors import ConfigError

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("figures need matplotlib: pip install 'vfl[report]'") from exc


#: panels per row of the parameter figure; a wider figure shrinks past reading in the report's 520 px
MAX_PANEL_COLUMNS = 3


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def loss_curves(curves: dict[str, Sequence[float]], *, title: str = "Training loss per epoch",
                validation: dict[str, Sequence[float]] | None = None) -> bytes:
    """One line per job or domain; dashed lines for validation loss when given."""
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


def parameter_trajectories(histories: dict[str, tuple], *, title: str = "Parameter trajectories per epoch") -> bytes:
    """One panel per party; one line per parameter, its value after each epoch.

    Each value is ``(names, history)`` or ``(names, history, y-axis label)``.
    Panels wrap after :data:`MAX_PANEL_COLUMNS`, so k feature parties stay readable.
    """
    n = max(len(histories), 1)
    columns = min(n, MAX_PANEL_COLUMNS)
    rows = math.ceil(n / columns)
    # beyond two panels the titles of panels and figure collide; constrained layout spaces them (and leaves
    # the two-party figure as it always was)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.2 * rows), squeeze=False,
                             layout="constrained" if n > 2 else None)
    for ax in axes.flat[len(histories):]:  # the last row may be short
        ax.set_visible(False)
    for ax, (party, panel) in zip(axes.flat, histories.items()):
        names, history = panel[0], panel[1]
        ylabel = panel[2] if len(panel) > 2 else "weight (standardised features)"
        values = np.asarray(history, dtype=np.float64)
        epochs = np.arange(1, len(values) + 1)
        for j, name in enumerate(names):
            # 20 distinct colours, then the same colours dashed, so no two of 40 lines look alike
            ax.plot(epochs, values[:, j], label=name, color=plt.cm.tab20(j % 20),
                    linestyle=("-", "--", ":")[(j // 20) % 3])
        ax.set_title(party)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(names) <= 15:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return _png(fig)


def roc(fpr: Sequence[float], tpr: Sequence[float], auc: float | None, *, title: str = "ROC curve",
        baseline: tuple[Sequence[float], Sequence[float], float | None] | None = None) -> bytes:
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
