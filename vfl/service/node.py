"""One running service (a feature party, the label party B or the arbiter C): the composition root.

The :class:`Node` builds the parts of a service and wires them together: the
job store and the job table, the peer client, the datasets, the compute engine,
the metrics, the ledger copies and the lending roles. It implements the
:class:`~vfl.service.context.ServiceContext` port, and hands each job's stages a
:class:`~vfl.service.live_job.LiveJob`. At start-up it picks up the jobs that
were running when the service stopped (:meth:`Node.startup`); at shutdown it
stops them, and no task or process is left behind.

Nothing below this module imports it: the HTTP layer (:mod:`vfl.service.http`)
is the only thing above it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from typing import Any

from vfl.compute.engine import Engine, make_engine
from vfl.errors import JobError
from vfl.protocol.roster import RoleKind
from vfl.service import retention
from vfl.service.config import ServiceConfig
from vfl.service.context import JobContext
from vfl.service.datasets import Datasets
from vfl.service.jobs import JobTable
from vfl.service.lending import LendingService
from vfl.service.ledger_copies import LedgerCopies
from vfl.service.lifecycle import JobState, Stage
from vfl.service.live_job import LiveJob
from vfl.service.peers import PeerClient
from vfl.service.record import JobRecord
from vfl.service.releases import Releases
from vfl.service.serving.stability import flush_counters, served_stability
from vfl.service.stages import pipeline, resume
from vfl.service.status import job_status
from vfl.service.store import JobStore
from vfl.service.telemetry import Telemetry

log = logging.getLogger("vfl.service")


class Node:
    """One service's parts, wired; see the module docstring."""

    def __init__(self, config: ServiceConfig, *, transport: Any = None,
                 steps: tuple[pipeline.Step, ...] = pipeline.LABEL_PARTY) -> None:
        self.config = config
        self.me: str = config.party.id
        self.kind: RoleKind = config.kind
        self.store = JobStore(config.party.data_dir)
        self.jobs = JobTable(self.store.load_all(role=config.party.role))
        self.client = PeerClient(config, transport=transport)
        compute = config.compute
        #: Where this party's crypto runs; [compute] workers wins over the older limits.workers.
        self.engine: Engine = make_engine(compute.engine, address=compute.address,
                                          workers=compute.workers or config.limits.workers,
                                          private_root=str(config.party.data_dir / "ray"))
        self.data = Datasets(config)
        # GET /metrics, a registry of its own
        self.telemetry = Telemetry(self.jobs.records, self.engine.workers, stability=self._stability)
        self.ledgers = LedgerCopies(config, self.store)
        self.releases = Releases(self.store)  # a feature party's budgets per label party and dataset
        self.lending = LendingService(config, self.data, self.engine, self.client, self.spawn)
        #: Party B's pipeline (a deviating party B in an attack test is a Node with other steps).
        self.steps = steps
        self._background: set[asyncio.Task] = set()

    # -- the ServiceContext port ------------------------------------------------------------------------

    def job(self, job_id: str) -> LiveJob:
        return LiveJob(self, self.ledgers, self.jobs.require(job_id, self.me))

    def status(self, record: JobRecord) -> dict[str, Any]:
        """A job's record with what is live now: its progress and the peers calls are retrying (:mod:`.status`)."""
        job = self.jobs.get(record.job_id)
        runtime = None if job is None else job.runtime
        return job_status(record, self.client.waiting_for(record.peer_ids(self.me)), me=self.me,
                          roles=None if runtime is None else runtime.roles,
                          live_compute=None if runtime is None else runtime.compute_seconds.get("train"))

    def open_job(self, record: JobRecord) -> LiveJob:
        self.store.create(record)
        ctx = LiveJob(self, self.ledgers, self.jobs.add(record))
        ctx.runtime()  # ready for a peer's first message before the peer hears of the job
        return ctx

    def start_pipeline(self, ctx: JobContext, *, resume: str | None = None) -> None:
        job = ctx.job
        current = job.driver
        if current is not None and current is not asyncio.current_task():
            current.cancel()
        job.driver = asyncio.get_running_loop().create_task(
            pipeline.drive(ctx, resume_reason=resume, steps=self.steps), name=f"{job.job_id}-pipeline")

    async def forget(self, job_id: str) -> None:
        job = self.jobs.forget(job_id)
        if job is not None and job.runtime is not None:
            await job.runtime.close()
        self.store.delete(job_id)

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stability(self) -> Iterator[dict[str, Any]]:
        """Each succeeded scorecard job's stability here, for /metrics at scrape time (from memory once loaded)."""
        for job in list(self.jobs):
            if job.record.state == JobState.SUCCEEDED:
                report = served_stability(LiveJob(self, self.ledgers, job))
                if report is not None:
                    yield report

    # -- start and stop ------------------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Pick up jobs that were running when this service stopped; start the checkpoint sweep and lending."""
        limits = self.config.limits
        retention.sweep_checkpoints(self.jobs.records(), self.store, limits)  # what outlived its window meanwhile
        for job in self.jobs:
            if not job.record.finished:
                self._recover(LiveJob(self, self.ledgers, job))
        self.spawn(retention.sweep_forever(self.jobs.records, self.store, limits))
        await self.lending.start()  # a lender reloads its tag set and budgets, or publishes

    def _recover(self, ctx: LiveJob) -> None:
        """What a job that was running when this service stopped becomes now."""
        record = ctx.record
        damage = None
        try:
            aligned = self.kind == "arbiter" or self.store.load_alignment(record.job_id) is not None
        except JobError as exc:  # a damaged alignment file: this job cannot continue here
            aligned, damage = False, str(exc)
        if self.kind == "label" and record.stage in (Stage.CONTRIBUTIONS, Stage.LEDGER):
            # Trained, evaluated and saved before it stopped: the model stands; what followed is lost.
            lost = f"party B restarted during the job's {record.stage} stage; submit the job again for them"
            changes: dict[str, Any] = {"ledger": {"entry": None, "signatures_verified": False, "reason": lost}}
            if record.stage == Stage.CONTRIBUTIONS:
                changes["contributions"] = {"error": lost}
            ctx.advance(Stage.DONE, **changes)
            ctx.event("succeeded (%s)", lost, level=logging.WARNING)
            return
        if self.kind == "arbiter" and record.state == JobState.PENDING and damage is None:
            ctx.runtime()  # the arbiter has no part in the alignment: nothing was lost
            return
        # Stopped during alignment: the PSI resumes from the buckets finished before (psi.buckets).
        aligning = record.state == JobState.ALIGNING and not aligned and damage is None
        if (record.state != JobState.TRAINING or not aligned) and not aligning:
            self._fail_at_start(ctx, damage or f"party {record.role} restarted while the job was {record.state}; "
                                               "submit it again")
            return
        # Fence: anything still in flight for the old generation is now stale here.
        ctx.advance(Stage.INTERRUPTED, generation=record.generation + 1)
        ctx.runtime()
        if self.kind != "label":
            self.spawn(resume.report_interruption(ctx))
            return
        try:
            resume.begin(self, ctx, f"party B ({self.me}) restarted")
        except JobError as exc:  # out of resumes: the job ends here, and the peers hear why
            self._fail_at_start(ctx, str(exc))

    def _fail_at_start(self, ctx: LiveJob, reason: str) -> None:
        ctx.advance(Stage.STOPPED, outcome=JobState.FAILED, error=reason)
        ctx.event("failed: %s", reason, level=logging.ERROR)
        self.spawn(ctx.tell_peers("fail", reason))

    async def stop_tasks(self) -> None:
        """Stop every task of this service (pipelines, runtimes, background work), and tell no one."""
        for job in self.jobs:
            if job.driver is not None:
                job.driver.cancel()
        for task in list(self._background):
            task.cancel()
        for job in self.jobs:
            if job.runtime is not None:
                await job.runtime.close()

    async def shutdown(self) -> None:
        await self.stop_tasks()
        flush_counters(self.jobs, self.store)
        self.releases.write_all()
        await self.lending.stop()
        self.data.close()  # a database's connection pool
        self.store.close()
        await self.client.aclose()


__all__ = ["Node"]
