"""One running service (party A, party B or the arbiter): its jobs, their runtimes, their failures.

A :class:`Node` is what every concern of a service shares: the job store and
records, the peer client, the dataset cache, one :class:`~vfl.service.runtime.JobRuntime`
per running job (its roles and messages), the watchdog that fails a job whose
peers stopped answering or taking part, and failure and cancellation, which a
party always tells the others. The concerns themselves live in their own
modules, each a set of functions of the node:

* :mod:`vfl.service.coordinator`: party B submits, drives and evaluates a job;
* :mod:`vfl.service.registration`: parties A and C accept, start and close a job;
* :mod:`vfl.service.alignment`: the PSI roles over HTTP;
* :mod:`vfl.service.resume`: resuming from checkpoints;
* :mod:`vfl.service.scoring`: B's predictions and A's partial scores;
* :mod:`vfl.service.retention`: how long checkpoints live.

The HTTP apps in ``parties/`` and ``arbiter/`` call these and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any


from psi.protocol import PsiKeyHolder, PsiRequester
from vfl.ml.config import TrainingConfig
from vfl.crypto.keys import PrivateKey, PublicKey
from vfl.data.table import PartyTable
from vfl.errors import (
    ConfigError,
    DataError,
    JobCancelled,
    JobError,
    NotReady,
    PeerNotAllowed,
    PeerRefused,
    UnknownJobError,
    VFLError,
)
from vfl.compute.engine import Engine, make_engine
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.messages import EpochDecision, Message, Party
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import Roster
from vfl.service import alignment, resume, retention
from vfl.service.client import PeerClient
from vfl.service.config import ServiceConfig
from vfl.service.lending import LendingService
from vfl.service.logs import job_event
from vfl.service.redact import local_paths, redact
from vfl.service.runtime import JobRuntime
from vfl.service.scoring import ServingCache, flush_counters
from vfl.service.startup import with_config_hint
from vfl.service.store import JobRecord, JobStore, model_document
from vfl.service.telemetry import Telemetry
from vfl.data.sources import DataSource, Lookup, open_source

log = logging.getLogger("vfl.service")

TrainingRole = FeatureParty | LabelParty | Arbiter

#: The role letters of the two-party literature, by role kind (a config's ``role``).
ROLE_LETTERS = {"feature": "A", "label": "B", "arbiter": "C"}


class Node:
    def __init__(self, config: ServiceConfig, *, transport: Any = None) -> None:
        self.config = config
        self.party: Party = config.role
        self.store = JobStore(config.party.data_dir)
        self.records: dict[str, JobRecord] = self.store.load_all(role=self.party)
        self.client = PeerClient(config, transport=transport)
        compute = config.compute
        #: Where this party's crypto runs; [compute] workers wins over the older limits.workers.
        self.engine: Engine = make_engine(compute.engine, address=compute.address,
                                          workers=compute.workers or config.limits.workers)
        self.workers = self.engine.workers
        self.runtimes: dict[str, JobRuntime] = {}
        self.drivers: dict[str, asyncio.Task] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.psi_started: dict[str, float] = {}
        self.psi_done: dict[str, asyncio.Event] = {}
        self._sources: dict[str, DataSource] = {}  # one per dataset name, opened on first use
        self._persisted: dict[str, dict[str, Any]] = {}
        self._background: set[asyncio.Task] = set()
        self.coordinating: set[str] = set()  # jobs whose resume is asking the parties right now
        self.serving = ServingCache()  # model parts, aligned IDs and scoring rates, kept between requests
        self.telemetry = Telemetry(self)  # GET /metrics; a registry of its own per node
        self._epoch_clock: dict[str, float] = {}  # job → when its current epoch began here
        self.submitting: dict[str, tuple[str, asyncio.Event]] = {}  # Idempotency-Key → (digest, done) in flight
        self.lending = LendingService(self)  # multi-lender queries; idle unless [lending] asks for them

    # -- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Pick up jobs that were running when this service stopped; start the checkpoint sweep."""
        retention.sweep_checkpoints(self)  # what outlived its resume window while this service was down
        for record in list(self.records.values()):
            if record.finished:
                continue
            damage = None
            try:
                aligned = self.party == "C" or self.store.load_alignment(record.job_id) is not None
            except JobError as exc:  # a damaged alignment file: this job cannot continue here
                aligned, damage = False, str(exc)
            if self.party == "B" and record.state == "training" and record.stage in ("contributions", "ledger"):
                # Trained, evaluated and saved before it stopped: the model stands; what followed is lost.
                lost = f"party B restarted during the job's {record.stage} stage; submit the job again for them"
                changes: dict[str, Any] = {"ledger": {"entry": None, "signatures_verified": False, "reason": lost}}
                if record.stage == "contributions":
                    changes["contributions"] = {"error": lost}
                self.save(record, state="succeeded", stage="done", **changes)
                job_event(record.job_id, "succeeded (%s)", lost, level=logging.WARNING)
                continue
            if self.party == "C" and record.state == "pending" and damage is None:
                self.runtime_for(record)  # the arbiter has no part in the alignment: nothing was lost
                continue
            # Stopped during alignment: the PSI resumes from the buckets finished before (psi.buckets).
            aligning = record.state == "aligning" and not aligned and damage is None
            if (record.state != "training" or not aligned) and not aligning:
                reason = damage or f"party {self.party} restarted while the job was {record.state}; submit it again"
                self.save(record, state="failed", stage="stopped", error=reason)
                job_event(record.job_id, "failed: %s", reason, level=logging.ERROR)
                self.spawn(self.tell_peers(record, "fail", reason))
                continue
            # Fence: anything still in flight for the old generation is now stale here.
            self.save(record, generation=record.generation + 1, stage="interrupted")
            self.runtime_for(record)
            if self.party == "B":
                try:
                    resume.start_resume(self, record, f"party B ({self.config.party.id}) restarted")
                except JobError as exc:  # out of resumes: the job ends here, and the peers hear why
                    self.save(record, state="failed", stage="stopped", error=str(exc))
                    job_event(record.job_id, "failed: %s", exc, level=logging.ERROR)
                    self.spawn(self.tell_peers(record, "fail", str(exc)))
            else:
                self.spawn(resume.report_interruption(self, record))
        self.spawn(retention.sweep_forever(self))  # a background task: shutdown cancels it with the others
        await self.lending.start()  # a lender reloads its tag set and budgets, or publishes

    async def shutdown(self) -> None:
        for task in list(self.drivers.values()) + list(self._background):
            task.cancel()
        for runtime in list(self.runtimes.values()):
            await runtime.close()
        flush_counters(self)
        await self.lending.stop()
        for source in list(self._sources.values()):
            source.close()  # a database's connection pool
        self.store.close()
        await self.client.aclose()

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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

    def require_peer(self, record: JobRecord, peer_id: str, role: Party) -> None:
        """Refuse a caller that is not the job's party of ``role`` (a role letter: A, B or C)."""
        pid = next((p for p, peer in record.peers.items() if peer == peer_id), None)
        if pid is None or ROLE_LETTERS.get(self.roster(record).kind_of(pid)) != role:
            raise PeerNotAllowed(f"{peer_id!r} is not party {role} of job {record.job_id}")

    # -- who is who in a job ------------------------------------------------------------------
    #
    # The protocol addresses parties by id: their party ids (record.peers maps each to itself).
    # Records from before k feature parties used the letters A, B, C as protocol ids.

    def roster(self, record: JobRecord) -> Roster:
        return Roster() if record.roster is None else Roster.from_dict(record.roster)

    def own_id(self, record: JobRecord) -> str:
        """This party's protocol id in the job."""
        return next((p for p, peer in record.peers.items() if peer == self.config.party.id), self.party)

    def protocol_id(self, record: JobRecord, caller: str) -> str:
        """The protocol id of a calling peer in the job; a caller that takes no part is refused."""
        for pid, peer in record.peers.items():
            if peer == caller and caller != self.config.party.id:
                return pid
        raise PeerNotAllowed(f"{caller!r} takes no part in job {record.job_id}")

    def peer_ids(self, record: JobRecord, kind: str | None = None) -> list[str]:
        """The party ids of the job's other parties this one deals with (of one role kind, if given)."""
        roster = self.roster(record)
        return [peer for pid, peer in record.peers.items()
                if peer != self.config.party.id and (kind is None or roster.kind_of(pid) == kind)]

    def name_of(self, record: JobRecord, peer_id: str) -> str:
        """How messages name a peer: "party A (shop)", "party C (arbiter)"."""
        pid = next((p for p, peer in record.peers.items() if peer == peer_id), peer_id)
        return f"party {ROLE_LETTERS.get(self.roster(record).kind_of(pid), '?')} ({peer_id})"

    def source(self, name: str) -> DataSource:
        """Where this party's dataset ``name`` comes from (file or database), opened once (vfl.data.sources)."""
        source = self._sources.get(name)
        if source is not None:
            return source
        dataset = self.config.datasets.get(name)
        if dataset is None:
            known = ", ".join(sorted(self.config.datasets)) or "none"
            raise DataError(f"party {self.config.party.id!r} has no dataset named {name!r}; it has: {known}")
        return self._sources.setdefault(name, open_source(name, dataset, max_bytes=self.config.limits.max_csv_bytes))

    def table(self, name: str, model: str | None = None) -> PartyTable:
        """This party's dataset by name, all rows checked strictly; a file is reloaded when it changes.

        Messages name the file or database for our operators; each error's ``public`` names the
        dataset instead, for peers, who ask for datasets by name (vfl.service.redact).
        """
        try:
            return self.source(name).table(model)
        except DataError as exc:  # the loaders name CLI flags; a service's fix is a key of its config
            with_config_hint(exc, name, self.config)
            raise

    def lookup(self, name: str, ids: list[str], feature_names: list[str]) -> Lookup:
        """Features of ``ids`` in dataset ``name`` by column name, with a status per ID (serving)."""
        try:
            return self.source(name).lookup(ids, feature_names)
        except DataError as exc:
            with_config_hint(exc, name, self.config)
            raise

    def model_part(self, job_id: str) -> dict[str, Any]:
        record = self.record(job_id)
        model = self.store.load_model(job_id)
        if model is None:
            raise JobError(f"job {job_id} has no model at party {self.config.party.id!r} (state {record.state})")
        return model

    def training_config(self, record: JobRecord) -> TrainingConfig:
        return TrainingConfig.model_validate(record.spec["training"])

    def aligned_table(self, record: JobRecord) -> PartyTable:
        """This party's rows of the intersection, in the shared order."""
        ids = self.store.load_alignment(record.job_id)
        if ids is None:
            raise JobError(f"job {record.job_id}: alignment has not finished at party {self.party}")
        table = self.table(record.dataset, self.training_config(record).model if self.party == "B" else None)
        return table.take(table.rows_for(ids))

    # -- bookkeeping ----------------------------------------------------------------------

    def save(self, record: JobRecord, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(record, key, value)
        self.store.save(record)

    def runtime_for(self, record: JobRecord) -> JobRuntime:
        runtime = self.runtimes.get(record.job_id)
        if runtime is None:
            runtime = JobRuntime(
                record.job_id, self.own_id(record),
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
            self.spawn(self._watchdog(record, runtime))
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
            for peer_id in self.peer_ids(record):
                role = self.name_of(record, peer_id)
                try:
                    info = await self.client.call_json(peer_id, "GET", f"/v1/peer/jobs/{record.job_id}/state")
                except PeerRefused as exc:
                    if self._not_registered_yet(record, peer_id, exc):
                        continue
                    if not runtime.closed and not record.finished:
                        await self.fail(record.job_id, f"{role} stopped answering: {exc}")
                    return
                except VFLError as exc:
                    if not runtime.closed and not record.finished:
                        await self.fail(record.job_id, f"{role} stopped answering: {exc}")
                    return
                verdict = self._judge_peer(record, runtime, role, info)
                if verdict is not None:
                    reason, state, notify = verdict
                    await self.fail(record.job_id, reason, notify=notify, state=state)
                    return

    def _not_registered_yet(self, record: JobRecord, peer_id: str, exc: PeerRefused) -> bool:
        """A feature party aligning may ask the arbiter before B has registered the job there.

        B registers the job with every feature party first (each states its gradient
        length) and with the arbiter last, so while the PSIs run the arbiter may not
        know the job yet. B's training start fails the job if it never does.
        """
        return (exc.error == "UnknownJobError" and record.state == "aligning" and record.role == "A"
                and self.roster(record).kind_of(self.protocol_id(record, peer_id)) == "arbiter")

    def _judge_peer(self, record: JobRecord, runtime: JobRuntime, role: str,
                    info: dict[str, Any]) -> tuple[str, str, bool] | None:
        """What a peer's job state means for ours: (reason, our new state, tell the others?), or None."""
        state = info.get("state")
        training = runtime.roles.get("train")
        if state == "succeeded" and training is not None and not training.done:
            # Training ends for all at the same decision: a peer that finished while we still train deviated.
            return (f"{role} reports the job succeeded while party {self.party} is still "
                    "training: it stopped taking part", "failed", True)
        if state not in ("failed", "cancelled", "damaged") or record.finished:
            return None
        if state == "failed" and int(info.get("generation", 0)) < record.generation:
            return None  # it failed before the job resumed, and has not been told to resume yet
        ours = "cancelled" if state == "cancelled" else "failed"
        return f"{role} reports the job {state}: {info.get('error')}", ours, False

    async def fresh_runtime(self, record: JobRecord) -> JobRuntime:
        """Replace the job's runtime (on resume): queues, dedup memory and tasks start over."""
        old = self.runtimes.pop(record.job_id, None)
        if old is not None:
            await old.close()
        self._persisted.pop(record.job_id, None)
        return self.runtime_for(record)

    async def _send(self, record: JobRecord, envelope: Envelope, generation: int) -> int:
        peer_id = record.peers[envelope.recipient]
        size = await self.client.send_message(peer_id, record.job_id, envelope.message, generation)
        self.telemetry.message(peer_id, "sent", size)
        return size

    def checkpoint(self, record: JobRecord, role: Any) -> None:
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
        for epoch in sorted({d.epoch for d in decisions}):  # the arbiter sends each party its copy: one line
            copies = [d for d in decisions if d.epoch == epoch]
            self._epoch_finished(record, next((d for d in copies if d.train_loss is not None), copies[0]))
        if decisions:
            self.checkpoint(record, role)
            self.store.save(record)
        if role.done and not self.done[record.job_id].is_set():
            if isinstance(role, FeatureParty):
                part = role.model()
                self.store.save_model(record.job_id, model_document(part, record))
                record.parameters = role.trajectory()
                self.save(record, state="succeeded", stage="done")
                job_event(record.job_id, "succeeded after %d epochs: this party's model part is saved", record.epoch)
            elif isinstance(role, Arbiter):
                self.save(record, state="succeeded", stage="done")
                job_event(record.job_id, "succeeded after %d epochs", record.epoch)
            self.done[record.job_id].set()

    def _epoch_finished(self, record: JobRecord, decision: EpochDecision) -> None:
        """The job's story: one line per epoch, with its losses (and why training stops, at the last).

        Party B and the arbiter know the losses; a feature party's copy of the decision carries none.
        """
        if decision.train_loss is None:
            losses = "done (the losses are known to party B)"
        else:
            losses = f"train loss {decision.train_loss:.6f}"
            if decision.validation_loss is not None:
                losses += f", validation loss {decision.validation_loss:.6f}"
        stop = f"; training stops: {decision.reason}" if decision.stop and decision.reason else ""
        job_event(record.job_id, "epoch %d/%d: %s%s", decision.epoch + 1, record.max_epochs, losses, stop)
        now = time.monotonic()
        began = self._epoch_clock.get(record.job_id)
        if began is not None:
            self.telemetry.epoch_seconds.observe(now - began)
        self._epoch_clock[record.job_id] = now

    def training_started(self, record: JobRecord, n_rows: int, resumed_from: int | None = None) -> None:
        """Training (re)starts here: a line of the job's story, and the clock of its first epoch."""
        self._epoch_clock[record.job_id] = time.monotonic()
        if resumed_from is None:
            job_event(record.job_id, "training on %d aligned rows, at most %d epochs", n_rows, record.max_epochs)
        else:
            job_event(record.job_id, "resumed after epoch %d (generation %d) on %d aligned rows",
                      resumed_from + 1, record.generation, n_rows, level=logging.WARNING)

    # -- failure, cancellation ---------------------------------------------------------------

    async def fail(self, job_id: str, reason: str, *, notify: bool = True, state: str = "failed") -> None:
        record = self.records.get(job_id)
        if record is None or record.finished:
            return
        self.save(record, state=state, stage="stopped", error=reason)
        self._epoch_clock.pop(job_id, None)
        if state == "cancelled":
            job_event(job_id, "cancelled: %s", reason, level=logging.WARNING)
        else:
            job_event(job_id, "failed: %s", reason, level=logging.ERROR)
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
            await self.tell_peers(record, "cancel" if state == "cancelled" else "fail", reason)
        if runtime is not None:
            self.spawn(runtime.close())

    async def tell_peers(self, record: JobRecord, what: str, reason: str = "") -> None:
        # Peers are other organisations: they get the reason without our local paths; the full
        # reason stays in our job record and in this log line.
        public = redact(reason, local_paths(self.config))
        generation = record.generation  # as it is now: a resume while we retry must not be undone by this notice
        if reason:  # the reason itself is in the job's "failed:" or "cancelled:" line
            log.debug("job %s: telling peers (%s): %s", record.job_id, what, reason)
        for peer_id in self.peer_ids(record):
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
            raise JobError(f"job {job_id} {record.state_phrase(already=True)}; nothing to cancel")
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

    # -- training roles ------------------------------------------------------------------------

    def check_key_sizes(self, training: TrainingConfig, psi_bits: int) -> None:
        floor = self.config.limits.min_key_bits
        for what, bits in (("training.key_bits", training.key_bits), ("psi.key_bits", psi_bits)):
            if bits < floor:
                raise ConfigError(f"{what}={bits} is below this service's minimum of {floor} bits")

    def arbiter_role(self, record: JobRecord, n_rows: int, keypair: tuple[PublicKey, PrivateKey] | None = None) -> Arbiter:
        """The arbiter's role for the job: a fresh key pair, or the one from a checkpoint."""
        return Arbiter(record.job_id, self.training_config(record), n_rows, gradient_lengths=record.gradient_lengths,
                       keypair=keypair, engine=self.engine, min_key_bits=self.config.limits.min_key_bits, roster=self.roster(record))

    def role_options(self, record: JobRecord, aligned: PartyTable) -> dict[str, object]:
        """The keyword arguments every training role of this service gets (engine, limits, the job's lengths)."""
        return dict(feature_names=aligned.feature_names, engine=self.engine,
                    min_key_bits=self.config.limits.min_key_bits, job_lengths=record.gradient_lengths,
                    roster=self.roster(record))

    def party_role(self, record: JobRecord, config: TrainingConfig, aligned: PartyTable) -> FeatureParty | LabelParty:
        """This party's training role for the job, on its aligned rows, with the job's gradient lengths."""
        options = self.role_options(record, aligned)
        if self.party == "B":
            return LabelParty(record.job_id, config, aligned.features, aligned.labels, **options)
        return FeatureParty(record.job_id, config, aligned.features, party=self.own_id(record), **options)

    # -- what peers ask of any party ---------------------------------------------------------------

    def peer_state(self, job_id: str, caller: str) -> dict[str, Any]:
        """What a peer's watchdog needs: is the job alive here, and under which generation."""
        record = self.record(job_id)
        if caller not in record.peers.values():
            raise PeerNotAllowed(f"{caller!r} takes no part in job {job_id}")
        return {"state": record.state, "generation": record.generation, "error": record.error}

    # -- protocol messages ----------------------------------------------------------------

    async def receive(self, job_id: str, caller: str, frame: bytes, kind: str, generation: int = 0) -> str:
        record = self.record(job_id)
        self.peer_role(caller)  # a caller that is no configured peer is refused as such
        sender = self.protocol_id(record, caller)  # the roster id Role.check looks up
        self.telemetry.message(caller, "received", len(frame))
        runtime = self.runtimes.get(job_id)
        if runtime is not None and generation < runtime.generation:
            return "stale"  # in flight when a party went down; the job has moved on
        if record.finished:
            error = JobCancelled if record.state == "cancelled" else JobError
            raise error(f"job {job_id} {record.state_phrase(already=True)}: {record.error}")
        if runtime is None:
            raise JobError(f"job {job_id} is not running here")
        try:
            return await runtime.receive(sender, frame, kind, generation)
        except NotReady:
            raise  # only early: the sender retries it, nothing was refused
        except VFLError as exc:
            # Every party keeps a record of every message it refused, and from whom.
            self.store.audit(job_id, f"refused {kind} from {caller} ({self.name_of(record, caller)}): "
                                     f"{type(exc).__name__}: {exc}")
            raise


