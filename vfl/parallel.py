"""Using every core of a party for its big-integer work.

Paillier and RSA arithmetic runs in gmpy2, which holds the GIL, so threads do
not help; processes do. This module owns the one process pool per worker count
that every heavy loop (encryption, encrypted products, PSI signing) shares.

* ``workers=None`` means "all cores this process may run on".
* ``workers=1`` runs everything in the calling process: no pool, no pickling.
  Small inputs also stay in-process, because shipping them costs more than
  computing them.

Workers are started with the ``forkserver`` method: forking a service that
already runs threads (uvicorn, httpx) is unsafe, and ``spawn`` is slower.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from vfl.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ProcessPoolExecutor] = {}
_lock = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """Turn a configured worker count (None = all cores) into a positive int."""
    if workers is None:
        return available_cores()
    if workers < 1:
        raise ConfigError(f"workers must be at least 1 (or omitted for all cores), got {workers}")
    return workers


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The shared process pool with ``workers`` processes, created on first use."""
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            ctx = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            _pools[workers] = pool
        return pool


def shutdown_pools() -> None:
    """Stop every pool (called at exit; tests may call it to free processes)."""
    with _lock:
        for pool in _pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _pools.clear()


atexit.register(shutdown_pools)


def split_evenly(count: int, parts: int) -> list[slice]:
    """Cut ``range(count)`` into at most ``parts`` contiguous slices of near-equal size."""
    parts = max(1, min(parts, count))
    base, extra = divmod(count, parts)
    slices, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        slices.append(slice(start, stop))
        start = stop
    return slices


def run_chunks(
    fn: Callable[..., R],
    chunks: Sequence[tuple],
    workers: int,
) -> list[R]:
    """Run ``fn(*chunk)`` for every chunk, in order, on up to ``workers`` processes.

    With one worker or one chunk everything runs in the calling process.
    ``fn`` must be a module-level function so that it can be pickled.
    """
    if workers <= 1 or len(chunks) <= 1:
        return [fn(*chunk) for chunk in chunks]
    pool = get_pool(workers)
    futures = [pool.submit(fn, *chunk) for chunk in chunks]
    return [f.result() for f in futures]


def submit(fn: Callable[..., R], *args: object, workers: int) -> Future[R]:
    """Start ``fn(*args)`` in the background on the shared pool and return its future."""
    return get_pool(max(1, workers)).submit(fn, *args)


def pool_cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by the live worker processes of every pool.

    For benchmarks: together with the caller's own ``time.process_time()`` it
    gives the CPU an operation cost over all processes, which, unlike wall
    time, does not grow when other programs share the machine. Reads
    ``/proc/<pid>/stat``, so it is Linux-only: elsewhere it returns None.
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    with _lock:
        pids = [pid for pool in _pools.values() for pid in list(getattr(pool, "_processes", None) or {})]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            if not os.path.isdir("/proc"):
                return None
            continue  # the worker exited meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total
