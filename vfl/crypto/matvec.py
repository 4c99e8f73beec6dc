"""The encrypted matrix-vector product ``Xᵀ[[d]]`` by bucket multi-exponentiation.

For each feature column j we need ``Π_i c_i^(e_ij) mod n²``, where c_i are the
ciphertexts of the residual d and e_ij = round(x_ij · 2^k) are the features in
fixed point. Doing each power separately (phe's ``ciphertext * float``) costs
a full square-and-multiply per element. Here the work is shared, in three
steps per column:

1. **Equal exponents are grouped.** Rows with the same exponent are multiplied
   together first (one mulmod per extra row), so ``Π c_i^e`` over the group
   becomes one base to one exponent. Categorical, binary and rounded features
   take few distinct values (party A's ten default_credit features take at
   most 81 each), so for them the product costs little more than one mulmod
   per row. The intercept column (all ones) is one power in all. Zero
   exponents drop out here.
2. **Signed-digit Pippenger** on the distinct (base, exponent) pairs: each
   exponent is cut into w-bit signed digits of magnitude ≤ 2^(w−1), every base
   is multiplied into the positive or negative bucket of its digit, and the
   buckets are combined with running products (``Π_d B_d^d``), skipping runs
   of empty buckets with one small powmod. Positive and negative buckets keep
   separate accumulators, so the whole column needs one modular inversion,
   however many negative exponents it has. Signed digits halve the number of
   buckets against plain w-bit digits.
3. **Horner over the windows**: square w times (one powmod), multiply in the
   next window.

The window w is chosen per column from a cost model fed with the actual digits
(:func:`plan_column`); when very few distinct exponents remain, plain powmods
are cheaper and are used instead.

All of this runs on raw gmpy2 integers; no phe object is created.

Invariant: for every column j, the result equals ``Π_i powmod(c_i, e_ij, n²)``
exactly (negative exponents through the inverse), whatever the window,
grouping or split over processes.

Parallelism: columns are dealt to worker processes by estimated cost (longest
first, to the least-loaded worker), one task per worker, so the ciphertexts
are shipped once per worker, packed as bytes. With fewer columns than workers
the rows are split instead and the partial products multiplied together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz

from vfl.crypto.codec import byte_width, pack_ints, unpack_ints
from vfl.errors import EncodingOverflow
from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import split_evenly

#: Exponents must fit numpy int64 so digits can be cut vectorised.
MAX_EXPONENT_BITS = 62

#: Below this many row-features the whole product runs in-process. Shipping a
#: task costs a few milliseconds (the ciphertexts go as one bytes object); a
#: row-feature costs about two mulmods, ~10 µs at 2048 bits. So B's one-column
#: loss term over a 5,000-row batch (0.1 s) is already worth splitting.
PARALLEL_THRESHOLD = 4_000

#: Narrowest and widest windows (2^(w−1) buckets per sign).
MIN_WINDOW, MAX_WINDOW = 2, 16

#: Cost of one powmod, in mulmods: a fixed part (conversion to and from
#: Montgomery form) plus about one per exponent bit (measured with gmpy2).
POWMOD_FIXED, POWMOD_PER_BIT = 3.0, 1.1

#: One modular inversion mod n², in mulmods (measured: ~7.5).
INVERSION_COST = 8.0


def fixed_point_exponents(X: np.ndarray, frac_bits: int, *, what: str = "features") -> np.ndarray:
    """Features (or another plaintext matrix, named by ``what``) as signed int64 fixed-point exponents round(x · 2^k)."""
    arr = np.asarray(X, dtype=np.float64)
    scaled = np.rint(np.ldexp(arr, frac_bits))
    if not np.all(np.isfinite(scaled)) or (scaled.size and np.max(np.abs(scaled)) >= 2.0**MAX_EXPONENT_BITS):
        largest = float(np.max(np.abs(arr))) if arr.size else 0.0
        hint = ("standardise the features or lower feature_frac_bits" if what == "features"
                else f"the largest is {largest:.3g}, beyond 2^{MAX_EXPONENT_BITS - frac_bits}")
        raise EncodingOverflow(f"{what} times 2^{frac_bits} exceed 2^{MAX_EXPONENT_BITS}; {hint}")
    return scaled.astype(np.int64)


# -- planning --------------------------------------------------------------------------------


def signed_digits(values: np.ndarray, window: int) -> np.ndarray:
    """Signed w-bit digits of int64 ``values``: shape (windows, len(values)), lowest first.

    Every digit has magnitude at most 2^(w−1) and ``Σ_t digits[t] · 2^(w·t) == values``
    exactly. The magnitude is recoded and the sign applied afterwards, so a
    negative value has exactly the negated digits of its magnitude. ``window``
    must be at least 2 (one-bit signed digits {−1, 0} cannot carry upwards).
    """
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValueError(f"window must be between {MIN_WINDOW} and {MAX_WINDOW} bits, got {window}")
    values = np.asarray(values, dtype=np.int64)
    magnitude = np.abs(values)
    sign = np.where(values < 0, -1, 1).astype(np.int64)
    full, half, mask = 1 << window, 1 << (window - 1), (1 << window) - 1
    rows: list[np.ndarray] = []
    carry = np.zeros_like(magnitude)
    while magnitude.any() or carry.any():
        digit = (magnitude & mask) + carry
        magnitude = magnitude >> window
        carry = (digit >= half).astype(np.int64)
        rows.append((digit - carry * full) * sign)
    if not rows:
        return np.zeros((0, len(values)), dtype=np.int64)
    return np.vstack(rows)


def _bits_histogram(magnitudes: np.ndarray) -> list[int]:
    """``counts[b]`` = how many of the (positive) ``magnitudes`` have exactly b bits."""
    if magnitudes.size == 0:
        return [0] * (MAX_EXPONENT_BITS + 2)
    _, exponent = np.frexp(magnitudes.astype(np.float64))  # 2^(e−1) <= m < 2^e, so e = bit length
    return np.bincount(exponent, minlength=MAX_EXPONENT_BITS + 2).tolist()


def _bucket_cost(counts: list[int], window: int) -> float:
    """Estimated mulmods of the bucket fills and combines for one sign, all windows.

    ``counts`` is the bit-length histogram of that sign's distinct exponents.
    In window t every value longer than w·t bits has a digit (a zero digit is
    rare enough to ignore). Its digits spread over the ``top`` buckets they can
    reach, of which about ``top·(1 − e^(−values/top))`` are used: the first base
    in a bucket is free, each used bucket costs two mulmods in the running
    product combine, and a gap of empty buckets one small powmod (~5 mulmods).
    """
    half = 1 << (window - 1)
    longest = max((b for b, c in enumerate(counts) if c), default=0)
    # suffix[b] = values with more than b bits
    suffix = [0] * (len(counts) + 1)
    for b in range(len(counts) - 1, -1, -1):
        suffix[b] = suffix[b + 1] + counts[b]
    cost, t = 0.0, 0
    while window * t < longest + 1:
        values = suffix[min(window * t + 1, len(counts))] if window * t else suffix[0]
        if values:
            reach = longest - window * t  # bits left above this window's start
            top = half if reach > window else min(half, 1 << max(reach - 1, 0))
            used = -top * math.expm1(-values / top)
            cost += values + used + 5 * min(used, top - used)
        t += 1
    return cost


@dataclass(frozen=True)
class ColumnPlan:
    """How one column's product will be computed, and what it should cost.

    ``window == 0`` means plain powmods per distinct exponent. ``cost`` is an
    estimate in mulmods mod n² and includes grouping the equal exponents. The
    plan only decides speed: every plan gives the same result.
    """

    window: int
    cost: float


def plan_column(exps: np.ndarray) -> ColumnPlan:
    """Pick the cheapest way to compute one column of the product.

    Candidate windows are scored on the bit lengths of the column's distinct
    non-zero exponents (see :func:`_bucket_cost`), against plain powmods. The
    estimate costs well under a millisecond for thousands of rows.
    """
    exps = np.asarray(exps, dtype=np.int64)
    nonzero = exps[exps != 0]
    if nonzero.size == 0:
        return ColumnPlan(0, 0.0)
    values = np.unique(nonzero)
    grouping = float(nonzero.size - values.size)
    positive, negative = _bits_histogram(values[values > 0]), _bits_histogram(-values[values < 0])
    total_bits = sum(b * (p + q) for b, (p, q) in enumerate(zip(positive, negative)))
    direct = float(POWMOD_FIXED * values.size + POWMOD_PER_BIT * total_bits + values.size)
    if values[0] < 0:
        direct += INVERSION_COST
    best = ColumnPlan(0, grouping + direct)
    longest = max(b for b, (p, q) in enumerate(zip(positive, negative)) if p or q)
    for window in range(MIN_WINDOW, MAX_WINDOW + 1):
        windows = -(-(longest + 1) // window)
        squarings = 2 * (windows - 1) * (POWMOD_FIXED + POWMOD_PER_BIT * window)  # both accumulators
        cost = grouping + INVERSION_COST + squarings + _bucket_cost(positive, window) + _bucket_cost(negative, window)
        if cost < best.cost:
            best = ColumnPlan(window, cost)
    return best


# -- one column ------------------------------------------------------------------------------


def group_equal_exponents(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz) -> tuple[list[mpz], np.ndarray]:
    """``(bases, values)`` with Π bases[k]^values[k] = Π cts[i]^exps[i] and distinct non-zero values."""
    groups: dict[int, mpz] = {}
    get = groups.get
    for c, e in zip(cts, np.asarray(exps, dtype=np.int64).tolist()):
        if e:
            g = get(e)
            groups[e] = c if g is None else g * c % nsq
    return list(groups.values()), np.fromiter(groups.keys(), dtype=np.int64, count=len(groups))


def _combine_buckets(buckets: list[mpz | None], nsq: mpz) -> mpz | None:
    """Π_d buckets[d]^d by running products, skipping empty buckets.

    Walking d from the top, ``running`` is the product of all buckets >= d, so
    multiplying ``running`` into the total once per step d adds each bucket d
    times. A run of g empty steps multiplies the same ``running`` g times:
    one powmod with exponent g instead of g mulmods.
    """
    running: mpz | None = None
    total: mpz | None = None
    pending = 0  # steps since ``running`` was last multiplied into ``total``
    for d in range(len(buckets) - 1, 0, -1):
        b = buckets[d]
        if b is not None:
            if running is not None and pending:
                part = running if pending == 1 else gmpy2.powmod(running, pending, nsq)
                total = part if total is None else total * part % nsq
                pending = 0
            running = b if running is None else running * b % nsq
        if running is not None:
            pending += 1
    if running is not None and pending:
        part = running if pending == 1 else gmpy2.powmod(running, pending, nsq)
        total = part if total is None else total * part % nsq
    return total


def _times(acc: mpz | None, part: mpz | None, nsq: mpz) -> mpz | None:
    if part is None:
        return acc
    return part if acc is None else acc * part % nsq


def _pippenger(bases: Sequence[mpz], values: np.ndarray, window: int, nsq: mpz) -> tuple[mpz | None, mpz | None]:
    """(Π over positive digits, Π over negative digits) of Π bases^values, signed-digit buckets."""
    digits = signed_digits(values, window)
    half = 1 << (window - 1)
    shift = 1 << window
    acc_pos: mpz | None = None
    acc_neg: mpz | None = None
    for t in range(digits.shape[0] - 1, -1, -1):
        if acc_pos is not None:
            acc_pos = gmpy2.powmod(acc_pos, shift, nsq)
        if acc_neg is not None:
            acc_neg = gmpy2.powmod(acc_neg, shift, nsq)
        pos: list[mpz | None] = [None] * (half + 1)
        neg: list[mpz | None] = [None] * (half + 1)
        for c, d in zip(bases, digits[t].tolist()):
            if d > 0:
                b = pos[d]
                pos[d] = c if b is None else b * c % nsq
            elif d < 0:
                b = neg[-d]
                neg[-d] = c if b is None else b * c % nsq
        acc_pos = _times(acc_pos, _combine_buckets(pos, nsq), nsq)
        acc_neg = _times(acc_neg, _combine_buckets(neg, nsq), nsq)
    return acc_pos, acc_neg


def _direct(bases: Sequence[mpz], values: np.ndarray, nsq: mpz) -> tuple[mpz | None, mpz | None]:
    """The same as :func:`_pippenger` by one powmod per base (for a few distinct values)."""
    acc_pos: mpz | None = None
    acc_neg: mpz | None = None
    for c, e in zip(bases, values.tolist()):
        if e > 0:
            acc_pos = _times(acc_pos, gmpy2.powmod(c, e, nsq), nsq)
        else:
            acc_neg = _times(acc_neg, gmpy2.powmod(c, -e, nsq), nsq)
    return acc_pos, acc_neg


def multiexp_signed(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz, plan: ColumnPlan | None = None) -> mpz:
    """Π cts[i]^exps[i] mod nsq for signed int64 exponents: one inversion in all.

    ``plan`` (from :func:`plan_column` on the same exponents) may be passed to
    skip planning; any plan gives the same result, only the cost differs.
    """
    exps = np.asarray(exps, dtype=np.int64)
    if len(cts) == 0:
        return mpz(1)
    if plan is None:
        plan = plan_column(exps)
    bases, values = group_equal_exponents(cts, exps, nsq)
    if not bases:
        return mpz(1)
    if plan.window:
        pos, neg = _pippenger(bases, values, plan.window, nsq)
    else:
        pos, neg = _direct(bases, values, nsq)
    result = mpz(1) if pos is None else pos
    if neg is not None:
        result = result * gmpy2.invert(neg, nsq) % nsq
    return result


# -- the whole product ------------------------------------------------------------------------


def _columns_task(packed: bytes, width: int, exps_t: np.ndarray, windows: list[int], nsq: mpz) -> list[mpz]:
    """Worker: one product per row of ``exps_t`` with the planned windows.

    The ciphertexts arrive packed as fixed-width bytes: one bytes object
    pickles as a plain copy, a list of thousands of mpz does not.
    """
    cts = unpack_ints(packed, width)
    return [multiexp_signed(cts, row, nsq, ColumnPlan(w, 0.0)) for row, w in zip(exps_t, windows)]


def deal_by_cost(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Indices dealt into ``parts`` groups, costliest first to the least-loaded group.

    Every index appears in exactly one group; groups keep ascending index order.
    """
    loads = [0.0] * parts
    groups: list[list[int]] = [[] for _ in range(parts)]
    for j in sorted(range(len(costs)), key=lambda j: -costs[j]):
        k = min(range(parts), key=loads.__getitem__)
        groups[k].append(j)
        loads[k] += costs[j]
    return [sorted(g) for g in groups if g]


