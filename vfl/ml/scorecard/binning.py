"""Classing one characteristic into bins, and the weight of evidence and information value of the bins.

The scorecard chain bins in two passes (Siddiqi, *Credit Risk Scorecards*, ch. 6):

1. **Fine classing** (:func:`fine_bins`) looks at the values only: equal-frequency
   cut points, then neighbours merged until every bin holds a minimum share of
   the rows. It needs no label, so a feature party runs it alone.
2. **Coarse classing** (:func:`coarse_groups`) merges adjacent fine bins using the
   event and non-event counts per fine bin: only enforcing the constraints
   (``equal_frequency``), ChiMerge, or the partition with the largest IV
   (``iv_optimal``), optionally with a monotone event rate.

Coarse classing sees counts only, never rows, so the federated protocol can feed
it counts decrypted from encrypted labels. Missing values (NaN) always have a
bin of their own, the last one; it is never merged, so coarse classing is only
ever given the finite bins.

Weight of evidence follows Siddiqi: WOE = ln(%non-events / %events), so a bin
with more goods per bad than the population has a positive WOE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, get_args

import numpy as np

from vfl.errors import ConfigError, DataError

#: Direction of the EVENT RATE (bad rate) as the value grows.
Monotone = Literal["none", "increasing", "decreasing", "auto"]
Method = Literal["equal_frequency", "chimerge", "iv_optimal"]
Direction = Literal["increasing", "decreasing", "none"]

#: Substituted for a zero event or non-event count of a non-empty bin, so its WOE is finite.
ZERO_COUNT = 0.5

# Relative tolerance for comparing event rates and IVs that are equal up to rounding.
_TOL = 1e-12


def _fmt(value: float) -> str:
    """A cut point as a label shows it: 7 rather than 7.0, otherwise the shortest exact repr."""
    return repr(float(value)).removesuffix(".0")


def _as_values(x: np.ndarray, what: str) -> np.ndarray:
    """A 1-D float64 copy of a raw column (NaN = missing)."""
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numeric (NaN for missing); convert or encode the column first") from exc
    if values.ndim != 1:
        raise DataError(f"{what} must be one column (1-D), got shape {values.shape}")
    return values


@dataclass(frozen=True)
class Bins:
    """One characteristic's bins.

    Finite values: bin i is [cuts[i-1], cuts[i]) with -inf/+inf at the ends, i.e.
    ``index = np.searchsorted(cuts, x, side="right")`` (so ±inf land in the end
    bins). Missing values (NaN) always have a bin of their own, the LAST index
    ``len(cuts) + 1``, even when it is empty.

    Invariant: ``cuts`` are finite and strictly increasing (checked on creation),
    so :meth:`to_dict` is JSON-safe.
    """

    name: str
    cuts: tuple[float, ...]

    def __post_init__(self) -> None:
        cuts = tuple(float(c) for c in self.cuts)
        if not all(math.isfinite(c) for c in cuts):
            raise DataError(f"the bins of {self.name!r} have a cut point that is not finite ({cuts}); "
                            "cut points must be finite numbers (the end bins are open already)")
        if any(a >= b for a, b in pairwise(cuts)):
            raise DataError(f"the cut points of {self.name!r} must be strictly increasing, got {cuts}")
        object.__setattr__(self, "cuts", cuts)  # normalise ints and numpy scalars to float

    @property
    def count(self) -> int:
        """Number of bins, the missing bin included: len(cuts) + 2."""
        return len(self.cuts) + 2

    @property
    def missing_index(self) -> int:
        """Index of the missing-value bin: len(cuts) + 1."""
        return len(self.cuts) + 1

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The bin index (int64) of every value of ``x``; NaN goes to :attr:`missing_index`."""
        values = _as_values(x, f"the values of {self.name!r}")
        index = np.searchsorted(np.asarray(self.cuts, dtype=np.float64), values, side="right").astype(np.int64)
        # searchsorted sorts NaN after everything, into the last finite bin: send it to its own bin.
        index[np.isnan(values)] = self.missing_index
        return index

    def intervals(self) -> list[tuple[float, float] | None]:
        """(lower, upper) of each bin, lower inclusive, ±inf at the ends; None for the missing bin."""
        edges = [-math.inf, *self.cuts, math.inf]
        return [*pairwise(edges), None]

    def labels(self) -> list[str]:
        """Human-readable bins, e.g. "[-inf, 3.5)", "[3.5, 7)", "[7, inf)", "missing"."""
        out = []
        for interval in self.intervals():
            if interval is None:
                out.append("missing")
            else:
                lo, hi = interval
                out.append(f"[{'-inf' if lo == -math.inf else _fmt(lo)}, {'inf' if hi == math.inf else _fmt(hi)})")
        return out

    def merged(self, groups: Sequence[int]) -> Bins:
        """Coarser bins: ``groups[i]`` is the coarse index of finite fine bin i.

        ``groups`` has one entry per finite bin (len(cuts) + 1), starts at 0 and
        steps by 0 or 1, so coarse bins are runs of adjacent fine bins. Only the
        cuts between two groups are kept; the missing bin stays as it is.
        """
        g = [int(v) for v in groups]
        if len(g) != len(self.cuts) + 1:
            raise DataError(f"merging the bins of {self.name!r} needs one group per finite bin "
                            f"({len(self.cuts) + 1}), got {len(g)}")
        if g[0] != 0 or any(b - a not in (0, 1) for a, b in pairwise(g)):
            raise DataError(f"groups for {self.name!r} must start at 0 and step by 0 or 1 "
                            f"(runs of adjacent bins only), got {g}")
        # The cut between fine bins i-1 and i is cuts[i-1]; it survives only where the group changes.
        return Bins(self.name, tuple(c for c, a, b in zip(self.cuts, g, g[1:]) if b != a))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cuts": list(self.cuts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bins:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("cuts"), list):
            raise DataError('bins must be a JSON object {"name": str, "cuts": [numbers]}; '
                            "the stored bins are damaged or from another format")
        return cls(d["name"], tuple(d["cuts"]))


