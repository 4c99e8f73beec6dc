"""Numbers and settings as a bank analyst reads them: 3,329,245 rows, 58.5%, 0.766, 1.9 s, "all rows".

Every number the job report prints goes through one of these, so the page never
shows ``9.0000``, ``3329245`` or ``null``.
"""

from __future__ import annotations

import math
import time
from typing import Any

#: metrics read as shares of rows, printed as percentages; their differences are percentage points
PERCENT_METRICS = frozenset({"accuracy", "precision", "recall"})
#: metrics where smaller is better (the uplift column says "better" when the federated value is smaller)
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mse", "rmse", "mae"})
METRIC_NAMES = {
    "auc": "AUC", "ks": "KS", "accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
    "log_loss": "log-loss", "brier": "Brier score", "mse": "MSE", "rmse": "RMSE", "mae": "MAE", "r2": "R²",
}


def integer(value: Any) -> str:
    """1234567 → "1,234,567"; None → "—"."""
    if value is None:
        return "—"
    return f"{int(round(float(value))):,}"


def number(value: Any) -> str:
    """A value of unknown kind, readable: 9.0 → "9", 3329245 → "3,329,245", 0.021911 → "0.02191"."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if size >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.1e}"


def percent(share: Any, decimals: int = 1) -> str:
    """0.5851 → "58.5%"."""
    if share is None:
        return "—"
    value = 100 * float(share)
    if 0 < abs(value) < 0.5 * 10 ** -decimals:  # a tiny share is not "0.0%"
        return f"{value:.2g}%"
    return f"{value:.{decimals}f}%"


def metric(name: str, value: Any) -> str:
    """A model metric: AUC 0.766, recall 7.7%, RMSE 1,234 or 0.4213."""
    if value is None:
        return "—"
    if name in PERCENT_METRICS:
        return percent(value)
    if name in ("auc", "ks", "f1", "log_loss", "brier", "r2"):
        return f"{float(value):.3f}"
    return number(float(value))


def metric_change(name: str, federated: Any, alone: Any) -> str:
    """The federated value minus B's alone: "+0.088", "+7.7 pp", and whether that is better."""
    if federated is None or alone is None:
        return "—"
    diff = float(federated) - float(alone)
    if name in PERCENT_METRICS:
        text = f"{100 * diff:+.1f} pp"
        zero = round(100 * diff, 1) == 0
    elif name in ("auc", "ks", "f1", "log_loss", "brier", "r2"):
        text = f"{diff:+.3f}"
        zero = round(diff, 3) == 0
    else:
        text = ("+" if diff >= 0 else "−") + number(abs(diff))
        zero = diff == 0
    text = text.replace("-", "−")
    if zero:
        return text + " (same)"
    better = diff < 0 if name in LOWER_IS_BETTER else diff > 0
    return text + (" (better)" if better else " (worse)")


def seconds(value: Any) -> str:
    """0.582 → "0.58 s", 125 → "2 min 5 s"."""
    if value is None:
        return "—"
    value = float(value)
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(count: Any) -> str:
    """Bytes: 154856 → "154,856 bytes (155 kB)"."""
    if count is None:
        return "—"
    count = int(count)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count:,} bytes ({count / scale:.3g} {unit})"
    return f"{count:,} bytes"


def when(timestamp: Any) -> str:
    """A Unix time as "2026-12-04 14:03 UTC"."""
    if timestamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(timestamp)))


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 epoch", "6 epochs", "1,024 rows". """
    return f"{count:,} {word if count == 1 else (many or word + 's')}"