def encrypted_matvec_t(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz, engine: Engine | int | None = None) -> list[mpz]:
    """Π_i cts[i]^exps[i, j] mod nsq for every column j: ``Xᵀ[[d]]`` on raw integers.

    ``exps`` is the (rows × columns) int64 matrix from :func:`fixed_point_exponents`;
    the work is spread over ``engine`` (see :mod:`vfl.compute.engine`).
    """
    engine = as_engine(engine)
    workers = engine.workers
    exps = np.asarray(exps, dtype=np.int64)
    if exps.ndim != 2 or exps.shape[0] != len(cts):
        raise ValueError(f"exponent matrix {exps.shape} does not match {len(cts)} ciphertexts")
    rows, cols = exps.shape
    exps_t = np.ascontiguousarray(exps.T)
    if workers <= 1 or rows * cols < PARALLEL_THRESHOLD:
        return [multiexp_signed(cts, row, nsq) for row in exps_t]
    width = byte_width(nsq)
    if cols >= workers:
        plans = [plan_column(row) for row in exps_t]
        groups = deal_by_cost([p.cost for p in plans], workers)
        packed = pack_ints(cts, width)  # one bytes object: cheap to pickle, unlike a list of mpz
        chunks = [(packed, width, exps_t[g], [plans[j].window for j in g], nsq) for g in groups]
        out: list[mpz] = [mpz(1)] * cols
        for g, part in zip(groups, engine.map(_columns_task, chunks)):
            for j, value in zip(g, part):
                out[j] = value
        return out
    # Fewer columns than workers: split rows and multiply the partial products.
    chunks = []
    for block in split_evenly(rows, workers):
        sub = exps_t[:, block]
        plans = [plan_column(row) for row in sub]
        chunks.append((pack_ints(cts[block], width), width, sub, [p.window for p in plans], nsq))
    parts = engine.map(_columns_task, chunks)
    result = parts[0]
    for part in parts[1:]:
        result = [a * b % nsq for a, b in zip(result, part)]
    return result
