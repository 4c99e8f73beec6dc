"""Where a party's big-integer work runs: one small interface, two engines.

Every heavy loop of a party (Paillier encryption and obfuscators, the
encrypted products ``Xᵀ[[d]]``, decryption at the arbiter, RSA signing and
blinding in the PSI) is cut into chunks of thousands of values and handed to
an :class:`Engine`. The roles never see processes or clusters, only:

* ``engine.workers``: how many chunks run at once, so a loop knows how many
  pieces to cut;
* ``engine.map(fn, chunks)``: ``[fn(*chunk) for chunk in chunks]``, in order;
* ``engine.submit(fn, *args)``: the same for one chunk, in the background.

``fn`` is always a module-level function of vfl (so it pickles by name) and its
arguments are integers, bytes and numpy arrays: what a chunk needs, nothing of
the job beyond it.

Two engines:

:class:`LocalEngine` (the default)
    This machine's cores, through the process pool of :mod:`vfl.compute.pool`.
    ``workers=1`` runs everything in the calling process.

:class:`RayEngine` (``pip install 'vfl[ray]'``)
    The party's own Ray cluster (``[compute] engine = "ray"``, ``address`` =
    its head). Every chunk is one Ray task; a large bytes argument shared by
    several chunks of one call (the packed ciphertexts of a product) is put
    into Ray's object store once, not once per task. Ray reuses its worker
    processes, so the per-process caches (the fixed-base tables of
    :mod:`vfl.crypto.obfuscation`) are built once per key per worker, as in
    the local pool. Without an address the engine never starts Ray with its
    defaults (ports on every interface, a token in ``~/.ray``, a shared session
    folder anyone could use to run code in the workers): it starts a private
    one-node head (:class:`~vfl.compute.ray_head.LocalRayHead`) that binds
    loopback only, checks a fresh token it never writes to a file, keeps its
    session folder in a 0700 folder of its own, and stops with the engine. A cluster started with
    ``ray start`` checks a token: the service needs ``RAY_AUTH_MODE=token`` and
    the cluster's token (``RAY_AUTH_TOKEN_PATH``) in its environment, and runs
    on one of the cluster's nodes (see docs/scaling.md).

The cluster belongs to one party: only that party's service talks to it, and
what reaches it is what that service already holds (its own features, the
ciphertexts it was sent, its own keys). Nothing in vfl ever connects two
organisations' clusters.
"""

from __future__ import annotations

import atexit
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

from vfl.errors import ComputeError, ConfigError, VFLError
from vfl.compute.pool import get_pool, resolve_workers, run_chunks

R = TypeVar("R")

EngineName = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")

#: A bytes argument at least this large, shared by several chunks of one call, goes
#: into Ray's object store once (Ray would otherwise copy it in for every task).
SHARED_ARG_BYTES = 64 * 1024


class Engine(ABC):
    """Runs chunks of a party's big-integer work; see the module docstring."""

    name: str

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many chunks run at once: the number of pieces worth cutting a loop into."""

    @abstractmethod
    def map(self, fn: Callable[..., R], chunks: Sequence[tuple]) -> list[R]:
        """``[fn(*chunk) for chunk in chunks]``, computed in parallel, in order."""

    @abstractmethod
    def submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Start ``fn(*args)`` in the background; its result (or error) comes back as a future."""

    def close(self) -> None:
        """Let go of what this engine holds (a cluster connection); a closed engine is not used again."""

    def describe(self) -> dict[str, Any]:
        """For job results and benchmarks: which engine, how wide."""
        return {"engine": self.name, "workers": self.workers}


