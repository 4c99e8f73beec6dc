"""One job of a running service, as its stages see it: the Node's implementation of :class:`JobContext`.

A :class:`LiveJob` is a thin view: the job's in-memory state (:class:`~vfl.service.jobs.Job`)
and the service's parts it may use. It owns the moves every stage shares:
advancing the lifecycle (the one writer of a job's state and stage at this
service), the job's runtime and its watchdog, checkpoints, failure and
cancellation (which a party always tells the others), and receiving a
protocol message from a peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from vfl.compute.engine import Engine
from vfl.data.table import PartyTable
from vfl.errors import JobCancelled, JobError, NotReady, VFLError
from vfl.ml.config import TrainingConfig
from vfl.protocol.role import Envelope
from vfl.protocol.roster import Roster, RoleKind
from vfl.service import watchdog
from vfl.service.config import ServiceConfig
from vfl.service.context import ServiceContext
from vfl.service.datasets import Datasets
from vfl.service.jobs import Job
from vfl.service.ledger_copies import LedgerCopies
from vfl.service.lifecycle import JobState, Stage
from vfl.service.logs import job_event
from vfl.service.peers import PeerClient
from vfl.service.record import DamagedJobRecord, JobRecord
from vfl.service.redact import local_paths, redact
from vfl.service.runtime import JobRuntime
from vfl.service.serving import timings
from vfl.service.releases import Releases
from vfl.service.spec import JobSpec
from vfl.service.stages import submit
from vfl.service.store import JobStore
from vfl.service.telemetry import Telemetry
from vfl.service.training_roles import after_message

log = logging.getLogger("vfl.service")


class LiveJob:
    """The context of one job at a running service (see :class:`vfl.service.context.JobContext`)."""

    def __init__(self, service: ServiceContext, ledgers: LedgerCopies, job: Job) -> None:
        self._service = service
        self._ledgers = ledgers
        self._job = job

    # -- what it may read ------------------------------------------------------------------------------

    @property
    def job(self) -> Job:
        return self._job

    @property
    def record(self) -> JobRecord:
        return self._job.record

    @property
    def me(self) -> str:
        return self._service.me

    @property
    def kind(self) -> RoleKind:
        return self._service.kind

    @property
    def config(self) -> ServiceConfig:
        return self._service.config

    @property
    def store(self) -> JobStore:
        return self._service.store

    @property
    def data(self) -> Datasets:
        return self._service.data

    @property
    def client(self) -> PeerClient:
        return self._service.client

    @property
    def engine(self) -> Engine:
        return self._service.engine

    @property
    def telemetry(self) -> Telemetry:
        return self._service.telemetry

    @property
    def ledgers(self) -> LedgerCopies:
        return self._ledgers

    @property
    def releases(self) -> Releases:
        return self._service.releases

    @property
    def roster(self) -> Roster:
        return self.record.parties

    def training_config(self) -> TrainingConfig:
        return self.record.training_config()

    def own_table(self) -> PartyTable:
        """This party's whole dataset as the job prepares it (the dataset's keys, the job's "prepare" entry)."""
        record = self.record
        model = self.training_config().model if self.kind == "label" else None
        return self.data.table(str(record.dataset), model, record.prepare(self.me))

    def aligned_table(self) -> PartyTable:
        """This party's rows of the intersection, in the shared order."""
        record = self.record
        ids = self.store.load_alignment(record.job_id)
        if ids is None:
            raise JobError(f"job {record.job_id}: alignment has not finished at party {record.role}")
        table = self.own_table()
        return table.take(table.rows_for(ids))

    # -- the record: the one writer of its state and stage here -------------------------------------------

    def advance(self, to: Stage, *, outcome: JobState | None = None, **changes: Any) -> None:
        record = self.record
        record.advance(to, outcome=outcome)
        for key, value in changes.items():
            setattr(record, key, value)
        self.store.save(record)

    def update(self, **changes: Any) -> None:
        if "state" in changes or "stage" in changes:
            raise TypeError("a job's state and stage change only through advance()")
        for key, value in changes.items():
            setattr(self.record, key, value)
        self.store.save(self.record)

    def event(self, text: str, *args: object, level: int = logging.INFO) -> None:
        job_event(self.record.job_id, text, *args, level=level)
        try:
            message = text % args if args else text
        except (TypeError, ValueError):
            message = " ".join([text, *map(str, args)])
        record = self.record
        if not isinstance(record, DamagedJobRecord):
            record.note(logging.getLevelName(level).lower(), message)
            if record.finished:  # a running job's next save keeps the line; a finished one may not be saved again
                self.store.save(record)

    # -- the runtime ----------------------------------------------------------------------------------------

    def runtime(self) -> JobRuntime:
        job, record = self._job, self.record
        if job.runtime is None:
            runtime = JobRuntime(
                record.job_id, record.own_id(self.me),
                send=self._send,
                on_handled=lambda role, message, out: after_message(self, role, message, out),
                on_failure=lambda reason, cancelled: self.fail(reason, cancelled=cancelled),
                synchronous=self.kind == "arbiter",  # the arbiter answers each decryption inside the request
                generation=record.generation,
                max_vector_length=self.config.limits.max_vector_length,
            )
            runtime.start()
            job.runtime = runtime
            job.trained = asyncio.Event()  # this runtime's training role is not done yet
            self.spawn(watchdog.watch(self, runtime))
        return job.runtime

    async def fresh_runtime(self) -> JobRuntime:
        await self.close_runtime()
        self._job.persisted = None
        return self.runtime()

    async def close_runtime(self) -> None:
        runtime, self._job.runtime = self._job.runtime, None
        if runtime is not None:
            await runtime.close()

    async def _send(self, envelope: Envelope, generation: int) -> int:
        peer_id = self.record.peers[envelope.recipient]
        size = await self.client.send_message(peer_id, self.record.job_id, envelope.message, generation)
        self.telemetry.message(peer_id, "sent", size)
        return size

    async def receive(self, caller: str, frame: bytes, kind: str, generation: int = 0) -> str:
        """A protocol message from a peer: "accepted", "duplicate" or "stale", or an error (a 4xx)."""
        record = self.record
        sender = record.protocol_id(caller, self.me)  # the roster id Role.check looks up
        self.telemetry.message(caller, "received", len(frame))
        runtime = self._job.runtime
        if runtime is not None and generation < runtime.generation:
            return "stale"  # in flight when a party went down; the job has moved on
        if record.finished:
            error = JobCancelled if record.state == "cancelled" else JobError
            raise error(f"job {record.job_id} {record.state_phrase(already=True)}: {record.error}")
        if runtime is None:
            raise JobError(f"job {record.job_id} is not running here")
        try:
            return await runtime.receive(sender, frame, kind, generation)
        except NotReady:
            raise  # only early: the sender retries it, nothing was refused
        except VFLError as exc:
            # Every party keeps a record of every message it refused, and from whom.
            self.store.audit(record.job_id, f"refused {kind} from {caller} ({record.name_of(caller)}): "
                                            f"{type(exc).__name__}: {exc}")
            raise

    def checkpoint(self, role: Any) -> None:
        snapshot = getattr(role, "snapshot", None)
        if snapshot is not None and snapshot is not self._job.persisted:
            self.store.save_checkpoint(self.record.job_id, int(snapshot["epoch"]), snapshot)
            self._job.persisted = snapshot

    # -- stopping ---------------------------------------------------------------------------------------------

    async def fail(self, reason: str, *, cancelled: bool = False, notify: bool = True) -> None:
        job, record = self._job, self.record
        if record.finished or self._service.jobs.get(record.job_id) is not job:
            return  # already stopped, or dropped: nothing left to stop
        self.advance(Stage.STOPPED, outcome=JobState.CANCELLED if cancelled else JobState.FAILED, error=reason)
        job.epoch_began = None
        if cancelled:
            self.event("cancelled: %s", reason, level=logging.WARNING)
            # A cancelled job never resumes, so its checkpoints (the arbiter's hold its private key) go now;
            # sealing makes the store refuse one that a message still being handled writes.
            self.store.drop_checkpoints(record.job_id, seal=True)
        else:
            self.event("failed: %s", reason, level=logging.ERROR)
        driver, job.driver = job.driver, None
        if driver is not None and driver is not asyncio.current_task():
            driver.cancel()
        runtime, job.runtime = job.runtime, None
        if runtime is not None:
            runtime.closed = True  # deliveries still in flight may fail quietly now
        job.release_waiters()
        if notify:
            await self.tell_peers("cancel" if cancelled else "fail", reason)
        if runtime is not None:
            self.spawn(runtime.close())
        if record.kind == "label" and record.coalition_of is None:
            self.spawn(self._keep_peer_timings(record.generation))

    async def _keep_peer_timings(self, generation: int) -> None:
        """Party B, a job that failed or was cancelled: each peer's timings too, for where the time went.

        Asked once the peers were told (they answer only for a job that ended
        there); a peer that is down, or not told yet, is "not available". In the
        background: a failure never waits for its peers. Dropped if the job
        resumed meanwhile (its record is no longer this ended one).
        """
        answers = await timings.ask_peers(self)
        record = self.record
        if record.finished and record.generation == generation and self._service.jobs.get(record.job_id) is self._job:
            self.update(peer_timings=answers)

    async def tell_peers(self, what: str, reason: str = "") -> None:
        # Peers are other organisations: they get the reason without our local paths; the full
        # reason stays in our job record and in the log.
        record = self.record
        public = redact(reason, local_paths(self.config))
        generation = record.generation  # as it is now: a resume while we retry must not be undone by this notice
        if reason:  # the reason itself is in the job's "failed:" or "cancelled:" line
            log.debug("job %s: telling peers (%s): %s", record.job_id, what, reason)
        for peer_id in record.peer_ids(self.me):
            try:
                await self.client.call_json(
                    peer_id, "POST", f"/v1/peer/jobs/{record.job_id}/{what}",
                    {"reason": f"party {record.role} ({self.me}): {public}", "generation": generation},
                )
            except VFLError as exc:  # best effort: the peer may be the one that is down
                log.warning("could not tell %s about job %s (%s): %s", peer_id, record.job_id, what, exc)

    # -- jobs on this job's behalf ---------------------------------------------------------------------------

    async def submit_child(self, spec: JobSpec) -> JobRecord:
        return await submit.submit(self._service, spec, coalition_of=self.record.job_id)

    def child(self, job_id: str) -> JobRecord | None:
        job = self._service.jobs.get(job_id)
        if job is None or job.record.coalition_of != self.record.job_id:
            return None
        return job.record

    async def cancel_child(self, job_id: str, reason: str) -> None:
        child = self._service.jobs.get(job_id)
        if child is not None:
            await LiveJob(self._service, self._ledgers, child).fail(reason, cancelled=True)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._service.spawn(coroutine)


__all__ = ["LiveJob"]
