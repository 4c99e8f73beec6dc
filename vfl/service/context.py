"""The ports: what a stage, a serving function or a router may touch of a service, and of one job.

Stages never receive the :class:`~vfl.service.node.Node`. They receive one of
these two narrow interfaces (as Flower's handlers receive a ``LinkState`` and
user code a ``Context``), which the Node implements:

* :class:`JobContext`: one job: its record and in-memory state, this party's
  config and store, its peers, its data, and the few moves a stage makes
  (advance the lifecycle, checkpoint, fail, tell the peers);
* :class:`ServiceContext`: the service around the jobs: the job table, opening
  a new job, starting party B's pipeline, dropping a job.

A test plays a stage against a fake of either in milliseconds, and a deviating
party is a context that lies, not a monkeypatched module.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from vfl.compute.engine import Engine
from vfl.data.table import PartyTable
from vfl.ml.config import TrainingConfig
from vfl.protocol.roster import Roster, RoleKind
from vfl.service.config import ServiceConfig
from vfl.service.datasets import Datasets
from vfl.service.jobs import Job, JobTable
from vfl.service.ledger_copies import LedgerCopies
from vfl.service.lifecycle import JobState, Stage
from vfl.service.peers import PeerClient
from vfl.service.record import JobRecord
from vfl.service.runtime import JobRuntime
from vfl.service.releases import Releases
from vfl.service.spec import JobSpec
from vfl.service.store import JobStore
from vfl.service.telemetry import Telemetry


class Parts(Protocol):
    """What every context lends: this party's id and role, its config, files, data, peers, engine and metrics."""

    @property
    def me(self) -> str: ...  # this party's id
    @property
    def kind(self) -> RoleKind: ...  # what this service is: feature, label or arbiter
    @property
    def config(self) -> ServiceConfig: ...
    @property
    def store(self) -> JobStore: ...
    @property
    def data(self) -> Datasets: ...
    @property
    def client(self) -> PeerClient: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def telemetry(self) -> Telemetry: ...
    @property
    def releases(self) -> Releases: ...  # a feature party: what it released to each label party


class JobContext(Parts, Protocol):
    """What a stage may touch of one job at this service."""

    @property
    def job(self) -> Job: ...
    @property
    def record(self) -> JobRecord: ...
    @property
    def roster(self) -> Roster: ...
    @property
    def ledgers(self) -> LedgerCopies: ...

    def advance(self, to: Stage, *, outcome: JobState | None = None, **changes: Any) -> None:
        """Move the job to ``to`` (checked by the lifecycle), apply ``changes``, save the record."""

    def update(self, **changes: Any) -> None:
        """Apply ``changes`` to the record (never its state or stage) and save it."""

    def event(self, text: str, *args: object, level: int = logging.INFO) -> None:
        """A line of the job's story in the service log."""

    def training_config(self) -> TrainingConfig: ...

    def own_table(self) -> PartyTable:
        """This party's whole dataset as the job prepares it (the dataset's keys, the job's "prepare" entry)."""

    def aligned_table(self) -> PartyTable:
        """This party's rows of the intersection, in the shared order."""

    def runtime(self) -> JobRuntime:
        """The job's runtime, started (with its watchdog) on first use."""

    async def fresh_runtime(self) -> JobRuntime:
        """Replace the runtime (a resume): queues, de-duplication memory and tasks start over."""

    async def close_runtime(self) -> None:
        """Training is over here: no message of the job is due any more."""

    def checkpoint(self, role: Any) -> None:
        """Store the role's latest epoch-boundary snapshot, once."""

    async def fail(self, reason: str, *, cancelled: bool = False, notify: bool = True) -> None:
        """Stop the job here (failed or cancelled), tell the peers unless told not to."""

    async def tell_peers(self, what: str, reason: str = "") -> None:
        """POST ``/v1/peer/jobs/{id}/{what}`` to every other party of the job, best effort, redacted."""

    async def submit_child(self, spec: JobSpec) -> JobRecord:
        """Party B: submit another job on this one's behalf (a coalition training)."""

    async def cancel_child(self, job_id: str, reason: str) -> None:
        """Party B: cancel a job submitted on this one's behalf (this one stopped)."""

    def child(self, job_id: str) -> JobRecord | None:
        """Party B: the record of a job submitted on this one's behalf before (say, before a restart), or None."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background; shutting the service down cancels it."""


class ServiceContext(Parts, Protocol):
    """What a stage or a serving function may touch of the service around the jobs."""

    @property
    def jobs(self) -> JobTable: ...

    def job(self, job_id: str) -> JobContext:
        """The context of a job this service holds; UnknownJobError otherwise."""

    def open_job(self, record: JobRecord) -> JobContext:
        """Create a new job: its folder, its place in the job table and its runtime."""

    def start_pipeline(self, ctx: JobContext, *, resume: str | None = None) -> None:
        """Party B: drive the job through its stages in a task of its own (``resume``: why it resumes)."""

    async def forget(self, job_id: str) -> None:
        """Drop a job here: from memory, and its folder from disk."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None: ...


__all__ = ["JobContext", "Parts", "ServiceContext"]