class LocalEngine(Engine):
    """This machine's cores: the shared process pool of :mod:`vfl.compute.pool`."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self._workers = resolve_workers(workers)

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, fn: Callable[..., R], chunks: Sequence[tuple]) -> list[R]:
        return run_chunks(fn, chunks, self._workers)

    def submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        if self._workers <= 1:  # in-process: the future is done when it is returned
            future: Future[R] = Future()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever asks for the result, as a pool would
                future.set_exception(exc)
            return future
        return get_pool(self._workers).submit(fn, *args)

    def __repr__(self) -> str:
        return f"LocalEngine(workers={self._workers})"


class RayEngine(Engine):
    """A party's own Ray cluster (or a private one-node instance when no address is given).

    ``workers`` defaults to the cluster's CPUs, read when the engine connects.
    One engine per process: Ray allows one connection per driver.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 private_root: str | None = None) -> None:
        self._head: Any = None
        loaded = sys.modules.get("ray")
        if address is None and (loaded is None or not loaded.is_initialized()):
            from vfl.compute.ray_head import LocalRayHead  # a private head: see the module docstring

            # Started before Ray is imported here: the driver reads its token settings when it loads.
            self._head = LocalRayHead(resolve_workers(workers), root=private_root)
            address = self._head.start()
        ray = _import_ray()
        self.address = address
        try:
            if not ray.is_initialized():
                options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                           "configure_logging": False}
                ray.init(address=address, **options)
            cpus = int(ray.cluster_resources().get("CPU", 0))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if self._head is not None:
                self._head.stop()
            raise ComputeError(
                f"cannot connect to the Ray cluster at {address}: {exc}. "
                + (_AUTH_HINT if _is_auth_failure(exc) else
                   "Check [compute] address (the head's host:port, as `ray start --head` printed it) "
                   "and that the cluster is up (`ray status`)")
            ) from exc
        if cpus < 1:
            raise ComputeError(f"the Ray cluster at {address} offers no CPUs; start its nodes with --num-cpus")
        if workers is not None and workers < 1:
            raise ConfigError(f"compute.workers must be at least 1, got {workers}")
        self._workers = workers or cpus
        self._ray = ray
        self._remote: dict[Callable, Any] = {}
        self._lock = threading.Lock()

    @property
    def workers(self) -> int:
        return self._workers

    def _task(self, fn: Callable[..., R]) -> Any:
        with self._lock:
            remote = self._remote.get(fn)
            if remote is None:
                # One CPU per task: the chunk is single-threaded gmpy2 work.
                remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
            return remote

    def map(self, fn: Callable[..., R], chunks: Sequence[tuple]) -> list[R]:
        if len(chunks) <= 1 or self._workers <= 1:
            return [fn(*chunk) for chunk in chunks]  # nothing to spread: skip the round trip
        task = self._task(fn)
        shared: dict[int, Any] = {}  # id(big bytes argument) → its one object-store reference

        def ref_of(arg: object) -> object:
            if isinstance(arg, bytes) and len(arg) >= SHARED_ARG_BYTES:
                if id(arg) not in shared:
                    shared[id(arg)] = self._ray.put(arg)
                return shared[id(arg)]
            return arg

        refs = [task.remote(*[ref_of(a) for a in chunk]) for chunk in chunks]
        return self._get(refs, fn)

    def submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        ref = self._task(fn).remote(*args)
        out: Future[R] = Future()

        def finish(done: Future) -> None:
            try:
                out.set_result(self._translate(done.result, fn))
            except BaseException as exc:
                out.set_exception(exc)

        ref.future().add_done_callback(finish)
        return out

    def _get(self, refs: list, fn: Callable) -> list:
        """Every chunk's result, in order; the first failure is raised once all have finished.

        Fetching every reference, failed or not, keeps Ray from logging the
        others as "unhandled errors" when one chunk fails.
        """
        get, errors = self._ray.get, (self._ray.exceptions.RayError, ConnectionError)

        def get_all() -> list:
            results, first = [], None
            for ref in refs:
                try:
                    results.append(get(ref))
                except errors as exc:
                    first = first or exc
            if first is not None:
                raise first
            return results

        return self._translate(get_all, fn)

    def _translate(self, get: Callable[[], R], fn: Callable) -> R:
        """Run ``get``: a task's vfl error comes back as itself, anything else as ComputeError.

        A vfl error raised inside a task (a peer's bad ciphertext, a faulty
        signature) is re-raised as the very same error, as the local engine
        would, so the service handles it the same way. Any other exception of
        a task is a failure of the compute layer and is translated at this
        edge, like every foreign exception in vfl: ComputeError naming the
        task, the worker and the cause, with Ray's error (and the remote
        traceback) chained. A lost worker, node or connection is a ComputeError too.
        """
        exceptions = self._ray.exceptions
        task = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        try:
            return get()
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VFLError):
                raise cause from exc
            what = f"{type(cause).__name__}: {cause}" if cause is not None else "see the chained error"
            raise ComputeError(
                f"the Ray task {task} failed ({_where(exc)}): {what}. This is a fault in the computation, "
                "not in the cluster; the task's traceback is in the chained error"
            ) from exc
        except (exceptions.RayError, ConnectionError) as exc:
            raise ComputeError(
                f"the Ray cluster lost a task of {task} ({type(exc).__name__}: {exc}); "
                "check the cluster with `ray status`"
            ) from exc

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()
        head, self._head = self._head, None
        if head is not None:  # the private head this engine started: it ends with the engine
            head.stop()

    def __repr__(self) -> str:
        return f"RayEngine(address={self.address!r}, workers={self._workers})"


