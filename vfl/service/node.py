"""One running service (party A, party B or the arbiter) and its jobs.

The HTTP apps in ``parties/`` and ``arbiter/`` call these methods and nothing
else. Party B drives each job:

1. ``submit``: check the spec and B's own dataset, register the job with A and
   C (each checks it against its own config and may refuse; a refusal undoes
   everything), answer the orchestrator, and start the driver.
2. Aligning: RSA blind-signature PSI between A and B, over the job's message
   endpoints. Each side stores its aligned IDs.
3. Training: B tells C and A the aligned row count; C makes its key; A and B
   ask C for the public key and the four-step protocol runs. Every party
   checkpoints its role after every epoch (and before the first).
4. Evaluation: A sends B its partial scores for the aligned rows (as for any
   prediction); B computes the metrics and a bank-only baseline on the same
   rows, saves its model part, tells A and C to drop their checkpoints, and
   the job has succeeded.

Surviving a crash. A restarted service raises the job's generation at once,
so messages still in flight for the old one are dropped as stale, and tells
party B (or, if it is B, acts itself). B asks A and C which epochs they have
checkpoints for, takes the newest that all three have, and restores itself,
then C, then A, which starts the next epoch. Batches are seeded and
arithmetic is exact, so the job ends with the same model as an uninterrupted
run. ``POST /v1/jobs/{id}/resume`` on B does the same by hand, for a job that
failed because a peer stayed down too long.

Any party that fails a job tells the others, so all three end in ``failed``
with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any

import numpy as np

from psi.protocol import PsiKeyHolder, PsiRequester
from vfl.config import TrainingConfig
from vfl.crypto.keys import PrivateKey
from vfl.data import PartyTable, load_csv
from vfl.errors import (
    ConfigError,
    DataError,
    JobCancelled,
    JobError,
    LimitExceeded,
    NotReady,
    PeerNotAllowed,
    PeerRefused,
    ProtocolError,
    RateLimited,
    UnknownJobError,
    VFLError,
)
from vfl.metrics import model_metrics
from vfl.model_parts import ModelPartA, ModelPartB
from vfl.parallel import resolve_workers
from vfl.plaintext import train_plaintext
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.messages import EpochDecision, Message, Party
from vfl.protocol.parties import PartyA, PartyB
from vfl.protocol.role import Envelope, Role
from vfl.protocol.schedule import gradient_lengths
from vfl.report.job import curves_for
from vfl.service import alignment
from vfl.service.client import PeerClient
from vfl.service.config import ServiceConfig
from vfl.service.redact import local_paths, redact
from vfl.service.runtime import JobRuntime
from vfl.service.spec import JobSpec, Registration, ResumeRequest, TrainingStart, new_job_id
from vfl.service.store import JobRecord, JobStore

log = logging.getLogger("vfl.service")

TrainingRole = PartyA | PartyB | Arbiter


class Node:
    def __init__(self, config: ServiceConfig, *, transport: Any = None) -> None:
        self.config = config
        self.party: Party = config.role
        self.store = JobStore(config.party.data_dir)
        self.records: dict[str, JobRecord] = self.store.load_all(role=self.party)
        self.client = PeerClient(config, transport=transport)
        self.workers = resolve_workers(config.limits.workers)
        self.runtimes: dict[str, JobRuntime] = {}
        self.drivers: dict[str, asyncio.Task] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.psi_started: dict[str, float] = {}
        self.psi_done: dict[str, asyncio.Event] = {}
        self._tables: dict[str, tuple[float, PartyTable]] = {}
        self._persisted: dict[str, dict[str, Any]] = {}
        self._background: set[asyncio.Task] = set()
        self._coordinating: set[str] = set()  # jobs whose resume is asking the parties right now
        self._score_times: dict[str, deque[float]] = {}  # party A: recent scoring requests per job

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Pick up jobs that were running when this service stopped; start the checkpoint sweep."""
        self.sweep_checkpoints()  # what outlived its resume window while this service was down
        for record in list(self.records.values()):
            if record.finished:
                continue
            damage = None
            try:
                aligned = self.party == "C" or self.store.load_alignment(record.job_id) is not None
            except JobError as exc:  # a damaged alignment file: this job cannot continue here
                aligned, damage = False, str(exc)
            if record.state != "training" or not aligned:
                reason = damage or f"party {self.party} restarted while the job was {record.state}; submit it again"
                self._save(record, state="failed", stage="stopped", error=reason)
                self._spawn(self._tell_peers(record, "fail", reason))
                continue
            # Fence: anything still in flight for the old generation is now stale here.
            self._save(record, generation=record.generation + 1, stage="interrupted")
            self._runtime(record)
            if self.party == "B":
                try:
                    self._start_resume(record, f"party B ({self.config.party.id}) restarted")
                except JobError as exc:  # out of resumes: the job ends here, and the peers hear why
                    self._save(record, state="failed", stage="stopped", error=str(exc))
                    self._spawn(self._tell_peers(record, "fail", str(exc)))
            else:
                self._spawn(self._report_interruption(record))
        self._spawn(self._sweep_forever())  # a background task: shutdown cancels it with the others

    async def shutdown(self) -> None:
        for task in list(self.drivers.values()) + list(self._background):
            task.cancel()
        for runtime in list(self.runtimes.values()):
            await runtime.close()
        await self.client.aclose()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- retention: checkpoints outlive their use only as long as a resume may need them ------------

    def sweep_checkpoints(self) -> list[str]:
        """Delete the checkpoints of finished jobs that can no longer resume; return those jobs' ids.

        Checkpoints can hold the arbiter's private key, so they go as soon as they are no use:
        a cancelled job's at once (``fail`` deletes them too; this catches a party that was down
        then), and a failed, damaged or succeeded job's once ``limits.resume_window`` seconds have
        passed since it stopped. A succeeded job keeps them for the window as well, because A and C
        succeed before B has evaluated the model, and a crash of B then still resumes from them; B
        normally tells them to delete their checkpoints long before the window ends.
        """
        window = self.config.limits.resume_window
        now = time.time()
        swept = []
        for record in list(self.records.values()):
            if not record.finished or not self.store.has_checkpoints(record.job_id):
                continue
            stopped = record.stopped_at or record.updated_at  # records from before stopped_at existed
            if record.state == "cancelled" or now - stopped >= window:
                self.store.drop_checkpoints(record.job_id)
                log.info("job %s (%s): checkpoints deleted (resume window of %gs)", record.job_id, record.state, window)
                swept.append(record.job_id)
        return swept

    async def _sweep_forever(self) -> None:
        """Run the checkpoint sweep a few times per resume window (at least once an hour)."""
        interval = max(0.1, min(self.config.limits.resume_window, 3600.0) / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep_checkpoints()
            except Exception:  # noqa: BLE001 - one unreadable folder must not end the sweep for good
                log.exception("checkpoint sweep failed; trying again in %gs", interval)

    # -- look-ups -----------------------------------------------------------------------

    def record(self, job_id: str) -> JobRecord:
        record = self.records.get(job_id)
        if record is None:
            raise UnknownJobError(f"no job {job_id!r} at party {self.config.party.id!r}")
        return record

    def peer_role(self, peer_id: str) -> Party:
        """The role letter of a calling peer; an unknown caller is refused."""
        peer = self.config.peers.get(peer_id)
        if peer is None:
            raise PeerNotAllowed(f"{peer_id!r} is not a configured peer of {self.config.party.id!r}")
        return peer.role

    def _require_peer(self, record: JobRecord, peer_id: str, role: Party) -> None:
        if record.peers.get(role) != peer_id:
            raise PeerNotAllowed(f"{peer_id!r} is not party {role} of job {record.job_id}")

    def table(self, name: str, model: str | None = None) -> PartyTable:
        """This party's dataset by name, loaded once and reloaded when the file changes."""
        dataset = self.config.datasets.get(name)
        if dataset is None:
            known = ", ".join(sorted(self.config.datasets)) or "none"
            raise DataError(f"party {self.config.party.id!r} has no dataset named {name!r}; it has: {known}")
        # Messages name the file for our operators; ``public`` names the dataset instead, for peers,
        # who ask for datasets by name and have no business knowing our paths (vfl.service.redact).
        try:
            mtime = os.path.getmtime(dataset.path)
        except OSError as exc:
            raise DataError(f"dataset {name!r}: cannot read {dataset.path} ({exc})",
                            public=f"dataset {name!r}: cannot read its file ({exc.strerror or type(exc).__name__})",
                            ) from exc
        cached = self._tables.get(name)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            table = load_csv(
                dataset.path, id_column=dataset.id_column, label_column=dataset.label_column, model=model,
                max_bytes=self.config.limits.max_csv_bytes,
            )
        except DataError as exc:  # load_csv starts each message with the file's path
            exc.public = str(exc).replace(str(dataset.path), f"dataset {name!r}")
            raise
        self._tables[name] = (mtime, table)
        return table

    def model_part(self, job_id: str) -> dict[str, Any]:
        record = self.record(job_id)
        model = self.store.load_model(job_id)
        if model is None:
            raise JobError(f"job {job_id} has no model at party {self.config.party.id!r} (state {record.state})")
        return model

    def _training_config(self, record: JobRecord) -> TrainingConfig:
        return TrainingConfig.model_validate(record.spec["training"])

    def _aligned_table(self, record: JobRecord) -> PartyTable:
        """This party's rows of the intersection, in the shared order."""
        ids = self.store.load_alignment(record.job_id)
        if ids is None:
            raise JobError(f"job {record.job_id}: alignment has not finished at party {self.party}")
        table = self.table(record.dataset, self._training_config(record).model if self.party == "B" else None)
        return table.take(table.rows_for(ids))

    # -- bookkeeping ----------------------------------------------------------------------

    def _save(self, record: JobRecord, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(record, key, value)
        self.store.save(record)

    def _runtime(self, record: JobRecord) -> JobRuntime:
        runtime = self.runtimes.get(record.job_id)
        if runtime is None:
            runtime = JobRuntime(
                record.job_id, self.party,
                send=lambda env, generation: self._send(record, env, generation),
                on_handled=lambda role, msg, out: self._on_handled(record, role, msg, out),
                on_failure=lambda reason, cancelled: self.fail(
                    record.job_id, reason, state="cancelled" if cancelled else "failed"
                ),
                synchronous=self.party == "C",
                generation=record.generation,
                max_vector_length=self.config.limits.max_vector_length,
            )
            runtime.start()
            self.runtimes[record.job_id] = runtime
            self.done[record.job_id] = asyncio.Event()
            self._spawn(self._watchdog(record, runtime))
        return runtime

    async def _watchdog(self, record: JobRecord, runtime: JobRuntime) -> None:
        """While the job runs here, probe the other parties whenever it has been idle a while.

        A party waiting for a message from a peer that died would otherwise wait for
        ever. A peer unreachable for ``peer_timeout`` fails the job; a peer that
        reports the job failed or cancelled is followed.
        """
        interval = self.config.limits.heartbeat
        while not runtime.closed and not record.finished:
            await asyncio.sleep(interval)
            if runtime.closed or record.finished or record.state not in ("aligning", "training"):
                continue
            idle = time.monotonic() - runtime.last_activity
            if idle < interval:
                continue
            if idle > self.config.limits.idle_timeout:
                # Every party answers, yet nobody sends: one of them stopped taking part.
                await self.fail(record.job_id, f"no protocol message for {idle:.0f}s (limits.idle_timeout = "
                                f"{self.config.limits.idle_timeout:g}s): a party stopped taking part in the job")
                return
            for role, peer_id in record.peers.items():
                if role == self.party:
                    continue
                try:
                    info = await self.client.call_json(peer_id, "GET", f"/v1/peer/jobs/{record.job_id}/state")
                except VFLError as exc:
                    if not runtime.closed and not record.finished:
                        await self.fail(record.job_id, f"party {role} stopped answering: {exc}")
                    return
                training = runtime.roles.get("train")
                if info.get("state") == "succeeded" and training is not None and not training.done:
                    # Training ends for all at the same decision: a peer that finished while we still train deviated.
                    await self.fail(record.job_id, f"party {role} ({peer_id}) reports the job succeeded while "
                                    f"party {self.party} is still training: it stopped taking part")
                    return
                stale = info.get("state") == "failed" and int(info.get("generation", 0)) < record.generation
                if info.get("state") in ("failed", "cancelled", "damaged") and not record.finished and not stale:
                    state = "cancelled" if info["state"] == "cancelled" else "failed"
                    await self.fail(record.job_id, f"party {role} ({peer_id}) reports the job {info['state']}: "
                                    f"{info.get('error')}", notify=False, state=state)
                    return

    async def _fresh_runtime(self, record: JobRecord) -> JobRuntime:
        """Replace the job's runtime (on resume): queues, dedup memory and tasks start over."""
        old = self.runtimes.pop(record.job_id, None)
        if old is not None:
            await old.close()
        self._persisted.pop(record.job_id, None)
        return self._runtime(record)

    async def _send(self, record: JobRecord, envelope: Envelope, generation: int) -> int:
        peer_id = record.peers[envelope.recipient]
        return await self.client.send_message(peer_id, record.job_id, envelope.message, generation)

    def _checkpoint(self, record: JobRecord, role: Any) -> None:
        """Store the role's latest epoch-boundary snapshot, once."""
        snapshot = getattr(role, "snapshot", None)
        if snapshot is not None and snapshot is not self._persisted.get(record.job_id):
            self.store.save_checkpoint(record.job_id, int(snapshot["epoch"]), snapshot)
            self._persisted[record.job_id] = snapshot

    async def _on_handled(self, record: JobRecord, role: Role, message: Message, out: list[Envelope]) -> None:
        """Progress after each message: epochs, losses, checkpoints, and the end of a role's work."""
        if isinstance(role, (PsiKeyHolder, PsiRequester)):
            if role.done:
                if isinstance(role, PsiKeyHolder):
                    alignment.key_holder_finished(self, record, role, self.runtimes[record.job_id])
                self.psi_done.setdefault(record.job_id, asyncio.Event()).set()
            return
        if isinstance(role, Arbiter) and role.new_ledger_entries:
            self.store.append_ledger(record.job_id, role.new_ledger_entries)
            role.new_ledger_entries = []
        decisions = [e.message for e in out if isinstance(e.message, EpochDecision)]
        if isinstance(message, EpochDecision):
            decisions.append(message)
        for decision in decisions:
            record.epoch = decision.epoch + 1
            if decision.train_loss is not None:
                del record.loss_history[decision.epoch :]
                record.loss_history.append(decision.train_loss)
                del record.validation_loss_history[decision.epoch :]
                if decision.validation_loss is not None:
                    record.validation_loss_history.append(decision.validation_loss)
            record.stop_reason = decision.reason
        if decisions:
            self._checkpoint(record, role)
            self.store.save(record)
        if role.done and not self.done[record.job_id].is_set():
            if isinstance(role, PartyA):
                part = role.model()
                self.store.save_model(record.job_id, {**part.to_dict(), "dataset": record.dataset})
                record.parameters = role.trajectory()
                self._save(record, state="succeeded", stage="done")
            elif isinstance(role, Arbiter):
                self._save(record, state="succeeded", stage="done")
            self.done[record.job_id].set()

    # -- failure, cancellation ---------------------------------------------------------------

    async def fail(self, job_id: str, reason: str, *, notify: bool = True, state: str = "failed") -> None:
        record = self.records.get(job_id)
        if record is None or record.finished:
            return
        self._save(record, state=state, stage="stopped", error=reason)
        if state == "cancelled":
            # A cancelled job never resumes, so its checkpoints (the arbiter's hold its private key)
            # go now; sealing makes the store refuse one that a message still being handled writes.
            self.store.drop_checkpoints(job_id, seal=True)
        driver = self.drivers.pop(job_id, None)
        if driver is not None and driver is not asyncio.current_task():
            driver.cancel()
        runtime = self.runtimes.pop(job_id, None)
        if runtime is not None:
            runtime.closed = True  # deliveries still in flight may fail quietly now
        for events in (self.done, self.psi_done):
            if job_id in events:
                events[job_id].set()
        if notify:
            await self._tell_peers(record, "cancel" if state == "cancelled" else "fail", reason)
        if runtime is not None:
            self._spawn(runtime.close())

    async def _tell_peers(self, record: JobRecord, what: str, reason: str = "") -> None:
        # Peers are other organisations: they get the reason without our local paths; the full
        # reason stays in our job record and in this log line.
        public = redact(reason, local_paths(self.config))
        generation = record.generation  # as it is now: a resume while we retry must not be undone by this notice
        if reason:
            log.warning("job %s: telling peers (%s): %s", record.job_id, what, reason)
        for role, peer_id in record.peers.items():
            if role == self.party:
                continue
            try:
                await self.client.call_json(
                    peer_id, "POST", f"/v1/peer/jobs/{record.job_id}/{what}",
                    {"reason": f"party {self.party} ({self.config.party.id}): {public}", "generation": generation},
                )
            except VFLError as exc:  # best effort: the peer may be the one that is down
                log.warning("could not tell %s about job %s (%s): %s", peer_id, record.job_id, what, exc)

    async def cancel(self, job_id: str) -> JobRecord:
        record = self.record(job_id)
        if record.finished:
            raise JobError(f"job {job_id} has already {record.state}; nothing to cancel")
        await self.fail(job_id, "cancelled by an orchestration call", state="cancelled")
        return record

    async def peer_stopped(self, job_id: str, peer_id: str, reason: str, *, cancelled: bool,
                           generation: int = 0) -> None:
        record = self.record(job_id)
        if peer_id not in record.peers.values():
            raise PeerNotAllowed(f"{peer_id!r} takes no part in job {job_id}")
        if not cancelled and generation < record.generation:
            # Sent before the job resumed (the sender retried while a link was down): it is history.
            log.info("job %s: ignoring %s's failure notice from generation %d (now %d): %s",
                     job_id, peer_id, generation, record.generation, reason)
            return
        await self.fail(job_id, reason, notify=False, state="cancelled" if cancelled else "failed")

    async def finished(self, job_id: str, caller: str) -> None:
        """B has the final model: checkpoints (the arbiter's hold its private key) can go."""
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        self.store.drop_checkpoints(job_id)

    # -- party B: submitting and driving a job ---------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobRecord:
        if self.party != "B":
            raise ConfigError("jobs are submitted to party B, which holds the labels")
        job_id = spec.job_id or new_job_id()
        if job_id in self.records or self.store.exists(job_id):
            raise JobError(f"a job with id {job_id!r} already exists; choose another job_id")
        a_id = spec.party_a.peer
        if self.config.peers.get(a_id) is None or self.config.peers[a_id].role != "A":
            raise ConfigError(f"{a_id!r} is not a configured party A peer of {self.config.party.id!r}")
        c_id = spec.arbiter.peer if spec.arbiter else self.config.peer_of_role("C")[0]
        if self.config.peers.get(c_id) is None or self.config.peers[c_id].role != "C":
            raise ConfigError(f"{c_id!r} is not a configured arbiter peer of {self.config.party.id!r}")
        self._check_key_sizes(spec.training, spec.psi.key_bits)
        table = await asyncio.to_thread(self.table, spec.party_b.dataset, spec.training.model)
        parties = {"A": a_id, "B": self.config.party.id, "C": c_id}
        record = JobRecord(
            job_id=job_id, role="B", spec=spec.model_dump(mode="json") | {"job_id": job_id},
            dataset=spec.party_b.dataset, peers=parties, max_epochs=spec.training.epochs,
        )
        # B must be ready for A's first PSI message before A hears of the job.
        self.store.create(record)
        self.records[job_id] = record
        registered: list[str] = []
        try:
            self._runtime(record)
            await self._register_with_peers(record, spec, table, registered)
        except Exception as exc:  # whatever went wrong, nothing may be left half-created anywhere
            await self._undo_submission(job_id, registered, str(exc))
            if isinstance(exc, PeerRefused) and exc.status is not None and 400 <= exc.status < 500:
                raise ConfigError(f"job refused: {exc}") from exc
            if isinstance(exc, VFLError):
                raise
            log.exception("job %s: submit crashed; withdrawn everywhere", job_id)
            raise VFLError(f"internal error while submitting job {job_id} ({exc!r}); it was withdrawn "
                           "everywhere, nothing is left behind") from exc
        self.drivers[job_id] = asyncio.get_running_loop().create_task(self._drive(record, table))
        return record

    async def _register_with_peers(self, record: JobRecord, spec: JobSpec, table: PartyTable,
                                   registered: list[str]) -> None:
        """Register the job with A, which confirms its feature count, then with C, which gets both lengths.

        The lengths C will decrypt come from here (B's own count and the one A
        states), never from a party's own key request: see :mod:`vfl.protocol.arbiter`.
        """
        parties = record.peers
        n_b = gradient_lengths(0, table.features.shape[1], spec.training)["B"]
        to_a = {"B": n_b} | ({"A": spec.party_a.n_features} if spec.party_a.n_features else {})
        registration = Registration(job_id=record.job_id, parties=parties, training=spec.training, psi=spec.psi,
                                    dataset=spec.party_a.dataset, gradient_lengths=to_a, psi_ids=len(table))
        registered.append(parties["A"])  # before the call: a registration that timed out may still have landed
        answer = await self.client.call_json(parties["A"], "POST", "/v1/peer/jobs", registration.model_dump(mode="json"))
        lengths = {"A": _confirmed_length(answer), "B": n_b}
        self._save(record, gradient_lengths=lengths)
        to_c = registration.model_copy(update={"dataset": None, "gradient_lengths": lengths})
        registered.append(parties["C"])
        await self.client.call_json(parties["C"], "POST", "/v1/peer/jobs", to_c.model_dump(mode="json"))

    async def _undo_submission(self, job_id: str, registered: list[str], reason: str) -> None:
        """Submitting failed: withdraw the job everywhere, so nothing is left half-created."""
        for peer_id in registered:
            try:
                await self.client.call_json(peer_id, "POST", f"/v1/peer/jobs/{job_id}/forget",
                                            {"reason": redact(reason, local_paths(self.config))[:4000]})
            except VFLError:
                log.warning("could not undo registration of %s at %s", job_id, peer_id)
        runtime = self.runtimes.pop(job_id, None)
        if runtime is not None:
            await runtime.close()
        self.records.pop(job_id, None)
        self.done.pop(job_id, None)
        self.store.delete(job_id)

    def _check_key_sizes(self, training: TrainingConfig, psi_bits: int) -> None:
        floor = self.config.limits.min_key_bits
        for what, bits in (("training.key_bits", training.key_bits), ("psi.key_bits", psi_bits)):
            if bits < floor:
                raise ConfigError(f"{what}={bits} is below this service's minimum of {floor} bits")

    async def _drive(self, record: JobRecord, table: PartyTable) -> None:
        runtime = self.runtimes[record.job_id]
        spec = JobSpec.model_validate(record.spec)
        started = time.perf_counter()
        try:
            self._save(record, state="aligning", stage="psi")
            rows_b, summary = await alignment.align_as_requester(self, record, runtime, table)
            aligned = table.take(rows_b)
            self.store.save_alignment(record.job_id, aligned.ids)
            self._save(record, alignment=summary, n_rows=len(aligned),
                       timings={"alignment": round(time.perf_counter() - started, 3)})

            self._save(record, state="training", stage="training")
            role = await asyncio.to_thread(self._party_role, record, spec.training, aligned)
            self._checkpoint(record, role)
            start = TrainingStart(n_rows=len(aligned)).model_dump()
            await self.client.call_json(record.peers["C"], "POST", f"/v1/peer/jobs/{record.job_id}/start", start)
            await self.client.call_json(record.peers["A"], "POST", f"/v1/peer/jobs/{record.job_id}/start", start)
            await runtime.add_role("train", role, role.start())
            await self._finish(record, role, aligned, started)
        except asyncio.CancelledError:
            raise
        except VFLError as exc:
            await self.fail(record.job_id, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job with a message, not hang it
            log.exception("job %s crashed", record.job_id)
            await self.fail(record.job_id, f"internal error: {exc!r}")

    async def _finish(self, record: JobRecord, role: PartyB, aligned: PartyTable, started: float) -> None:
        """Wait for training to end, evaluate, and close the job everywhere."""
        trained = time.perf_counter()
        if not role.done:
            await self.done[record.job_id].wait()
        runtime = self.runtimes.get(record.job_id)
        if runtime is None or runtime.failed or record.finished:
            return
        record.timings["training"] = round(time.perf_counter() - trained, 3)
        self._save(record, stage="evaluating")
        await self._evaluate(record, role, aligned)
        record.timings["total"] = round(time.perf_counter() - started, 3)
        # Clean up before announcing success, so whoever sees "succeeded" also sees no checkpoints
        # (the arbiter's hold its private key) anywhere.
        self.store.drop_checkpoints(record.job_id)
        await self._tell_peers(record, "finished")
        self._save(record, state="succeeded", stage="done")
        try:
            await asyncio.to_thread(self.report, record.job_id)  # written next to the model
        except VFLError as exc:  # the job still succeeded; the report is made again on request
            log.warning("job %s: no report written: %s", record.job_id, exc)
        self.drivers.pop(record.job_id, None)
        runtime = self.runtimes.pop(record.job_id, None)
        if runtime is not None:
            await runtime.close()

    def _party_role(self, record: JobRecord, config: TrainingConfig, aligned: PartyTable) -> PartyA | PartyB:
        options = dict(feature_names=aligned.feature_names, workers=self.workers,
                       min_key_bits=self.config.limits.min_key_bits, job_lengths=record.gradient_lengths)
        if self.party == "B":
            return PartyB(record.job_id, config, aligned.features, aligned.labels, **options)
        return PartyA(record.job_id, config, aligned.features, **options)

    async def _evaluate(self, record: JobRecord, role: PartyB, aligned: PartyTable) -> None:
        """Metrics of the federated model and of a bank-only baseline on the same rows."""
        model = role.model()
        answer = await self.client.call_json(
            record.peers["A"], "POST", f"/v1/peer/jobs/{record.job_id}/scores", {"ids": aligned.ids}
        )
        u_a, available = _partial_scores(answer, len(aligned))
        if not available.all():
            raise ProtocolError(f"party A did not score {int((~available).sum())} of the job's own aligned rows")
        predictions = model.predict(aligned.features, u_a)
        schedule = role.schedule
        kind = role.config.model
        splits = {"train": schedule.train_rows}
        if schedule.has_validation:
            splits["validation"] = schedule.validation_rows
        record.metrics = {name: model_metrics(kind, aligned.labels[rows], predictions[rows]) for name, rows in splits.items()}
        record.baseline, baseline_predictions = await asyncio.to_thread(_baseline, role, aligned, splits)
        split = "validation" if schedule.has_validation else "train"
        rows = splits[split]
        record.curve_split = split
        record.curves = curves_for(kind, aligned.labels[rows], predictions[rows], baseline_predictions[rows])
        record.privacy = None if role.privacy is None else role.privacy.report()
        record.parameters = role.trajectory()
        try:
            record.party_a_convergence = await self.client.call_json(
                record.peers["A"], "GET", f"/v1/peer/jobs/{record.job_id}/convergence")
        except VFLError as exc:  # the report goes without A's panel; the model is unaffected
            log.warning("job %s: party A's convergence summary unavailable: %s", record.job_id, exc)
        self.store.save_model(record.job_id, {**model.to_dict(), "dataset": record.dataset})

    def report(self, job_id: str) -> str:
        """Party B's HTML report of a finished job (made on first request if it was not yet)."""
        if self.party != "B":
            raise ConfigError("job reports are served by party B")
        record = self.record(job_id)
        if record.state != "succeeded":
            raise JobError(f"job {job_id} is {record.state}; the report is made when it succeeds")
        page = self.store.load_report(job_id)
        if page is None:
            from vfl.report.job import figures_for, render, summary_from_record

            summary = summary_from_record(record.model_dump(mode="json"))
            page = render(summary, figures_for(summary))
            self.store.save_report(job_id, page)
        return page

    # -- party B: resuming from checkpoints ------------------------------------------------------

    async def resume(self, job_id: str) -> JobRecord:
        """Orchestration call: continue a running or failed job from the newest common checkpoint."""
        if self.party != "B":
            raise ConfigError("resume the job at party B, which coordinates it")
        record = self.record(job_id)
        if record.state in ("succeeded", "cancelled", "damaged"):
            raise JobError(f"job {job_id} has {record.state}; there is nothing to resume")
        if self.store.load_alignment(job_id) is None:
            raise JobError(f"job {job_id} stopped before alignment finished; submit it again")
        self._start_resume(record, "resume requested")
        return record

    async def peer_interrupted(self, job_id: str, caller: str, reason: str, generation: int) -> None:
        """A restarted peer reports that it lost its place in the job.

        Accepted only with evidence of a real restart: a restarted service fences
        the job by moving its generation past the one the job runs under. Each
        resume also counts against ``limits.max_resumes``; and whatever a peer
        claims, the arbiter decrypts no slot twice with different values.
        """
        record = self.record(job_id)
        if caller not in record.peers.values():
            raise PeerNotAllowed(f"{caller!r} takes no part in job {job_id}")
        if record.state == "cancelled":  # cancelled while the caller was down: it must drop the job too
            raise JobCancelled(f"job {job_id} was cancelled while {caller!r} was down")
        if record.state in ("succeeded", "damaged"):
            raise JobError(f"job {job_id} has {record.state} at party B; there is nothing to resume")
        if generation <= record.generation:
            raise JobError(
                f"{caller!r} reports a restart, but its generation {generation} has not moved past the job's "
                f"{record.generation}: a restarted service always moves it on, so this is no restart"
            )
        self._start_resume(record, reason)

    def _check_resume_budget(self, record: JobRecord) -> None:
        limit = self.config.limits.max_resumes
        if record.resumes >= limit:
            raise JobError(f"job {record.job_id} has resumed {record.resumes} times, the most this service allows "
                           f"(limits.max_resumes = {limit}); submit it again")

    def _start_resume(self, record: JobRecord, reason: str) -> None:
        if record.job_id in self._coordinating:
            return  # a resume is asking the parties right now; it will see this one too
        self._check_resume_budget(record)
        current = self.drivers.get(record.job_id)
        if current is not None:
            current.cancel()
        self._coordinating.add(record.job_id)
        self._save(record, state="training", stage="resuming", error=None)
        self.drivers[record.job_id] = asyncio.get_running_loop().create_task(self._resume_and_finish(record, reason))

    async def _resume_and_finish(self, record: JobRecord, reason: str) -> None:
        started = time.perf_counter()
        try:
            role, aligned = await self._coordinate_resume(record, reason)
        except asyncio.CancelledError:
            raise
        except VFLError as exc:
            await self.fail(record.job_id, f"could not resume: {type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s: resume crashed", record.job_id)
            await self.fail(record.job_id, f"internal error while resuming: {exc!r}")
            return
        finally:
            self._coordinating.discard(record.job_id)
        try:
            await self._finish(record, role, aligned, started)
        except asyncio.CancelledError:
            raise
        except VFLError as exc:
            await self.fail(record.job_id, f"{type(exc).__name__}: {exc}")

    async def _coordinate_resume(self, record: JobRecord, reason: str) -> tuple[PartyB, PartyTable]:
        """Ask A and C for their checkpoints, pick the newest common epoch, restore B, C, A in that order."""
        log.warning("job %s: resuming (%s)", record.job_id, reason)
        infos = {}
        for role in ("A", "C"):
            infos[role] = await self.client.call_json(
                record.peers[role], "GET", f"/v1/peer/jobs/{record.job_id}/checkpoints"
            )
        common = set(self.store.checkpoints(record.job_id))
        for info in infos.values():
            common &= set(info["epochs"])
        if not common:
            raise JobError("no epoch is checkpointed at all three parties; submit the job again")
        epoch = max(common)
        generation = max(record.generation, *(int(i["generation"]) for i in infos.values())) + 1
        self._save(record, generation=generation, resumes=record.resumes + 1, stage="resuming")
        aligned = await asyncio.to_thread(self._aligned_table, record)
        config = self._training_config(record)
        role = await asyncio.to_thread(self._party_role, record, config, aligned)
        role.load_state_dict(self.store.load_checkpoint(record.job_id, epoch))
        runtime = await self._fresh_runtime(record)
        self.done[record.job_id] = asyncio.Event()
        await runtime.add_role("train", role)  # ready before A's first message
        body = ResumeRequest(epoch=epoch, generation=generation).model_dump()
        await self.client.call_json(record.peers["C"], "POST", f"/v1/peer/jobs/{record.job_id}/resume", body)
        await self.client.call_json(record.peers["A"], "POST", f"/v1/peer/jobs/{record.job_id}/resume", body)
        del record.loss_history[epoch + 1 :]
        del record.validation_loss_history[epoch + 1 :]
        self._save(record, state="training", stage="training", epoch=epoch + 1)
        log.warning("job %s: resumed from epoch %d under generation %d", record.job_id, epoch, generation)
        await runtime.post(role.resume())
        if role.done:
            self.done[record.job_id].set()
        return role, aligned

    # -- parties A and C: checkpoints and resuming -------------------------------------------------

    async def _report_interruption(self, record: JobRecord) -> None:
        """A restarted A or C asks B to resume the job (retrying while B is unreachable)."""
        try:
            await self.client.call_json(
                record.peers["B"], "POST", f"/v1/peer/jobs/{record.job_id}/interrupted",
                {"reason": f"party {self.party} ({self.config.party.id}) restarted", "generation": record.generation},
            )
        except PeerRefused as exc:
            if exc.error == "JobCancelled":  # cancelled while we were down: drop it (and its checkpoints) too
                await self.fail(record.job_id, f"cancelled at party B while this party was down: {exc}",
                                notify=False, state="cancelled")
            else:
                await self.fail(record.job_id, f"restarted, and party B would not resume the job: {exc}", notify=False)
        except VFLError as exc:
            await self.fail(record.job_id, f"restarted, and could not reach party B to resume: {exc}", notify=False)

    def peer_state(self, job_id: str, caller: str) -> dict[str, Any]:
        """What a peer's watchdog needs: is the job alive here, and under which generation."""
        record = self.record(job_id)
        if caller not in record.peers.values():
            raise PeerNotAllowed(f"{caller!r} takes no part in job {job_id}")
        return {"state": record.state, "generation": record.generation, "error": record.error}

    def checkpoint_info(self, job_id: str, caller: str) -> dict[str, Any]:
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        return {"epochs": self.store.checkpoints(job_id), "generation": record.generation, "state": record.state}

    async def resume_role(self, job_id: str, request: ResumeRequest, caller: str) -> JobRecord:
        """B's instruction: restore the state after ``request.epoch`` and continue under a new generation."""
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        if record.state == "cancelled":
            raise JobError(f"job {job_id} was cancelled here; it cannot resume")
        if request.generation <= record.generation:
            raise JobError(f"job {job_id} is already at generation {record.generation} here; a resume must move it on")
        self._check_resume_budget(record)
        state = self.store.load_checkpoint(job_id, request.epoch)
        config = self._training_config(record)
        if self.party == "C":
            key = PrivateKey.from_dict(state["private_key"])
            role: TrainingRole = await asyncio.to_thread(
                Arbiter, job_id, config, record.n_rows, gradient_lengths=record.gradient_lengths,
                keypair=(key.public_key, key), min_key_bits=self.config.limits.min_key_bits,
            )
        else:
            aligned = await asyncio.to_thread(self._aligned_table, record)
            role = await asyncio.to_thread(self._party_role, record, config, aligned)
        role.load_state_dict(state)
        if isinstance(role, Arbiter):
            # Everything released before, also after this checkpoint: a resumed slot gets the same value or nothing.
            role.remember(self.store.load_ledger(job_id))
        self._save(record, generation=request.generation, state="training", stage="training", error=None,
                   epoch=request.epoch + 1, resumes=record.resumes + 1)
        runtime = await self._fresh_runtime(record)
        await runtime.add_role("train", role, role.resume())
        return record

    # -- party B: prediction ---------------------------------------------------------------

    async def predict(self, job_id: str, ids: list[str]) -> dict[str, Any]:
        if self.party != "B":
            raise ConfigError("predictions are served by party B")
        record = self.record(job_id)
        if record.state != "succeeded":
            raise JobError(f"job {job_id} is {record.state}; only a succeeded job can predict")
        if len(ids) > self.config.limits.max_vector_length:
            raise DataError(f"{len(ids)} IDs exceed the limit of {self.config.limits.max_vector_length} per request")
        model = ModelPartB.from_dict(self.model_part(job_id))
        table = await asyncio.to_thread(self.table, record.dataset)
        rows = table.rows_for(ids)  # unknown IDs at B: a clear error before A is asked
        answer = await self.client.call_json(record.peers["A"], "POST", f"/v1/peer/jobs/{job_id}/scores", {"ids": ids})
        u_a, available = _partial_scores(answer, len(ids))
        scores = model.predict(table.features[rows], np.where(available, u_a, 0.0))
        out = []
        for i, score, ok in zip(ids, scores, available):
            if not ok:  # party A does not score this ID for this job
                out.append({"id": i, "status": "not available"})
                continue
            item: dict[str, Any] = {"id": i, "status": "ok", "score": float(score)}
            if model.model == "logistic":
                item["label"] = int(score >= 0.5)
            out.append(item)
        return {"job_id": job_id, "model": model.model, "predictions": out}

    # -- parties A and C: registration and start ---------------------------------------------

    async def register(self, registration: Registration, caller: str) -> JobRecord:
        if self.party == "B":
            raise ConfigError("party B registers jobs with its peers; it is not registered by them")
        if self.peer_role(caller) != "B" or registration.parties.get("B") != caller:
            raise PeerNotAllowed(f"only the job's party B may register it; {caller!r} is not")
        parties = registration.parties
        if set(parties) != {"A", "B", "C"} or parties.get(self.party) != self.config.party.id:
            raise ConfigError(f"the job names this service as {parties.get(self.party)!r}, not {self.config.party.id!r}")
        for role, peer_id in parties.items():
            if role != self.party and (peer_id not in self.config.peers or self.config.peers[peer_id].role != role):
                raise ConfigError(f"party {role} of the job, {peer_id!r}, is not a configured peer here")
        self._check_key_sizes(registration.training, registration.psi.key_bits)
        existing = self.records.get(registration.job_id)
        if existing is not None:
            if existing.spec == registration.model_dump(mode="json"):
                return existing  # a retried registration: same answer, no double work
            raise JobError(f"a job with id {registration.job_id!r} already exists here")
        lengths = dict(registration.gradient_lengths)
        if self.party == "A":
            if not registration.dataset:
                raise ConfigError("party A's registration must name its dataset")
            table = await asyncio.to_thread(self.table, registration.dataset)  # refuse now if unusable
            # A states its own feature count; the job's copy at the arbiter fixes it from now on.
            n_a = table.features.shape[1]
            if lengths.get("A", n_a) != n_a:
                raise ConfigError(f"the job spec expects {lengths['A']} features at party A; its dataset "
                                  f"{registration.dataset!r} has {n_a}")
            lengths["A"] = n_a
            if registration.psi_ids is not None:  # refuse now, not after A has made a key
                alignment.check_registered_size(self, registration.psi_ids, len(table))
        if set(lengths) != {"A", "B"}:
            raise ConfigError(f"the registration must fix the gradient lengths of parties A and B, got {sorted(lengths)}")
        record = JobRecord(
            job_id=registration.job_id, role=self.party, spec=registration.model_dump(mode="json"),
            dataset=registration.dataset, peers=parties, max_epochs=registration.training.epochs,
            gradient_lengths=lengths,
        )
        self.store.create(record)
        self.records[record.job_id] = record
        runtime = self._runtime(record)
        if self.party == "A":
            self._save(record, state="aligning", stage="psi")
            await alignment.serve_as_key_holder(self, record, runtime, registration.psi.key_bits)
        return record

    async def forget(self, job_id: str, caller: str) -> None:
        """Undo a registration that B could not complete (no trace is left)."""
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        runtime = self.runtimes.pop(job_id, None)
        if runtime is not None:
            await runtime.close()
        self.records.pop(job_id, None)
        self.store.delete(job_id)

    async def start_training(self, job_id: str, start: TrainingStart, caller: str) -> JobRecord:
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        if record.finished:
            raise JobError(f"job {job_id} has already {record.state}")
        runtime = self.runtimes.get(job_id)
        if runtime is None:
            raise JobError(f"job {job_id} is not running here")
        if "train" in runtime.roles:
            return record  # a retried start: already started
        try:
            await self._start_role(record, runtime, start)
        except VFLError as exc:  # refused here: the job ends here too, not only at B
            await self.fail(job_id, f"{type(exc).__name__}: {exc}", notify=False)
            raise
        return record

    async def _start_role(self, record: JobRecord, runtime: JobRuntime, start: TrainingStart) -> None:
        job_id = record.job_id
        config = self._training_config(record)
        if self.party == "C":
            role: TrainingRole = await asyncio.to_thread(
                Arbiter, job_id, config, start.n_rows, gradient_lengths=record.gradient_lengths,
                min_key_bits=self.config.limits.min_key_bits,
            )
            self._save(record, state="training", stage="training", n_rows=start.n_rows)
            self._checkpoint(record, role)
            await runtime.add_role("train", role)
            return
        await self._alignment_stored(record)
        aligned = await asyncio.to_thread(self._aligned_table, record)
        if len(aligned) != start.n_rows:
            raise ProtocolError(f"party B reports {start.n_rows} aligned rows, party A has {len(aligned)}")
        role = await asyncio.to_thread(self._party_role, record, config, aligned)
        self._save(record, state="training", stage="training", n_rows=start.n_rows)
        self._checkpoint(record, role)
        await runtime.add_role("train", role, role.start())

    async def _alignment_stored(self, record: JobRecord) -> None:
        """Party A: wait until its side of the PSI has finished and the aligned IDs are stored.

        B learns the intersection when it sends A its last PSI message, so B's "start
        training" can arrive while that message still waits in A's queue.
        """
        if self.store.load_alignment(record.job_id) is not None:
            return
        finished = self.psi_done.setdefault(record.job_id, asyncio.Event())
        try:
            await asyncio.wait_for(finished.wait(), timeout=self.config.limits.request_timeout)
        except TimeoutError:
            raise JobError(f"job {record.job_id}: alignment has not finished at party A after "
                           f"{self.config.limits.request_timeout:g}s (limits.request_timeout)") from None

    def aligned_rows(self, job_id: str, table: PartyTable, rows: np.ndarray, summary: dict[str, Any]) -> None:
        """Party A records its side of the alignment (called by the alignment stage)."""
        self.store.save_alignment(job_id, [table.ids[i] for i in rows])
        self._save(self.record(job_id), alignment=summary, stage="aligned", n_rows=len(rows))

    # -- party A: partial scores for B -------------------------------------------------------

    async def partial_scores(self, job_id: str, ids: list[str], caller: str) -> dict[str, Any]:
        """Party A's plaintext partial scores u_A for B: only for IDs A agreed to score.

        Those are the job's aligned rows, or any ID in A's dataset where A's own
        ``[scoring] allow_new_ids`` names the job. Any other ID, and one A does not
        hold, is answered "not available" alike, so the answer tells B nothing
        about A's customers beyond the ones it may score. Volume and rate are
        bounded per job (``limits.max_scored_ids``, ``limits.score_requests_per_minute``)
        and every request is written to this job's audit log.
        """
        if self.party != "A":
            raise ConfigError("partial scores come from party A")
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        if len(ids) > self.config.limits.max_vector_length:
            raise LimitExceeded(f"{len(ids)} IDs exceed the limit of {self.config.limits.max_vector_length} per request")
        event = self.done.get(job_id)
        if event is not None and not event.is_set() and record.state == "training":
            # B can ask right after the last decision, a moment before A has saved its part.
            await asyncio.wait_for(event.wait(), timeout=self.config.limits.request_timeout)
        if record.state != "succeeded":
            raise JobError(f"job {job_id} is {record.state} at party A; it has no model to score with")
        try:
            self._admit_scoring(record, len(ids))
        except LimitExceeded as exc:
            self.store.audit(job_id, f"refused to score {len(ids)} IDs for {caller}: {exc}")
            raise
        model = ModelPartA.from_dict(self.model_part(job_id))
        table = await asyncio.to_thread(self.table, record.dataset)
        rows = table.find(ids)
        if not self.config.scoring.allows_new_ids(job_id):
            aligned = set(self.store.load_alignment(job_id) or ())
            rows = [row if i in aligned else None for i, row in zip(ids, rows)]
        known = [row for row in rows if row is not None]
        values = iter(model.partial_scores(table.features[known]).tolist()) if known else iter(())
        u_a = [None if row is None else next(values) for row in rows]
        unavailable = len(ids) - len(known)
        self._save(record, scored_ids=record.scored_ids + len(ids))
        self.store.audit(job_id, f"scored {len(known)} IDs for {caller} ({unavailable} not available)")
        return {"u_a": u_a, "status": ["ok" if v is not None else "not available" for v in u_a]}

    def _admit_scoring(self, record: JobRecord, count: int) -> None:
        """Count this request against the job's scoring budget and rate, or refuse it."""
        limits = self.config.limits
        if record.scored_ids + count > limits.max_scored_ids:
            raise LimitExceeded(
                f"job {record.job_id} has scored {record.scored_ids} IDs; {count} more would pass party A's "
                f"limit of {limits.max_scored_ids} (limits.max_scored_ids)")
        now = time.monotonic()
        recent = self._score_times.setdefault(record.job_id, deque())
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if len(recent) >= limits.score_requests_per_minute:
            raise RateLimited(
                f"job {record.job_id}: more than {limits.score_requests_per_minute} scoring requests in a minute "
                "(limits.score_requests_per_minute at party A); retry later")
        recent.append(now)

    def convergence(self, job_id: str, caller: str) -> dict[str, Any]:
        """For B's report: how A's weights settled, as norms per epoch; the weights stay with A.

        ‖θ_A‖ says little that B cannot already estimate from the partial scores it gets at
        prediction time; the individual weights (A's model) are not sent.
        """
        if self.party != "A":
            raise ConfigError("party A reports its own convergence")
        record = self.record(job_id)
        self._require_peer(record, caller, "B")
        if record.state != "succeeded" or not record.parameters:
            raise JobError(f"job {job_id} is {record.state} at party A; it has no finished weights")
        history = np.asarray(record.parameters["history"], dtype=np.float64)
        steps = np.diff(np.vstack([np.zeros(history.shape[1]), history]), axis=0)
        return {"weight_norm": np.linalg.norm(history, axis=1).tolist(),
                "step_norm": np.linalg.norm(steps, axis=1).tolist()}

    # -- protocol messages ----------------------------------------------------------------

    async def receive(self, job_id: str, caller: str, frame: bytes, kind: str, generation: int = 0) -> str:
        record = self.record(job_id)
        sender = self.peer_role(caller)
        if record.peers.get(sender) != caller:
            raise PeerNotAllowed(f"{caller!r} is not party {sender} of job {job_id}")
        runtime = self.runtimes.get(job_id)
        if runtime is not None and generation < runtime.generation:
            return "stale"  # in flight when a party went down; the job has moved on
        if record.finished:
            error = JobCancelled if record.state == "cancelled" else JobError
            raise error(f"job {job_id} has already {record.state}: {record.error}")
        if runtime is None:
            raise JobError(f"job {job_id} is not running here")
        try:
            return await runtime.receive(sender, frame, kind, generation)
        except NotReady:
            raise  # only early: the sender retries it, nothing was refused
        except VFLError as exc:
            # Every party keeps a record of every message it refused, and from whom.
            self.store.audit(job_id, f"refused {kind} from {caller} (party {sender}): {type(exc).__name__}: {exc}")
            raise


def _confirmed_length(answer: Any) -> int:
    """Party A's gradient length from its registration answer."""
    try:
        length = int(answer["gradient_lengths"]["A"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party A's registration answer does not state its feature count: {exc!r}") from exc
    if not 1 <= length <= 1_000_000:
        raise ProtocolError(f"party A states {length} features; a job needs between 1 and 1,000,000")
    return length


def _partial_scores(answer: Any, expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Party A's answer as (u_A, available): u_A is NaN where A answered "not available"."""
    try:
        values = np.asarray([np.nan if v is None else v for v in answer["u_a"]], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party A's partial scores are malformed: {exc!r}") from exc
    if values.shape != (expected,):
        raise ProtocolError(f"party A returned {values.size} partial scores for {expected} IDs")
    available = ~np.isnan(values)
    if not np.all(np.isfinite(values[available])):
        raise ProtocolError("party A returned partial scores that are not finite numbers")
    return values, available


def _baseline(role: PartyB, aligned: PartyTable, splits: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    """The same model trained by party B alone, on the same rows: what federation adds (and its predictions)."""
    config = role.config
    design = role.design[:, :-1] if config.fit_intercept else role.design
    no_a = np.zeros((len(aligned), 0))
    result = train_plaintext(no_a, design, role.labels, config)
    weights = result.weights_b
    u = design @ weights[: design.shape[1]] + (weights[-1] if config.fit_intercept else 0.0)
    if config.model == "linear":
        predictions = role.label_mean + role.label_scale * u
    else:
        predictions = 1.0 / (1.0 + np.exp(-u))
    report = {
        "description": "party B's features only, same rows, same algorithm",
        "metrics": {name: model_metrics(config.model, aligned.labels[rows], predictions[rows]) for name, rows in splits.items()},
    }
    return report, predictions
