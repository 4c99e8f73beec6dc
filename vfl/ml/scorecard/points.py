"""Scaling a logit to points, and the points table each party keeps for its own characteristics.

Scaling (R ``scorecard`` convention): odds = P(event)/P(non-event), and

    score = offset − factor · logit,   factor = pdo / ln 2,   offset = points0 + factor · ln(odds0)

so a row at odds ``odds0`` scores ``points0`` and doubling the odds of an event
costs ``pdo`` points (higher score = lower risk).

The model's logit is a sum: the label party's intercept plus, per characteristic,
the contribution of the bin the row falls in. So the score splits the same way:
the **base points** ``round(offset − factor · intercept)`` belong to the label
party, and each bin of each characteristic is worth ``round(−factor · contribution)``
points, kept by the party that owns the characteristic. Each party's total is an
integer it can send at serving in place of its partial logit.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vfl.errors import ConfigError, DataError
from vfl.ml.scorecard.binning import Bins


@dataclass(frozen=True)
class Scaling:
    """points0 points at odds ``odds0`` (of an event), ``pdo`` points to double the odds."""

    points0: float = 600.0
    odds0: float = 1 / 19
    pdo: float = 50.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.points0):
            raise ConfigError(f"points0 must be a finite number, got {self.points0!r}")
        if not (math.isfinite(self.odds0) and self.odds0 > 0):
            raise ConfigError(f"odds0 (event : non-event odds at points0) must be > 0, got {self.odds0!r}; "
                              "e.g. 1/19 for a 5% bad rate")
        if not (math.isfinite(self.pdo) and self.pdo > 0):
            raise ConfigError(f"pdo (points to double the odds) must be > 0, got {self.pdo!r}; e.g. 50 or 20")

    @property
    def factor(self) -> float:
        """Points per unit of logit: pdo / ln 2."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """The score of logit 0: points0 + factor · ln(odds0)."""
        return self.points0 + self.factor * math.log(self.odds0)

    def score(self, logit: np.ndarray) -> np.ndarray:
        """offset − factor · logit (unrounded): higher means lower risk."""
        return self.offset - self.factor * np.asarray(logit, dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return {"points0": self.points0, "odds0": self.odds0, "pdo": self.pdo}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaling:
        try:
            return cls(float(d["points0"]), float(d["odds0"]), float(d["pdo"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"a scaling needs numbers points0, odds0 and pdo, got {dict(d)!r}") from exc


@dataclass(frozen=True, eq=False)
class Characteristic:
    """One characteristic's contribution to the logit per bin.

    ``logit`` has one value per bin (``bins.count``, missing included) and already
    holds this characteristic's share of its party's constant, so the party's
    partial logit of a row is the sum of its characteristics' values at the row's bins.
    """

    name: str
    bins: Bins
    logit: np.ndarray

    def __post_init__(self) -> None:
        logit = np.array(self.logit, dtype=np.float64)  # a private copy: the dataclass is frozen
        if logit.shape != (self.bins.count,) or not np.all(np.isfinite(logit)):
            raise DataError(f"characteristic {self.name!r} needs one finite logit contribution per bin "
                            f"({self.bins.count}, missing included), got shape {logit.shape}")
        logit.setflags(write=False)
        object.__setattr__(self, "logit", logit)


def _frozen_points(values: Any, name: str, count: int) -> np.ndarray:
    points = np.asarray(values)
    if points.shape != (count,) or not (np.issubdtype(points.dtype, np.integer)
                                        or np.all(np.equal(np.mod(points, 1), 0))):
        raise DataError(f"characteristic {name!r} needs one integer points value per bin ({count}), "
                        f"got {points.tolist()!r}")
    out = points.astype(np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class PointsTable:
    """One party's points table: its characteristics, their bins, integer points per bin and a reason code each.

    Invariant: ``names``, ``bins``, ``points`` and ``codes`` align, ``points[j]``
    has ``bins[j].count`` int64 values (read-only), names and codes are unique.
    Two tables are equal when their :meth:`to_dict` is.
    """

    party: str
    names: tuple[str, ...]
    bins: tuple[Bins, ...]
    points: tuple[np.ndarray, ...]
    codes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names, bins = tuple(self.names), tuple(self.bins)
        codes = tuple(self.codes) or tuple(f"{self.party}:{n}" for n in names)
        if not (len(names) == len(bins) == len(self.points) == len(codes)):
            raise DataError(f"the points table of {self.party!r} needs one bins, points and code per characteristic; "
                            f"got {len(names)} names, {len(bins)} bins, {len(self.points)} points, {len(codes)} codes")
        if len(set(names)) != len(names) or len(set(codes)) != len(codes):
            raise DataError(f"the points table of {self.party!r} repeats a characteristic or a reason code; "
                            "each must be unique")
        points = tuple(_frozen_points(p, n, b.count) for p, n, b in zip(self.points, names, bins))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "codes", codes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointsTable) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # holds arrays: equal tables need not hash alike

    def rows(self) -> list[dict[str, Any]]:
        """One dict per bin: characteristic, bin (index), label, lower, upper, points, code.

        ``lower``/``upper`` are None where the bin is unbounded and for the missing
        bin, so the rows are JSON-safe.
        """
        out = []
        for name, bins, points, code in zip(self.names, self.bins, self.points, self.codes):
            for b, (label, interval) in enumerate(zip(bins.labels(), bins.intervals())):
                lower, upper = interval if interval is not None else (None, None)
                out.append({
                    "characteristic": name, "bin": b, "label": label,
                    "lower": lower if lower is not None and math.isfinite(lower) else None,
                    "upper": upper if upper is not None and math.isfinite(upper) else None,
                    "points": int(points[b]), "code": code,
                })
        return out

    def to_csv(self) -> str:
        """The table as CSV text with a header row; empty cells where a bound is unbounded or missing."""
        buffer = io.StringIO()
        columns = ["characteristic", "bin", "label", "lower", "upper", "points", "code"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())  # None is written as an empty cell
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: party and, per characteristic, its name, bins, points and code."""
        return {"party": self.party, "characteristics": [
            {"name": n, "bins": b.to_dict(), "points": [int(v) for v in p], "code": c}
            for n, b, p, c in zip(self.names, self.bins, self.points, self.codes)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PointsTable:
        try:
            items = list(d["characteristics"])
            return cls(str(d["party"]), tuple(str(c["name"]) for c in items),
                       tuple(Bins.from_dict(c["bins"]) for c in items),
                       tuple(np.asarray(c["points"]) for c in items), tuple(str(c["code"]) for c in items))
        except (KeyError, TypeError) as exc:
            raise DataError("a points table needs 'party' and 'characteristics' with name, bins, points and code "
                            "each; the stored table is damaged or from another format") from exc

    def bin_indices(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """(rows, characteristics) int64: the bin of each row in each characteristic, from raw columns by name."""
        absent = [n for n in self.names if n not in columns]
        if absent:
            raise DataError(f"scoring with the points table of {self.party!r} needs the column(s) {absent}; "
                            "score the same characteristics the table was built on")
        if not self.names:
            return np.zeros((0, 0), dtype=np.int64)
        index = [b.assign(columns[n]) for n, b in zip(self.names, self.bins)]
        if len({len(i) for i in index}) != 1:
            raise DataError(f"the columns scored with the points table of {self.party!r} differ in length")
        return np.column_stack(index).astype(np.int64)

    def _checked(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.shape[1] != len(self.names) or not np.issubdtype(idx.dtype, np.integer):
            raise DataError(f"bin indices must be integers of shape (rows, {len(self.names)}), got {idx.shape}")
        for j, b in enumerate(self.bins):
            if len(idx) and (idx[:, j].min() < 0 or idx[:, j].max() >= b.count):
                raise DataError(f"bin indices of {self.names[j]!r} must lie in [0, {b.count}); use bin_indices")
        return idx

    def _received(self, indices: np.ndarray) -> np.ndarray:
        idx = self._checked(indices)
        if not self.names:
            return np.zeros((len(idx), 0), dtype=np.int64)
        return np.column_stack([p[idx[:, j]] for j, p in enumerate(self.points)]).astype(np.int64)

    def totals(self, indices: np.ndarray) -> np.ndarray:
        """(rows,) int64: each row's points summed over this party's characteristics."""
        return self._received(indices).sum(axis=1, dtype=np.int64)

    def shortfalls(self, indices: np.ndarray) -> np.ndarray:
        """(rows, characteristics) int64 ≥ 0: the characteristic's best points minus the points the row got."""
        best = np.array([int(p.max()) for p in self.points], dtype=np.int64)
        return best[None, :] - self._received(indices)

    def range(self) -> tuple[int, int]:
        """The smallest and largest total this party can give a row."""
        return int(sum(int(p.min()) for p in self.points)), int(sum(int(p.max()) for p in self.points))


def points_table(party: str, characteristics: Sequence[Characteristic], scaling: Scaling,
                 codes: Mapping[str, str] | None = None) -> PointsTable:
    """Points per bin = rint(−factor · logit contribution), int64; reason codes default to ``f"{party}:{name}"``."""
    names = [c.name for c in characteristics]
    unknown = sorted(set(codes or {}) - set(names))
    if unknown:
        raise ConfigError(f"reason codes given for {unknown}, which are not characteristics of {party!r} "
                          f"({', '.join(names) or 'none'}); check the spelling")
    return PointsTable(
        party, tuple(names), tuple(c.bins for c in characteristics),
        tuple(np.rint(-scaling.factor * c.logit).astype(np.int64) for c in characteristics),
        tuple((codes or {}).get(n, f"{party}:{n}") for n in names),
    )


def base_points(intercept_logit: float, scaling: Scaling) -> int:
    """The label party's base points: rint(offset − factor · intercept)."""
    if not math.isfinite(intercept_logit):
        raise DataError(f"the intercept must be a finite logit, got {intercept_logit!r}")
    return int(np.rint(scaling.offset - scaling.factor * intercept_logit))


#: Rounding to integer points may move the AUC by at most this much before a job warns (issue 28's bound).
ROUNDING_AUC_TOLERANCE = 0.001


def rounding_warning(auc_points: float | None, auc_exact: float | None, scaling: Scaling) -> str | None:
    """A warning when rounding to integer points moved the AUC by more than :data:`ROUNDING_AUC_TOLERANCE`.

    It happens when most applicants' scores lie within a few points of each other (a weak model at this
    scale): applicants one point apart in the exact score tie once rounded. Finer points (a larger ``pdo``)
    keep them apart.
    """
    if auc_points is None or auc_exact is None or abs(auc_points - auc_exact) <= ROUNDING_AUC_TOLERANCE + 1e-12:
        return None
    return (f"rounding to integer points moved the AUC from {auc_exact:.4f} to {auc_points:.4f} (more than "
            f"{ROUNDING_AUC_TOLERANCE}): the scores are bunched at {scaling.pdo:g} points to double the odds; "
            f"a larger pdo (say {2 * scaling.pdo:g}) gives finer points")
