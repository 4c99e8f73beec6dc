"""The jobs a service holds in memory: one :class:`Job` object each, in one :class:`JobTable`.

A job in memory is its record (what is saved), its runtime while it runs (roles
and messages), the task driving it at party B, the events stages wait on, and a
few clocks. Everything about one job is here, in one object, so that dropping a
job is one call (:meth:`JobTable.forget`) and nothing is left behind in some
other table.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vfl.errors import UnknownJobError
from vfl.service.record import JobRecord
from vfl.service.runtime import JobRuntime


@dataclass(eq=False)
class Scoring:
    """What scoring keeps of a job between requests, so that a request reads no file.

    The model part and the aligned IDs are kept with the modification time of their
    file, so a model written again is noticed at the next request.
    """

    model: tuple[float, Any] | None = None
    aligned_ids: tuple[float, frozenset[str]] | None = None
    #: A feature party: when B's recent scoring requests for the job arrived (the rate limit's window).
    recent: deque[float] = field(default_factory=deque)
    #: A feature party: when the scored-ID counter was last saved (it is saved at most once a second).
    counter_saved: float | None = None
    #: A scorecard job: this party's points table (with its file's modification time).
    card: tuple[float, Any] | None = None
    #: A scorecard job: served rows per bin of each of this party's characteristics (CSI), never evaluation rows.
    bin_counts: list[Any] | None = None
    #: A scorecard job at party B: served scores per training band (the score's PSI).
    band_counts: Any = None
    #: A scorecard job at party B: the training bands' (edges, rows per band), with scorecard.json's mtime.
    bands: tuple[float, Any] | None = None
    #: A feature party: the generation at which party B said the job is finished (its evaluation is over).
    evaluation_closed: int | None = None
    #: Whether the counts above were read from stability.json; whether they changed since last written, and when.
    stability_loaded: bool = False
    stability_dirty: bool = False
    stability_saved: float | None = None


@dataclass(eq=False)
class BatchRun:
    """A batch scoring in this process: the cancel flag its loop checks between chunks."""

    cancel: bool = False


@dataclass(eq=False)
class Job:
    """One job at this service."""

    record: JobRecord
    #: Its roles and messages while it runs here; None before it starts and once it has stopped.
    runtime: JobRuntime | None = None
    #: Party B: the task that drives the job through its stages (see vfl.service.stages.pipeline).
    driver: asyncio.Task | None = None
    #: Set when this party's training role is done (or the job stopped): evaluation and scoring wait on it.
    trained: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set whenever a PSI role of the job makes progress towards its end (or the job stopped).
    aligned: asyncio.Event = field(default_factory=asyncio.Event)
    #: When this party's PSI began (a feature party reports how long it took).
    psi_started: float | None = None
    #: The checkpoint last written, so that the same snapshot is not written twice.
    persisted: Any = None
    #: When the current epoch began here (for the epoch-duration histogram).
    epoch_began: float | None = None
    #: Party B: a resume is asking the parties for their checkpoints right now.
    coordinating: bool = False
    #: Party B, resuming an alignment: awaited once its PSI roles wait for the feature parties' new sessions.
    psi_ready: Callable[[], Awaitable[None]] | None = None
    #: Party B: when its pipeline began (perf_counter), for the job's timings.
    started: float | None = None
    scoring: Scoring = field(default_factory=Scoring)
    #: A feature party in a scorecard job: its binning role between B's request and B's result (in memory only).
    binning: Any = None
    #: Party B: the batches scoring right now, by batch id.
    batches: dict[str, BatchRun] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return self.record.job_id

    def release_waiters(self) -> None:
        """Wake everything waiting on this job (it stopped): they look at its state and see why."""
        self.trained.set()
        self.aligned.set()


class JobTable:
    """Every job this service knows, by id, and the submits still in flight (by Idempotency-Key)."""

    def __init__(self, records: dict[str, JobRecord]) -> None:
        self._jobs: dict[str, Job] = {job_id: Job(record) for job_id, record in records.items()}
        #: Idempotency-Key → (digest of the spec, set when that submit ends) while it is being submitted.
        self.submitting: dict[str, tuple[str, asyncio.Event]] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def require(self, job_id: str, here: str) -> Job:
        """The job, or UnknownJobError naming this party (``here``)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(f"no job {job_id!r} at party {here!r}")
        return job

    def records(self) -> list[JobRecord]:
        return [job.record for job in self._jobs.values()]

    def add(self, record: JobRecord) -> Job:
        job = self._jobs[record.job_id] = Job(record)
        return job

    def forget(self, job_id: str) -> Job | None:
        """Drop the job from memory: its driver is cancelled and its runtime marked closed.

        Returns the job, whose runtime (if any) the caller closes; the files are the store's.
        """
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        if job.driver is not None and job.driver is not asyncio.current_task():
            job.driver.cancel()
        if job.runtime is not None:
            job.runtime.closed = True
        job.release_waiters()
        return job


__all__ = ["BatchRun", "Job", "JobTable", "Scoring"]
