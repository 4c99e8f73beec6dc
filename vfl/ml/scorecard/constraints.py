"""Sign and monotonicity constraints on a party's coefficients, kept by projection after every update.

A scorecard's coefficients must point one way: a WOE coefficient never makes a
better bin riskier, and the coefficients of a characteristic's ordered bins
move in its monotone direction. Training keeps this by projected gradient
descent: after each update every party projects its OWN weights onto the
allowed set. The projection is local, so the protocol needs no new step.

The weights live on standardised columns (x − mean)/scale, but the constraints
are about the raw coefficients r = weights/scale (the points of a bin are
proportional to r, not to the weight). Signs do not care about the scale; a
monotone order does, and the Euclidean projection in the weights' own space is
an isotonic regression of r weighted by scale².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vfl.errors import ConfigError, DataError


def isotonic(values: np.ndarray, direction: Literal["increasing", "decreasing"],
             weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted least-squares projection of ``values`` onto monotone sequences (pool adjacent violators).

    Returns the sequence f that minimises Σ weights_i (values_i − f_i)² subject to
    f non-decreasing ("increasing") or non-increasing ("decreasing"). Weights must
    be positive; None means all 1. Each pooled block takes its weighted mean.
    """
    if direction not in ("increasing", "decreasing"):
        raise ConfigError(f"isotonic direction must be 'increasing' or 'decreasing', got {direction!r}")
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if v.ndim != 1 or w.shape != v.shape:
        raise DataError(f"isotonic regression needs a 1-D sequence and one weight per value, "
                        f"got {v.shape} and {w.shape}")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w)) and np.all(w > 0)):
        raise DataError("isotonic regression needs finite values and finite weights > 0")
    # A decreasing fit of v is the negated increasing fit of −v.
    sign = 1.0 if direction == "increasing" else -1.0
    means: list[float] = []
    masses: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(sign * v, w):
        means.append(float(value))
        masses.append(float(weight))
        lengths.append(1)
        # Pool the last two blocks while they violate the order; the pooled mean may violate the block before.
        while len(means) > 1 and means[-2] > means[-1]:
            mass = masses[-2] + masses[-1]
            mean = (means[-2] * masses[-2] + means[-1] * masses[-1]) / mass
            length = lengths[-2] + lengths[-1]
            del means[-1], masses[-1], lengths[-1]
            means[-1], masses[-1], lengths[-1] = mean, mass, length
    return sign * np.repeat(np.asarray(means), lengths)


@dataclass(frozen=True)
class Constraint:
    """A rule on some of a party's raw coefficients.

    ``columns`` are positions in the party's weight vector. ``kind="sign"`` with
    direction "positive" (r ≥ 0) or "negative" (r ≤ 0) holds for each listed
    column; ``kind="monotone"`` with "increasing"/"decreasing" holds across the
    listed columns in the given order.
    """

    columns: tuple[int, ...]
    kind: Literal["sign", "monotone"]
    direction: Literal["positive", "negative", "increasing", "decreasing"]

    def __post_init__(self) -> None:
        allowed = {"sign": ("positive", "negative"), "monotone": ("increasing", "decreasing")}
        if self.kind not in allowed:
            raise ConfigError(f"a constraint's kind is 'sign' or 'monotone', got {self.kind!r}")
        if self.direction not in allowed[self.kind]:
            raise ConfigError(f"a {self.kind} constraint's direction is one of {allowed[self.kind]}, "
                              f"got {self.direction!r}")
        columns = tuple(int(c) for c in self.columns)
        if not columns or min(columns) < 0 or len(set(columns)) != len(columns):
            raise ConfigError(f"a constraint needs distinct column positions ≥ 0, got {self.columns!r}")
        object.__setattr__(self, "columns", columns)


def project(weights: np.ndarray, scale: np.ndarray, constraints: Sequence[Constraint]) -> np.ndarray:
    """Project standardised-column ``weights`` so the raw coefficients r = weights/scale obey ``constraints``.

    ``scale`` > 0 is the standardiser's scale per column. Monotone constraints are
    applied first (isotonic regression of r with weights scale², the Euclidean
    projection in weight space), then sign constraints (clipping r at 0). When a
    sign constraint covers all of a monotone constraint's columns, clipping the
    isotonic fit keeps it monotone and is the exact projection onto both (a
    sign on only part of an ordered run is not). Monotone constraints must not
    share columns. Returns a new array; unlisted columns are untouched.
    """
    w = np.asarray(weights, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    if w.ndim != 1 or s.shape != w.shape:
        raise DataError(f"projection needs one scale per weight, got {w.shape} weights and {s.shape} scales")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise DataError("projection needs finite scales > 0; a constant column is scaled by 1, not 0")
    monotone = [c for c in constraints if c.kind == "monotone"]
    listed = [col for c in monotone for col in c.columns]
    if len(set(listed)) != len(listed):
        raise ConfigError("two monotone constraints share a column; give each column at most one order")
    for c in constraints:
        if max(c.columns) >= len(w):
            raise ConfigError(f"a constraint names column {max(c.columns)} but there are only {len(w)} weights")

    raw = w / s
    for c in monotone:
        cols = list(c.columns)
        raw[cols] = isotonic(raw[cols], c.direction, s[cols] ** 2)  # type: ignore[arg-type]
    for c in constraints:
        if c.kind == "sign":
            cols = list(c.columns)
            raw[cols] = np.maximum(raw[cols], 0.0) if c.direction == "positive" else np.minimum(raw[cols], 0.0)
    out = raw * s
    # Untouched columns keep their exact bits (r·scale need not round-trip to the same float).
    touched = sorted({col for c in constraints for col in c.columns})
    result = w.copy()
    result[touched] = out[touched]
    return result
