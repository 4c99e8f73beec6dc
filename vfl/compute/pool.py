"""Using every core of a party for its big-integer work.

Paillier and RSA arithmetic runs in gmpy2, which holds the GIL, so threads do
not help; processes do. This module owns the one process pool per worker count
that every heavy loop (encryption, encrypted products, PSI signing) shares.

* ``workers=None`` means "all cores this process may run on".
* ``workers=1`` runs everything in the calling process: no pool, no pickling.
  Small inputs also stay in-process, because shipping them costs more than
  computing them.

How workers start. Forking a process that already runs threads (a service:
uvicorn, httpx, ``asyncio.to_thread``) is unsafe, so a pool made in a
multi-threaded process uses ``forkserver``. ``forkserver`` (like ``spawn``)
re-runs the main script in every worker, which breaks a plain script that
calls ``vfl.simulate`` at top level without an ``if __name__ == "__main__":``
guard; so a pool made while the process runs one thread only (such a script,
``vfl simulate``) uses ``fork`` on Linux, which copies the process instead and
re-runs nothing.

Workers end with the process that made the pool, however it ends. A pool
worker blocks on its task queue, whose write end it holds itself, so it would
never notice on its own; and a forkserver stays up for as long as any worker
lives. So every worker watches the pid that made the pool (see
:func:`_watch_owner`) and exits the moment that process is gone, normally, by
SIGTERM or by SIGKILL; the forkserver and multiprocessing's resource tracker
then see their last client go and exit too.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from vfl.errors import ComputeError, ConfigError

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ProcessPoolExecutor] = {}
_lock = threading.Lock()
#: Set by shutdown_pools(wait=True) when a service stops: no pool is made after it.
_stopping = False

#: How often a worker without pidfd support (not Linux ≥ 5.3) checks on its owner.
_OWNER_POLL_SECONDS = 0.5


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


def start_method() -> str:
    """How a pool made now starts its workers: ``fork`` if that is safe here, else ``forkserver``."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "forkserver"


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The shared process pool with ``workers`` processes, created on first use.

    Refused once the process is stopping (:func:`shutdown_pools` with ``wait=True``): a message still being
    handled as a service stops must not start a pool that nothing will shut down.
    """
    with _lock:
        if _stopping:
            raise ComputeError("this process is stopping: no crypto work is started any more")
        pool = _pools.get(workers)
        # A pool one of whose workers died (killed, out of memory) refuses all work for good:
        # a long-running service starts a fresh one rather than fail every later job.
        if pool is None or getattr(pool, "_broken", False):
            pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context(start_method()),
                initializer=_watch_owner, initargs=(os.getpid(),),
            )
            _pools[workers] = pool
        return pool


def _watch_owner(owner: int) -> None:
    """Pool initializer, run first in every worker: exit as soon as process ``owner`` has ended.

    ``owner`` is the process that made the pool. For a ``forkserver`` worker it
    is not the parent (the forkserver is), so parent-death signals
    (``PR_SET_PDEATHSIG``) would not fire; watching the pid itself covers
    both start methods.
    """
    threading.Thread(target=_exit_when_gone, args=(owner,), name="vfl-owner-watch", daemon=True).start()


def _exit_when_gone(owner: int) -> None:
    try:
        pidfd = os.pidfd_open(owner)  # refers to that very process: immune to pid reuse
    except ProcessLookupError:
        pass  # it ended before this worker got going
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): ask every half second
        while _exists(owner):
            time.sleep(_OWNER_POLL_SECONDS)
    else:
        select.select([pidfd], [], [])  # a pidfd turns readable when its process has ended
    # Nobody is left to take this worker's results, so skip the cleanup of a normal exit.
    os._exit(0)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_inherited_pools() -> None:
    """In a forked child: the parent's pools and lock are copies that do not work here."""
    global _lock, _stopping
    _pools.clear()
    _lock = threading.Lock()
    _stopping = False


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_forget_inherited_pools)


def shutdown_pools(*, wait: bool = False) -> None:
    """Stop every pool (called at exit; tests may call it to free processes).

    ``wait=True`` also waits for the workers to exit and lets go of the pools' queues, whose named semaphores
    are then unlinked and unregistered from multiprocessing's resource tracker at once. A service does this
    when it stops: uvicorn ends a SIGTERM'd service by raising SIGTERM again once it has shut down, so no
    ``atexit`` code runs, and semaphores left registered made the tracker warn of "leaked semaphore objects".
    """
    global _stopping
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
        # A stopping service: a pool made after this (by a handler thread still running) would never be shut
        # down, and its semaphores would leak at the SIGTERM that ends the process.
        _stopping = _stopping or wait
    for pool in pools:
        pool.shutdown(wait=wait, cancel_futures=True)
    if wait:
        del pools
        gc.collect()  # the executor and its queues form cycles: collect them now, which unlinks the semaphores


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


def cpu_model() -> str:
    """The processor's name, for benchmark output (``/proc/cpuinfo``, else the platform's)."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
