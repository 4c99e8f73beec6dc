"""The encrypted matrix-vector product ``Xᵀ[[d]]`` by bucket multi-exponentiation.

For each feature column j we need ``Π_i c_i^(e_ij) mod n²``, where c_i are the
ciphertexts of the residual d and e_ij = round(x_ij · 2^k) are the features in
fixed point. Doing each power separately (phe's ``ciphertext * float``) costs
a full square-and-multiply per element. Pippenger's bucket method shares the
work:

1. Cut each |e_ij| into w-bit digits (windows).
2. Per window, multiply each c_i into the bucket of its digit (one mulmod per
   element per window; digit 0 costs nothing).
3. Combine the buckets with running products, ``Π_d B_d^d``, from the top
   bucket down; runs of empty buckets are skipped with one small powmod.
4. Horner over the windows: square w times, multiply in the next window.

Negative exponents go into a second bucket set, so a column needs one modular
inversion in total instead of one per negative element. Standardised features
are small for most rows, so the high windows are sparse and cost little.

All of this runs on raw gmpy2 integers; no phe object is created.
Columns are spread over worker processes (rows when there are fewer columns
than workers), each task computing a product that the caller multiplies
together.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from vfl.errors import EncodingOverflow
from vfl.parallel import run_chunks, split_evenly

#: Exponents must fit numpy int64 so digits can be cut vectorised.
MAX_EXPONENT_BITS = 62

#: Below this many row-features the whole product runs in-process.
PARALLEL_THRESHOLD = 20_000


def fixed_point_exponents(X: np.ndarray, frac_bits: int, *, what: str = "features") -> np.ndarray:
    """Features as signed int64 fixed-point exponents round(x · 2^k)."""
    arr = np.asarray(X, dtype=np.float64)
    scaled = np.rint(np.ldexp(arr, frac_bits))
    if not np.all(np.isfinite(scaled)) or (scaled.size and np.max(np.abs(scaled)) >= 2.0**MAX_EXPONENT_BITS):
        raise EncodingOverflow(
            f"{what} times 2^{frac_bits} exceed 2^{MAX_EXPONENT_BITS}; standardise the features "
            "or lower feature_frac_bits"
        )
    return scaled.astype(np.int64)


def choose_window(count: int, bits: int) -> int:
    """Window width minimising (elements per window + bucket combine) × windows."""
    best_w, best_cost = 1, float("inf")
    for w in range(1, 17):
        windows = -(-bits // w)
        cost = windows * (count + (2 << w))
        if cost < best_cost:
            best_w, best_cost = w, cost
    return best_w


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


def multiexp_unsigned(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz) -> mpz:
    """Π cts[i]^exps[i] mod nsq for non-negative int64 exponents (Pippenger)."""
    if len(cts) == 0:
        return mpz(1)
    top = int(exps.max())
    if top == 0:
        return mpz(1)
    bits = top.bit_length()
    window = choose_window(len(cts), bits)
    mask = (1 << window) - 1
    windows = -(-bits // window)
    acc: mpz | None = None
    for t in range(windows - 1, -1, -1):
        if acc is not None:
            acc = gmpy2.powmod(acc, 1 << window, nsq)
        digits = ((exps >> (window * t)) & mask).tolist()
        buckets: list[mpz | None] = [None] * (mask + 1)
        for c, d in zip(cts, digits):
            if d:
                b = buckets[d]
                buckets[d] = c if b is None else b * c % nsq
        part = _combine_buckets(buckets, nsq)
        if part is not None:
            acc = part if acc is None else acc * part % nsq
    return mpz(1) if acc is None else acc


def multiexp_signed(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz) -> mpz:
    """Π cts[i]^exps[i] mod nsq for signed exponents: one inversion in all."""
    pos = np.flatnonzero(exps > 0)
    neg = np.flatnonzero(exps < 0)
    result = multiexp_unsigned([cts[i] for i in pos], exps[pos], nsq)
    if len(neg):
        negative = multiexp_unsigned([cts[i] for i in neg], -exps[neg], nsq)
        result = result * gmpy2.invert(negative, nsq) % nsq
    return result


def _columns_task(cts: list[mpz], exps_t: np.ndarray, nsq: mpz) -> list[mpz]:
    """Worker: one product per row of ``exps_t`` (a block of feature columns)."""
    return [multiexp_signed(cts, row, nsq) for row in exps_t]


def encrypted_matvec_t(cts: Sequence[mpz], exps: np.ndarray, nsq: mpz, workers: int = 1) -> list[mpz]:
    """Π_i cts[i]^exps[i, j] mod nsq for every column j: ``Xᵀ[[d]]`` on raw integers.

    ``exps`` is the (rows × columns) int64 matrix from :func:`fixed_point_exponents`.
    """
    exps = np.asarray(exps, dtype=np.int64)
    if exps.ndim != 2 or exps.shape[0] != len(cts):
        raise ValueError(f"exponent matrix {exps.shape} does not match {len(cts)} ciphertexts")
    rows, cols = exps.shape
    cts = list(cts)
    exps_t = np.ascontiguousarray(exps.T)
    if workers <= 1 or rows * cols < PARALLEL_THRESHOLD:
        return _columns_task(cts, exps_t, nsq)
    if cols >= workers:
        # Whole columns per task: each bucket pass sees every row, which keeps
        # the combine cost small relative to the bucket fills.
        blocks = split_evenly(cols, workers)
        parts = run_chunks(_columns_task, [(cts, exps_t[b], nsq) for b in blocks], workers)
        return [c for part in parts for c in part]
    # Fewer columns than workers: split rows and multiply the partial products.
    blocks = split_evenly(rows, workers)
    parts = run_chunks(_columns_task, [(cts[b], exps_t[:, b], nsq) for b in blocks], workers)
    out = parts[0]
    for part in parts[1:]:
        out = [a * b % nsq for a, b in zip(out, part)]
    return out
