"""Choosing which characteristics enter the model: by IV, then by correlation or VIF within one party.

Each party applies these to its own characteristics: the IVs come from the
label party, the correlation and VIF from the party's own encoded columns.
Every function returns the kept names in the input order, so a party's column
order never depends on the rule that kept them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from vfl.errors import ConfigError, DataError

#: 1 − R² at or below this (relative to the column's variance) counts as exact collinearity: VIF = inf.
_COLLINEAR = 1e-12


def by_iv(ivs: Mapping[str, float], *, min_iv: float | None = None, top_k: int | None = None) -> list[str]:
    """Names with IV ≥ ``min_iv`` (if given), then the ``top_k`` highest IVs of those (ties: the earlier name).

    Returned in the input order.
    """
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be an integer ≥ 1 (or None for no limit), got {top_k!r}")
    if min_iv is not None and not (math.isfinite(min_iv) and min_iv >= 0):
        raise ConfigError(f"min_iv must be a number ≥ 0 (or None), got {min_iv!r}")
    names = [n for n, iv in ivs.items() if min_iv is None or iv >= min_iv]
    if top_k is not None:
        position = {n: i for i, n in enumerate(ivs)}
        chosen = set(sorted(names, key=lambda n: (-ivs[n], position[n]))[:top_k])
        names = [n for n in names if n in chosen]
    return names


def _checked(X: np.ndarray, names: Sequence[str], priority: Mapping[str, float] | None) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(f"selection needs one column per name: {len(names)} names, a table of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("selection needs finite encoded columns; encode missing values (e.g. by WOE) first")
    if len(set(names)) != len(names):
        raise DataError("selection needs distinct characteristic names")
    if priority is not None:
        absent = [n for n in names if n not in priority]
        if absent:
            raise ConfigError(f"no priority (e.g. IV) for {absent}; give one for every column")
    return x


def _by_priority(names: Sequence[str], priority: Mapping[str, float]) -> list[int]:
    """Column positions, highest priority first (ties: input order)."""
    return sorted(range(len(names)), key=lambda i: (-priority[names[i]], i))


def correlation_drop(X: np.ndarray, names: Sequence[str], *, max_abs_corr: float,
                     priority: Mapping[str, float]) -> list[str]:
    """Greedy: by descending priority, keep a column unless |corr| with a kept one exceeds ``max_abs_corr``.

    A constant column correlates with nothing (its correlation is undefined), so
    it is kept on this rule alone. Returns the kept names in input order.
    """
    if not 0 <= max_abs_corr <= 1:
        raise ConfigError(f"max_abs_corr must lie in [0, 1], got {max_abs_corr!r}")
    x = _checked(X, names, priority)
    centred = x - x.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)  # 0 for a constant column instead of NaN
    kept: list[int] = []
    for i in _by_priority(names, priority):
        if all(abs(corr[i, j]) <= max_abs_corr for j in kept):
            kept.append(i)
    return [names[i] for i in sorted(kept)]


def variance_inflation(X: np.ndarray) -> np.ndarray:
    """VIF of each column: 1/(1 − R²) of regressing it on the other columns with an intercept.

    A constant column, or one the others explain exactly, gets inf. One column
    alone has VIF 1 (the intercept explains nothing of its variance).
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise DataError(f"VIF needs a finite 2-D table, got shape {x.shape}")
    n, p = x.shape
    out = np.empty(p, dtype=np.float64)
    for j in range(p):
        y = x[:, j]
        total = float(np.sum((y - y.mean()) ** 2))
        if total == 0:
            out[j] = np.inf
            continue
        design = np.column_stack([np.ones(n), np.delete(x, j, axis=1)])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        residual = float(np.sum((y - design @ coef) ** 2))
        out[j] = np.inf if residual <= _COLLINEAR * total else total / residual  # 1/(1-R²) = SST/SSR
    return out


def vif_drop(X: np.ndarray, names: Sequence[str], *, max_vif: float, priority: Mapping[str, float]) -> list[str]:
    """Drop, one at a time, the column with the highest VIF above ``max_vif`` (ties: lower priority first).

    VIFs are recomputed after every drop. Returns the kept names in input order.
    """
    if not max_vif >= 1:
        raise ConfigError(f"max_vif must be ≥ 1 (a VIF is never below 1), got {max_vif!r}")
    x = _checked(X, names, priority)
    kept = list(range(len(names)))
    while kept:
        vif = variance_inflation(x[:, kept])
        if vif.max() <= max_vif:
            break
        # Highest VIF first; among (near-)equal VIFs, e.g. two exactly collinear columns, the lower priority goes.
        top = vif.max()
        tied = [i for i, v in zip(kept, vif) if v == top or (math.isfinite(top) and math.isclose(v, top, rel_tol=1e-9))]
        kept.remove(min(tied, key=lambda i: (priority[names[i]], -i)))
    return [names[i] for i in kept]