def _short_cut(lo: float, hi: float) -> float:
    """A cut c with lo < c ≤ hi (so lo falls below it, hi above): the midpoint, in as few digits as possible.

    Short cuts make readable labels ("[3.5, 7)") and change no row's bin.
    """
    middle = lo / 2 + hi / 2  # halves first: no overflow near the float limit
    for digits in range(1, 18):
        short = float(f"{middle:.{digits}g}")
        if lo < short <= hi:
            return short
    # Adjacent floats have no midpoint strictly between them; the upper value still separates them.
    return middle if lo < middle <= hi else hi


def fine_bins(name: str, x: np.ndarray, *, max_bins: int = 20, min_share: float = 0.05) -> Bins:
    """Equal-frequency fine classing of one raw column. Deterministic, label-free.

    Cut points aim at the shares 1/max_bins, 2/max_bins, ... of the finite values.
    Each sits in the gap between two adjacent distinct values whose cumulative
    share is closest to the target (so equal values are never split), near its
    middle but rounded to few digits; duplicates are dropped. Then adjacent
    finite bins are merged, the smallest bin first, into its smaller neighbour,
    until every finite bin holds at least ``min_share`` of ALL rows (``len(x)``,
    missing included) or only one is left. A column with fewer than two distinct
    finite values gives one finite bin (``cuts == ()``). ±inf count as finite
    values of the end bins; only NaN is missing.

    Invariants of the result: at most ``max_bins`` finite bins, none empty, each
    with ≥ min_share·len(x) rows unless there is only one.
    """
    if not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise ConfigError(f"fine classing of {name!r}: max_bins must be an integer ≥ 1, got {max_bins!r}")
    if not 0 <= min_share <= 1:
        raise ConfigError(f"fine classing of {name!r}: min_share must lie in [0, 1], got {min_share!r}")
    values = _as_values(x, f"the values of {name!r}")
    finite = values[np.isfinite(values)]
    distinct, counts = np.unique(finite, return_counts=True)
    if len(distinct) < 2:
        return Bins(name, ())

    # Cumulative share below each gap k (between distinct[k] and distinct[k+1]).
    below = np.cumsum(counts)[:-1] / len(finite)
    targets = np.arange(1, max_bins) / max_bins
    # The gap closest to each target is one of the two around it in the sorted cumulative shares (lower on ties).
    after = np.clip(np.searchsorted(below, targets), 0, len(below) - 1)
    before = np.clip(after - 1, 0, None)
    closer_before = np.abs(below[before] - targets) <= np.abs(below[after] - targets)
    gaps = np.unique(np.where(closer_before, before, after))
    cuts = [_short_cut(float(distinct[k]), float(distinct[k + 1])) for k in gaps]

    # Bin sizes count ±inf too (they fall in the end bins); NaN is not in any finite bin.
    present = values[~np.isnan(values)]
    sizes = list(np.bincount(np.searchsorted(cuts, present, side="right"), minlength=len(cuts) + 1))
    need = min_share * len(values)
    while len(sizes) > 1 and min(sizes) < need:
        j = int(np.argmin(sizes))  # the smallest bin; the leftmost on ties
        if j == 0:
            left = 0
        elif j == len(sizes) - 1:
            left = j - 1
        else:  # merge into the smaller neighbour, the left one on ties
            left = j - 1 if sizes[j - 1] <= sizes[j + 1] else j
        sizes[left : left + 2] = [sizes[left] + sizes[left + 1]]
        del cuts[left]  # the cut between bins left and left+1
    return Bins(name, tuple(float(c) for c in cuts))


