"""How each party turns its binned characteristics into model columns, and its trained weights into points.

* Party B codes each of its characteristics by the **weight of evidence** of its
  bin (one column each). B computed the WOE from its own labels, so nothing new
  is learnt by anyone. Its coefficients are constrained to be **negative**: a
  higher WOE (more goods per bad) must never raise the log-odds of an event.
* A feature party codes each characteristic by **bin indicators** (one column
  per bin, missing bin included). WOE coding would need the WOE of its bins,
  a label statistic it must not learn; indicators need none. The coefficients
  of the ordered (finite) bins are constrained to move in the characteristic's
  monotone direction, so the fitted points are monotone like WOE coding's. The
  feature party learns its own coefficients, which it learns from any training.

Both constraints are projections each party applies to its own weights after
every update (:func:`vfl.ml.scorecard.constraints.project`); the protocol does
not change.

Points: a party's partial score u = Σ_j standardised columns · θ equals, per
characteristic j, the logit contribution of the bin the row falls in plus a
share of the party's centring constant; each bin's points are
``round(-factor · contribution)`` (:mod:`vfl.ml.scorecard.points`).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from vfl.errors import DataError
from vfl.ml.scaling import Standardizer
from vfl.ml.scorecard.binning import Bins, indicator_columns, woe_column
from vfl.ml.scorecard.config import SelectionSettings
from vfl.ml.scorecard.constraints import Constraint, project
from vfl.ml.scorecard.points import Characteristic
from vfl.ml.scorecard.selection import correlation_drop, vif_drop

Kind = Literal["woe", "indicators"]


@dataclass(frozen=True)
class Encoding:
    """One party's kept characteristics, their bins and how they become columns.

    ``woe`` holds each characteristic's WOE per bin (party B, ``kind="woe"``);
    ``directions`` each characteristic's event-rate direction across its finite
    bins ("increasing", "decreasing" or "none").
    """

    kind: Kind
    bins: tuple[Bins, ...]
    directions: tuple[str, ...]
    woe: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        if len(self.directions) != len(self.bins) or (self.kind == "woe" and len(self.woe) != len(self.bins)):
            raise DataError("a scorecard encoding needs one direction (and for WOE coding one WOE table) per "
                            "characteristic")

    @property
    def names(self) -> list[str]:
        """The characteristics, in column order."""
        return [b.name for b in self.bins]

    @property
    def column_names(self) -> list[str]:
        if self.kind == "woe":
            return [f"{b.name}:woe" for b in self.bins]
        return [f"{b.name}:{label}" for b in self.bins for label in b.labels()]

    def _slices(self) -> list[slice]:
        """The model columns of each characteristic."""
        if self.kind == "woe":
            return [slice(j, j + 1) for j in range(len(self.bins))]
        starts = np.cumsum([0] + [b.count for b in self.bins])
        return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]

    def columns_in(self, feature_names: Sequence[str]) -> list[int]:
        """Where this encoding's characteristics sit in a party's table with these column names."""
        index = {n: i for i, n in enumerate(feature_names)}
        missing = [n for n in self.names if n not in index]
        if missing:
            raise DataError(f"the table lacks the characteristics {missing} the scorecard was binned on; "
                            "use the dataset the job ran on")
        return [index[n] for n in self.names]

    def design_from(self, features: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        """The model columns from a party's whole raw table (its characteristics picked by name)."""
        return self.design(np.asarray(features, dtype=np.float64)[:, self.columns_in(feature_names)])

    def subset(self, names: Sequence[str]) -> Encoding:
        """The same encoding for only ``names`` (in that order)."""
        at = [self.names.index(n) for n in names]
        return Encoding(self.kind, tuple(self.bins[i] for i in at), tuple(self.directions[i] for i in at),
                        tuple(self.woe[i] for i in at) if self.kind == "woe" else ())

    def design(self, raw: np.ndarray) -> np.ndarray:
        """The model columns for raw characteristic values (one column per characteristic, in ``names`` order)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(self.bins):
            raise DataError(f"the scorecard needs {len(self.bins)} characteristics ({', '.join(self.names)}), "
                            f"got {raw.shape[-1] if raw.ndim == 2 else 'no table'}; use the columns it was binned on")
        if self.kind == "woe":
            return np.column_stack([woe_column(b, w, raw[:, j]) for j, (b, w) in enumerate(zip(self.bins, self.woe))])
        return np.hstack([indicator_columns(b, raw[:, j]) for j, b in enumerate(self.bins)])

    def bin_indices(self, raw: np.ndarray) -> np.ndarray:
        """(rows, characteristics): the bin each row falls in."""
        return np.column_stack([b.assign(np.asarray(raw, dtype=np.float64)[:, j]) for j, b in enumerate(self.bins)])

    def constraints(self) -> list[Constraint]:
        """B: every WOE coefficient ≤ 0. A feature party: its ordered bins' coefficients monotone."""
        out: list[Constraint] = []
        for cols, b, direction in zip(self._slices(), self.bins, self.directions):
            if self.kind == "woe":
                out.append(Constraint((cols.start,), "sign", "negative"))
            elif direction in ("increasing", "decreasing") and b.count > 2:
                finite = tuple(range(cols.start, cols.start + b.count - 1))  # the missing bin is not ordered
                out.append(Constraint(finite, "monotone", direction))
        return out

    def projection(self, scale: np.ndarray, extra_columns: int = 0):
        """The projection a training role applies after each step (``extra_columns``: B's intercept, untouched)."""
        constraints = self.constraints()
        full_scale = np.concatenate([np.asarray(scale, dtype=np.float64), np.ones(extra_columns)])

        def apply(weights: np.ndarray) -> np.ndarray:
            return project(weights, full_scale, constraints)

        return apply

    def characteristics(self, scaler: Standardizer, weights: np.ndarray) -> list[Characteristic]:
        """Each characteristic's logit contribution per bin, from this party's trained (standardised) weights.

        Σ over characteristics of the contribution of each row's bin equals the
        party's partial score u = (design − mean)/scale · weights exactly.
        """
        raw = np.asarray(weights, dtype=np.float64)[: len(scaler.scale)] / scaler.scale
        out = []
        for cols, b, j in zip(self._slices(), self.bins, range(len(self.bins))):
            r, mean = raw[cols], scaler.mean[cols]
            constant = -float(r @ mean)
            if self.kind == "woe":
                per_bin = r[0] * self.woe[j] + constant
            else:
                per_bin = r + constant
            out.append(Characteristic(b.name, b, np.asarray(per_bin, dtype=np.float64)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "bins": [b.to_dict() for b in self.bins], "directions": list(self.directions),
                "woe": [w.tolist() for w in self.woe]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Encoding:
        return cls(data["kind"], tuple(Bins.from_dict(b) for b in data["bins"]), tuple(data["directions"]),
                   tuple(np.asarray(w, dtype=np.float64) for w in data.get("woe", [])))


def own_selection(encoding: Encoding, features: np.ndarray, feature_names: Sequence[str],
                  settings: SelectionSettings, priority: Mapping[str, float]) -> Encoding:
    """A party's own selection among its characteristics: correlation, then VIF, on their coded values.

    Party B measures its WOE columns; a feature party its ordered bin numbers (it has no WOE, and breaks
    ties by its own ``priority``, not by an IV it does not know). No value leaves the party.
    """
    names = encoding.names
    if len(names) < 2 or (settings.max_correlation is None and settings.max_vif is None):
        return encoding
    raw = np.asarray(features, dtype=np.float64)[:, encoding.columns_in(feature_names)]
    values = encoding.design(raw) if encoding.kind == "woe" else encoding.bin_indices(raw).astype(np.float64)
    kept = names
    if settings.max_correlation is not None:
        kept = correlation_drop(values, names, max_abs_corr=settings.max_correlation, priority=priority)
    if settings.max_vif is not None and len(kept) > 1:
        kept = vif_drop(values[:, [names.index(n) for n in kept]], kept, max_vif=settings.max_vif, priority=priority)
    return encoding.subset(kept)