def _where(exc: BaseException) -> str:
    """Which worker a RayTaskError came from: ``worker pid P on node IP``.

    Ray's combined error class (the task's exception class and RayTaskError at
    once) drops those attributes; its first line still reads ``ray::fn() (pid=P, ip=IP)``.
    """
    pid, ip = getattr(exc, "pid", None), getattr(exc, "ip", None)
    if pid is None or ip is None:
        found = re.search(r"pid=(\d+), ip=([^)\s]+)", str(exc))
        if found is None:
            return "worker unknown"
        pid, ip = found.groups()
    return f"worker pid {pid} on node {ip}"


_AUTH_HINT = (
    "The cluster refused this service's authentication token: Ray clusters started by `ray start` use token "
    "authentication, and a service that connects by address must be given the cluster's token in its "
    "environment: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<the token file of the head> (or RAY_AUTH_TOKEN)"
)


def _is_auth_failure(exc: BaseException) -> bool:
    """Whether Ray's connection error was (or was caused by) a refused authentication token."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "engine \"ray\" needs Ray, which is an optional extra: pip install 'vfl[ray]' "
            "(or set [compute] engine = \"local\")"
        ) from exc
    return ray


_ray_engine: RayEngine | None = None
_ray_lock = threading.Lock()


def make_engine(name: str = "local", *, address: str | None = None, workers: int | None = None,
                private_root: str | None = None) -> Engine:
    """The engine a config or command line names: ``"local"`` (this machine) or ``"ray"``.

    A process holds one Ray connection, so asking twice for ``"ray"`` with the
    same address returns the same engine.
    """
    if name == "local":
        if address is not None:
            raise ConfigError('compute.address applies to engine = "ray"; remove it, or set engine = "ray"')
        return LocalEngine(workers)
    if name == "ray":
        global _ray_engine
        with _ray_lock:
            if _ray_engine is not None and _ray_engine._ray.is_initialized():
                if address is not None and _ray_engine.address != address:
                    raise ConfigError(
                        f"this process is already connected to the Ray cluster at {_ray_engine.address!r}; "
                        f"one process can use one cluster, not also {address!r}"
                    )
                if workers is not None and workers != _ray_engine.workers:
                    return _WidthOf(_ray_engine, resolve_workers(workers))
                return _ray_engine
            _ray_engine = RayEngine(address, workers, private_root=private_root)
            return _ray_engine
    raise ConfigError(f"unknown compute engine {name!r}; use one of {ENGINES}")


class _WidthOf(Engine):
    """An engine seen with a different width (a job that asks for fewer workers than the cluster has)."""

    def __init__(self, inner: Engine, workers: int) -> None:
        self.inner, self._workers, self.name = inner, workers, inner.name

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, fn: Callable[..., R], chunks: Sequence[tuple]) -> list[R]:
        return self.inner.map(fn, chunks)

    def submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        return self.inner.submit(fn, *args)


def _close_ray() -> None:
    if _ray_engine is not None:
        _ray_engine.close()


atexit.register(_close_ray)

#: The engine of code that is given none: this machine, in-process.
IN_PROCESS: Engine = LocalEngine(1)


def as_engine(engine: Engine | int | None) -> Engine:
    """Accept an engine, or (for convenience in scripts and tests) a local worker count."""
    if isinstance(engine, Engine):
        return engine
    return LocalEngine(engine) if engine is not None else IN_PROCESS


__all__ = ["ENGINES", "Engine", "EngineName", "IN_PROCESS", "LocalEngine", "RayEngine", "as_engine", "make_engine"]