def _check_index(bin_index: np.ndarray, n_bins: int) -> np.ndarray:
    index = np.asarray(bin_index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise DataError(f"bin indices must be one column of integers, got dtype {index.dtype} shape {index.shape}")
    if len(index) and (index.min() < 0 or index.max() >= n_bins):
        raise DataError(f"bin indices must lie in [0, {n_bins}), got {index.min()}..{index.max()}; "
                        "assign the rows with the same Bins whose count is passed")
    return index


def bin_totals(bin_index: np.ndarray, n_bins: int) -> np.ndarray:
    """Rows per bin (int64, length n_bins)."""
    return np.bincount(_check_index(bin_index, n_bins), minlength=n_bins).astype(np.int64)


def bin_events(bin_index: np.ndarray, n_bins: int, labels: np.ndarray) -> np.ndarray:
    """Events (rows with label == 1) per bin (int64, length n_bins)."""
    index = _check_index(bin_index, n_bins)
    y = np.asarray(labels)
    if y.shape != index.shape:
        raise DataError(f"bin events need one label per row: {len(index)} bin indices, labels of shape {y.shape}")
    return np.bincount(index[y == 1], minlength=n_bins).astype(np.int64)


def _counts(events: np.ndarray, totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of per-bin event and row counts."""
    e = np.asarray(events, dtype=np.float64)
    t = np.asarray(totals, dtype=np.float64)
    if e.ndim != 1 or e.shape != t.shape:
        raise DataError(f"events and totals must be 1-D, one per bin, got shapes {e.shape} and {t.shape}")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(t))) or np.any(e < 0) or np.any(e > t):
        raise DataError("per-bin counts must be finite with 0 ≤ events ≤ totals in every bin; "
                        "the counts were computed against different bins or labels")
    return e, t


def _woe_iv_parts(events: np.ndarray, nonevents: np.ndarray, n_events: float,
                  n_nonevents: float) -> tuple[np.ndarray, np.ndarray]:
    """WOE and IV per bin against given population totals (shared by woe_iv and the coarse search)."""
    empty = (events + nonevents) == 0
    # A non-empty bin with no events (or no non-events) would have an infinite WOE: use 0.5 for the zero count.
    pe = np.where(events > 0, events, ZERO_COUNT) / n_events
    pn = np.where(nonevents > 0, nonevents, ZERO_COUNT) / n_nonevents
    woe = np.where(empty, 0.0, np.log(pn / pe))
    return woe, np.where(empty, 0.0, (pn - pe) * woe)


def woe_iv(events: np.ndarray, totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight of evidence and information value per bin.

    WOE_b = ln((nonevents_b / N_nonevents) / (events_b / N_events)) (Siddiqi: ln(%good/%bad));
    IV_b = (nonevents_b/N_nonevents − events_b/N_events) · WOE_b ≥ 0; the characteristic's IV is IV_b.sum().

    An EMPTY bin (total 0) gets WOE 0 and IV 0. A non-empty bin with 0 events or
    0 non-events gets 0.5 in place of the zero count (the usual continuity
    correction), so its WOE stays finite; the totals N are not changed.
    """
    e, t = _counts(events, totals)
    n_events, n_nonevents = e.sum(), (t - e).sum()
    if n_events == 0 or n_nonevents == 0:
        raise DataError("WOE needs both events and non-events among the rows; "
                        f"got {n_events:g} events and {n_nonevents:g} non-events")
    return _woe_iv_parts(e, t - e, n_events, n_nonevents)


def iv_band(iv: float) -> str:
    """The usual reading of an IV.

    unpredictive < 0.02 ≤ weak < 0.1 ≤ medium < 0.3 ≤ strong < 0.5 ≤ suspicious (too good: check for a leak).
    """
    if not math.isfinite(iv) or iv < 0:
        raise DataError(f"an information value is a finite number ≥ 0, got {iv!r}")
    for bound, band in ((0.02, "unpredictive"), (0.1, "weak"), (0.3, "medium"), (0.5, "strong")):
        if iv < bound:
            return band
    return "suspicious"


# ----------------------------------------------------------------------------------------------------------------
# Coarse classing
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """What every coarse bin must satisfy, and the search it is found with."""

    method: str
    direction: str | None  # "increasing" / "decreasing", or None for no monotonicity
    max_bins: int
    need_rows: float  # min_share · finite rows
    min_events: int

    def ok(self, events: float, total: float) -> bool:
        return total > 0 and total >= self.need_rows and events >= self.min_events and total - events >= self.min_events


def coarse_groups(events: np.ndarray, totals: np.ndarray, *, method: Method = "iv_optimal",
                  monotone: Monotone = "auto", max_bins: int = 6, min_share: float = 0.05,
                  min_events: int = 1) -> tuple[list[int], str]:
    """Coarse classing: which adjacent finite fine bins to merge.

    ``events``/``totals`` are per FINITE fine bin, in order (the missing bin is
    not passed: it always stays its own bin). Returns ``(groups, direction)``:
    ``groups`` as :meth:`Bins.merged` takes it, ``direction`` the event rate's
    direction across the coarse bins ("increasing"/"decreasing"; "none" only for
    ``monotone="none"``).

    Every coarse bin holds ≥ ``min_share`` of the finite rows, ≥ ``min_events``
    events and ≥ ``min_events`` non-events, and is not empty; there are at most
    ``max_bins``. With a monotone direction the coarse event rates never step
    against it (equal neighbours are allowed).

    * ``equal_frequency``: only enforce that, merging each offending bin (or
      adjacent pair) with the smaller neighbour.
    * ``chimerge``: the same, but always merging the adjacent pair with the
      smallest chi-square; then keep merging that way down to ``max_bins``.
    * ``iv_optimal``: the contiguous partition with the largest IV under all the
      rules, by exact dynamic programming over cut positions.

    ``monotone="auto"`` solves for both directions and keeps the one with the
    larger IV (IV over the finite bins); on a tie, the sign of the row-weighted
    correlation between bin order and fine event rate (increasing when ≥ 0).

    When no partition satisfies the rules (too few events, or the finite rows
    hold no events or no non-events at all), every fine bin goes into one
    coarse bin: the characteristic carries no usable signal in its finite part.
    """
    if method not in get_args(Method):
        raise ConfigError(f"unknown binning method {method!r}; use one of {', '.join(get_args(Method))}")
    if monotone not in get_args(Monotone):
        raise ConfigError(f"unknown monotone option {monotone!r}; use one of {', '.join(get_args(Monotone))}")
    if not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise ConfigError(f"max_bins must be an integer ≥ 1, got {max_bins!r}")
    if not 0 <= min_share <= 1:
        raise ConfigError(f"min_share must lie in [0, 1], got {min_share!r}")
    if not isinstance(min_events, (int, np.integer)) or min_events < 0:
        raise ConfigError(f"min_events must be an integer ≥ 0, got {min_events!r}")
    e, t = _counts(events, totals)
    if len(e) == 0:
        raise DataError("coarse classing needs at least one finite fine bin; build the fine bins with fine_bins")

    def rules(direction: str | None) -> _Rules:
        return _Rules(method, direction, int(max_bins), min_share * t.sum(), int(min_events))

    if monotone != "auto":
        direction = None if monotone == "none" else monotone
        return _solve(e, t, rules(direction)), monotone

    up = _solve(e, t, rules("increasing"))
    down = _solve(e, t, rules("decreasing"))
    iv_up, iv_down = _partition_iv(e, t, up), _partition_iv(e, t, down)
    if abs(iv_up - iv_down) > _TOL * max(1.0, iv_up, iv_down):
        return (up, "increasing") if iv_up > iv_down else (down, "decreasing")
    return (up, "increasing") if _trend(e, t) >= 0 else (down, "decreasing")


def _trend(events: np.ndarray, totals: np.ndarray) -> float:
    """Row-weighted covariance of bin order and event rate: its sign is the direction of the data."""
    seen = totals > 0
    if seen.sum() < 2:
        return 0.0
    order, rate, w = np.flatnonzero(seen).astype(np.float64), events[seen] / totals[seen], totals[seen]
    return float(np.sum(w * (order - np.average(order, weights=w)) * (rate - np.average(rate, weights=w))))


def _partition_iv(events: np.ndarray, totals: np.ndarray, groups: Sequence[int]) -> float:
    """IV of the coarse bins ``groups`` makes, over the finite rows."""
    g = np.asarray(groups)
    merged_events = np.bincount(g, weights=events)
    merged_totals = np.bincount(g, weights=totals)
    n_events, n_nonevents = events.sum(), totals.sum() - events.sum()
    if n_events == 0 or n_nonevents == 0:
        return 0.0
    return float(_woe_iv_parts(merged_events, merged_totals - merged_events, n_events, n_nonevents)[1].sum())


def _solve(e: np.ndarray, t: np.ndarray, rules: _Rules) -> list[int]:
    """Groups for one fixed direction (or none)."""
    if not rules.ok(e.sum(), t.sum()) or e.sum() == 0 or e.sum() == t.sum():
        # Not even one bin of everything passes, so no partition does (merging only adds rows and events);
        # and without both events and non-events no WOE or IV is defined.
        return [0] * len(e)
    if rules.method == "iv_optimal":
        return _iv_optimal(e, t, rules)
    return _greedy(e, t, rules)


def _chi_square(e1: float, t1: float, e2: float, t2: float) -> float:
    """Pearson's chi-square of the 2×2 table (bin × event/non-event) of two adjacent bins; empty cells count 0."""
    total, events = t1 + t2, e1 + e2
    if total == 0:
        return 0.0
    chi = 0.0
    for observed_e, rows in ((e1, t1), (e2, t2)):
        for observed, share in ((observed_e, events / total), (rows - observed_e, 1 - events / total)):
            expected = rows * share
            if expected > 0:
                chi += (observed - expected) ** 2 / expected
    return chi


def _greedy(e: np.ndarray, t: np.ndarray, rules: _Rules) -> list[int]:
    """Bottom-up merging for ``equal_frequency`` and ``chimerge``; ends at a partition that passes every rule.

    Each step merges one adjacent pair, chosen in this order of need: a bin that
    breaks a size/event rule (the smallest such bin, with the better of its two
    neighbours); else a pair whose event rates step against the direction; else,
    while there are more than ``max_bins`` bins, any pair. "Better" is the
    smaller chi-square for ChiMerge and the smaller combined row count for
    equal frequency. Each step removes a bin, so it stops; one bin passes every
    rule that can be passed (checked by the caller).
    """
    events, totals, sizes = list(e), list(t), [1] * len(e)

    def cost(i: int) -> float:  # of merging bins i and i+1
        if rules.method == "chimerge":
            return _chi_square(events[i], totals[i], events[i + 1], totals[i + 1])
        return totals[i] + totals[i + 1]

    def cheapest(pairs: Sequence[int]) -> int:
        return min(pairs, key=lambda i: (cost(i), i))  # the leftmost on ties: deterministic

    while len(totals) > 1:
        bad = [i for i in range(len(totals)) if not rules.ok(events[i], totals[i])]
        if bad:
            worst = min(bad, key=lambda i: (totals[i], i))
            pair = cheapest([p for p in (worst - 1, worst) if 0 <= p < len(totals) - 1])
        elif rules.direction is not None and (against := _against(events, totals, rules.direction)):
            pair = cheapest(against)
        elif len(totals) > rules.max_bins:
            pair = cheapest(range(len(totals) - 1))
        else:
            break
        events[pair : pair + 2] = [events[pair] + events[pair + 1]]
        totals[pair : pair + 2] = [totals[pair] + totals[pair + 1]]
        sizes[pair : pair + 2] = [sizes[pair] + sizes[pair + 1]]
    return [g for g, size in enumerate(sizes) for _ in range(size)]


def _against(events: Sequence[float], totals: Sequence[float], direction: str) -> list[int]:
    """Adjacent pairs (by left index) whose event rates step against ``direction``. All bins are non-empty here."""
    rates = [ev / tot for ev, tot in zip(events, totals)]
    sign = 1.0 if direction == "increasing" else -1.0
    return [i for i in range(len(rates) - 1) if sign * (rates[i] - rates[i + 1]) > _TOL]


def _iv_optimal(e: np.ndarray, t: np.ndarray, rules: _Rules) -> list[int]:
    """The contiguous partition with the largest IV under the rules: exact dynamic programming.

    A segment (i, j) is fine bins i..j. best[k, i, j] is the largest IV of a
    partition of bins 0..j into k segments whose last segment is (i, j) (−inf if
    none passes the rules); the last segment is part of the state because the
    monotone rule compares neighbouring segments. The cost is O(max_bins · m³)
    comparisons, done m at a time by numpy (m ≤ ~50 fine bins). Among partitions
    with the same IV the one with fewer bins wins.
    """
    m = len(e)
    ce, ct = np.r_[0.0, np.cumsum(e)], np.r_[0.0, np.cumsum(t)]
    seg_events = ce[None, 1:] - ce[:-1, None]  # [i, j] = events of bins i..j (meaningful for j ≥ i)
    seg_totals = ct[None, 1:] - ct[:-1, None]
    upper = np.triu(np.ones((m, m), dtype=bool))
    valid = (upper & (seg_totals > 0) & (seg_totals >= rules.need_rows) & (seg_events >= rules.min_events)
             & (seg_totals - seg_events >= rules.min_events))
    _, seg_iv = _woe_iv_parts(np.where(upper, seg_events, 0.0), np.where(upper, seg_totals - seg_events, 0.0),
                              e.sum(), t.sum() - e.sum())
    seg_iv = np.where(valid, seg_iv, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(valid, seg_events / seg_totals, np.nan)
    sign = {"increasing": 1.0, "decreasing": -1.0, None: 0.0}[rules.direction]

    K = min(rules.max_bins, m)
    best = np.full((K + 1, m, m), -np.inf)
    back = np.full((K + 1, m, m), -1, dtype=np.int64)
    best[1, 0, :] = seg_iv[0, :]
    for k in range(2, K + 1):
        for i in range(1, m):
            before = best[k - 1, :i, i - 1]  # previous segment (h, i-1), h = 0..i-1
            if not np.isfinite(before).any():
                continue
            # allowed[h, j]: segment (h, i-1) may precede (i, j) under the monotone rule.
            # Rates lie in [0, 1], so an absolute tolerance suffices; NaN (an invalid segment) is never allowed.
            step = rate[i, None, i:] - rate[:i, i - 1, None]
            allowed = sign * step >= -_TOL if sign else np.ones(step.shape, dtype=bool)
            candidates = np.where(allowed & np.isfinite(before)[:, None], before[:, None], -np.inf)
            h = np.argmax(candidates, axis=0)
            value = candidates[h, np.arange(m - i)]
            reachable = np.isfinite(value) & valid[i, i:]
            best[k, i, i:] = np.where(reachable, value + seg_iv[i, i:], -np.inf)
            back[k, i, i:] = np.where(reachable, h, -1)

    # The best ending at the last fine bin; fewer bins first, so only a strictly larger IV adds a bin.
    top, top_k, top_i = -np.inf, 0, 0
    for k in range(1, K + 1):
        i = int(np.argmax(best[k, :, m - 1]))
        value = float(best[k, i, m - 1])
        if np.isfinite(value) and (top_k == 0 or value > top + _TOL * max(1.0, abs(top))):
            top, top_k, top_i = value, k, i
    if top_k == 0:  # cannot happen when one bin of everything passes; kept as a safe answer
        return [0] * m
    starts, j, i = [], m - 1, top_i
    for k in range(top_k, 0, -1):
        starts.append(i)
        i, j = int(back[k, i, j]), i - 1
    starts.reverse()
    return [int(np.searchsorted(starts, b, side="right")) - 1 for b in range(m)]


def woe_column(bins: Bins, woe: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each row's bin WOE (WOE coding of one characteristic); ``woe`` has one value per bin, missing included."""
    table = np.asarray(woe, dtype=np.float64)
    if table.shape != (bins.count,):
        raise DataError(f"WOE coding of {bins.name!r} needs one WOE per bin ({bins.count}, missing included), "
                        f"got shape {table.shape}")
    return table[bins.assign(x)]


def indicator_columns(bins: Bins, x: np.ndarray) -> np.ndarray:
    """One-hot bin indicators, shape (rows, bins.count), float64; the last column is the missing bin."""
    index = bins.assign(x)
    out = np.zeros((len(index), bins.count), dtype=np.float64)
    out[np.arange(len(index)), index] = 1.0
    return out
