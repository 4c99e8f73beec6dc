"""Score bands and the scorecard's health: population stability, KS and Gini.

PSI compares the shares of rows per band now ("actual") with the shares at
training ("expected"): PSI = Σ (a_i − e_i)·ln(a_i / e_i). Read it with the
usual bands: < 0.1 stable, 0.1–0.25 watch, ≥ 0.25 alarm. The same formula over
one characteristic's bins is its characteristic stability index (CSI).

Score bands are equal-frequency on the training scores; band i is
[edges[i-1], edges[i]) with ±inf at the ends, the same convention as
:class:`~vfl.ml.scorecard.binning.Bins`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vfl.errors import ConfigError, DataError
from vfl.ml.metrics import auc, ks
from vfl.ml.scorecard.points import Scaling, rounding_warning

#: A band share of 0 is replaced by this before the logarithm, so an empty band adds a large but finite term.
EMPTY_SHARE = 1e-4


def _shares(counts: np.ndarray, what: str) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
        raise DataError(f"{what} must be one row of counts ≥ 0 with a positive sum, got {c.tolist()!r}")
    return c / c.sum()


def population_stability(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI between two count vectors over the same bands (shares are computed here).

    A share of 0 is replaced by 1e-4 (the shares are not renormalised); without
    that an empty band would make PSI infinite.
    """
    e, a = _shares(expected, "expected counts"), _shares(actual, "actual counts")
    if e.shape != a.shape:
        raise DataError(f"PSI needs counts over the same bands, got {len(e)} expected and {len(a)} actual")
    e, a = np.where(e > 0, e, EMPTY_SHARE), np.where(a > 0, a, EMPTY_SHARE)
    return float(np.sum((a - e) * np.log(a / e)))


def stability_status(value: float) -> str:
    """"stable" < 0.1 ≤ "watch" < 0.25 ≤ "alarm"."""
    if not math.isfinite(value) or value < 0:
        raise DataError(f"a stability index is a finite number ≥ 0, got {value!r}")
    return "stable" if value < 0.1 else "watch" if value < 0.25 else "alarm"


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise DataError(f"{what} must be one column of finite numbers")
    return v


def _edges(edges: Sequence[float]) -> np.ndarray:
    e = np.asarray(list(edges), dtype=np.float64)
    if e.ndim != 1 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise DataError(f"band edges must be finite and strictly increasing, got {e.tolist()!r}")
    return e


def score_band_edges(scores: np.ndarray, bands: int = 10) -> tuple[float, ...]:
    """Inner edges of equal-frequency bands of the training scores (at most bands − 1, duplicates dropped).

    An edge at or below the lowest score would only make an empty first band, so it is dropped too.
    """
    if not isinstance(bands, (int, np.integer)) or bands < 1:
        raise ConfigError(f"the number of score bands must be an integer ≥ 1, got {bands!r}")
    s = _finite(scores, "scores")
    if len(s) == 0:
        raise DataError("score bands need at least one training score")
    edges = np.unique(np.quantile(s, np.arange(1, bands) / bands))
    return tuple(float(v) for v in edges if v > s.min())


def band_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Rows per band (int64, len(edges) + 1)."""
    e = _edges(edges)
    return np.bincount(np.searchsorted(e, _finite(values, "scores"), side="right"),
                       minlength=len(e) + 1).astype(np.int64)


def band_table(scores: np.ndarray, labels: np.ndarray, edges: Sequence[float]) -> list[dict[str, Any]]:
    """Per band: band, lower, upper (None where unbounded), rows, events (label 1), bad_rate (None if empty)."""
    e = _edges(edges)
    s = _finite(scores, "scores")
    y = np.asarray(labels)
    if y.shape != s.shape:
        raise DataError(f"a band table needs one label per score: {len(s)} scores, labels of shape {y.shape}")
    index = np.searchsorted(e, s, side="right")
    rows = np.bincount(index, minlength=len(e) + 1)
    events = np.bincount(index[y == 1], minlength=len(e) + 1)
    bounds = [None, *[float(v) for v in e], None]
    return [{"band": i, "lower": bounds[i], "upper": bounds[i + 1], "rows": int(rows[i]), "events": int(events[i]),
             "bad_rate": float(events[i] / rows[i]) if rows[i] else None} for i in range(len(e) + 1)]


def ks_statistic(labels: np.ndarray, scores: np.ndarray) -> float:
    """max |CDF_event − CDF_non-event| over score thresholds (the sign of the score does not matter)."""
    value = ks(np.asarray(labels), _finite(scores, "scores"))
    if value is None:
        raise DataError("KS needs rows of both classes (events and non-events)")
    return value


def gini(labels: np.ndarray, scores: np.ndarray) -> float:
    """2·AUC − 1 where a HIGHER score means MORE risk (more likely an event).

    Scorecard points run the other way (higher = safer): pass ``-points`` to get
    the usual positive Gini of a working scorecard.
    """
    value = auc(np.asarray(labels), _finite(scores, "scores"))
    if value is None:
        raise DataError("Gini needs rows of both classes (events and non-events)")
    return 2 * value - 1


def score_summary(scores: np.ndarray, labels: np.ndarray, rows: np.ndarray, predictions: np.ndarray, *,
                  bands: int, split: str, scaling: Scaling) -> dict[str, Any]:
    """The integer scores on the metric split ``rows``: AUC (higher score = lower risk) before and after rounding to
    points, KS, Gini, ``bands`` equal-frequency bands of every row's score with their bad rates (and the rows per band,
    the reference of the score's PSI), the spread, and a warning when rounding moved the AUC too far.

    ``predictions`` rank the rows as the unrounded model does; ``scaling`` is the job's
    :class:`~vfl.ml.scorecard.points.Scaling` (for the warning's advice).
    """
    scores = np.asarray(scores)
    risk = -scores[rows].astype(np.float64)  # the metrics rank by risk; a higher score is a lower risk
    auc_points, auc_model = auc(labels[rows], risk), auc(labels[rows], predictions[rows])
    edges = score_band_edges(scores, bands)
    warning = rounding_warning(auc_points, auc_model, scaling)
    return {
        "split": split,
        "warnings": [] if warning is None else [warning],
        "auc": auc_points,
        "auc_before_rounding": auc_model,
        "ks": ks_statistic(labels[rows], risk),
        "gini": gini(labels[rows], risk),
        "band_edges": [float(e) for e in edges],
        "bands": band_table(scores[rows], labels[rows], edges),
        "reference_counts": band_counts(scores, edges).tolist(),
        "distribution": {"min": int(scores.min()), "p10": float(np.percentile(scores, 10)),
                         "median": float(np.median(scores)), "p90": float(np.percentile(scores, 90)),
                         "max": int(scores.max())},
    }
