"""Jobs and models on disk, one folder per job under the service's data directory::

    <data_dir>/jobs/<job_id>/job.json                 the job's record (state, progress, metrics, error)
    <data_dir>/jobs/<job_id>/model.json               this party's model part, once trained
    <data_dir>/jobs/<job_id>/report.html              party B's report of the job
    <data_dir>/jobs/<job_id>/alignment.json           the aligned IDs, in the shared order
    <data_dir>/jobs/<job_id>/checkpoints/epoch-N.json  the role's state after epoch N (−1: before training)
    <data_dir>/jobs/<job_id>/audit.log                requests this party refused, one per line

Every file is written atomically (a temporary file in the same folder, flushed,
then renamed over the old one), so a crash leaves either the old or the new
version, never half of one; a restarted service lists every job it had.

Atomic writes do not protect against what happens to a file later (a full disk,
a bad sector, a careless editor), so every JSON file also carries the SHA-256 of
its content and is checked when read (:func:`vfl.files.atomic_write_json`).
A file that fails the check is *damaged*, and each kind is handled so that one
bad file never takes more with it than it must:

- a damaged checkpoint is left out of :meth:`JobStore.checkpoints`, so a resume
  falls back to the newest epoch that every party can still read;
- a damaged ``job.json`` is listed as a job in state ``damaged`` (with the reason),
  which is never resumed and whose id is never reused; nothing in its folder is
  touched;
- any other damaged file raises a :class:`~vfl.errors.JobError` naming the file
  and the fix.

Everything here is private to the service: files are 0600, folders 0700.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfl.errors import ConfigError, JobError
from vfl.files import FILE_MODE, FOLDER_MODE, DamagedFile, atomic_write_json, atomic_write_text, private_folder, read_json
from vfl.service.logs import AuditLog
from vfl.protocol.roster import RoleLetter
from vfl.service.lifecycle import JobState, Stage
from vfl.service.record import DamagedJobRecord, JobRecord

log = logging.getLogger("vfl.service")


# What the operator can do about a damaged file, by file name (the message names the file as well).
FIXES = {
    "model.json": "restore it from a backup, or submit the job again to retrain the model",
    "alignment.json": "restore it from a backup, or submit the job again",
}


@dataclass(frozen=True)
class RecordSnapshot:
    """A job record as :meth:`JobStore.save` writes it, numbered in the order snapshots were taken."""

    job_id: str
    seq: int
    data: dict[str, Any]


class JobStore:
    KEEP_EPOCHS = 2  # checkpoints kept besides the start: the last two epochs
    OPEN_AUDIT_LOGS = 64  # audit logs kept open at once (the busiest jobs'); the others reopen when written

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "jobs"
        # Jobs whose job.json was damaged at load_all: never written again (see DamagedJobRecord).
        self._damaged: set[str] = set()
        # Jobs whose checkpoints are gone for good (cancelled): a late write must not bring a key back.
        self._sealed: set[str] = set()
        # Audit logs, one per job, the most recently used kept open (see AuditLog): at most
        # OPEN_AUDIT_LOGS file descriptors, however many jobs this service has seen.
        self._audit_logs: OrderedDict[str, AuditLog] = OrderedDict()
        self._audit_lock = threading.Lock()
        self._record_lock = threading.Lock()
        self._record_seq = itertools.count()
        self._record_written: dict[str, int] = {}
        try:
            self.root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.root}: {exc}") from exc
        try:
            # The data directory may predate this service, and job folders made by older versions were 0755.
            for folder in (self.data_dir, self.root, *(f for f in self.root.iterdir() if f.is_dir())):
                os.chmod(folder, FOLDER_MODE)
        except OSError as exc:  # say so loudly, but a service whose files are 0600 can still run
            log.error("cannot make %s private to this service (0700): %s", self.data_dir, exc)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _folder(self, job_id: str, sub: str | None = None) -> Path:
        """The job's folder (or a sub-folder of it), created owner-only."""
        folder = private_folder(self.job_dir(job_id))
        return folder if sub is None else private_folder(folder / sub)

    def exists(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "job.json").is_file()

    def create(self, record: JobRecord) -> None:
        if self.exists(record.job_id):
            raise JobError(f"a job with id {record.job_id!r} already exists here; choose another job_id")
        self.save(record)

    def save(self, record: JobRecord) -> None:
        self.write_record(self.snapshot(record))

    def snapshot(self, record: JobRecord) -> RecordSnapshot:
        """Stamp ``record`` and take what :meth:`save` writes (on the event loop); :meth:`write_record` writes it.

        Snapshots are numbered as they are taken: one older than what was last written for its job,
        or than the job's deletion, is dropped, so a write from a thread never takes job.json back
        in time nor brings a deleted job back.
        """
        if record.job_id in self._damaged:
            raise JobError(f"job {record.job_id}: its job.json is damaged and is kept as it is; it cannot change")
        now = time.time()
        record.updated_at = now
        # The resume window of a failed job counts from when it stopped, not from its last save.
        if not record.finished:
            record.stopped_at = None
        elif record.stopped_at is None:
            record.stopped_at = now
        return RecordSnapshot(record.job_id, next(self._record_seq), record.model_dump(mode="json"))

    def write_record(self, snapshot: RecordSnapshot) -> None:
        """Write a snapshot as its job's job.json, unless a newer one was written or the job deleted since (any thread)."""
        with self._record_lock:
            if self._record_written.get(snapshot.job_id, -1) > snapshot.seq:
                return
            atomic_write_json(self._folder(snapshot.job_id) / "job.json", snapshot.data)
            self._record_written[snapshot.job_id] = snapshot.seq

    def load_all(self, role: RoleLetter) -> dict[str, JobRecord]:
        """Every job here. A job whose record is damaged is listed as ``damaged`` (``role``: this service's)."""
        records: dict[str, JobRecord] = {}
        for file in sorted(self.root.glob("*/job.json")):
            job_id = file.parent.name
            try:
                record = JobRecord.model_validate(read_json(file))
                if record.job_id != job_id:
                    raise DamagedFile(f"names job {record.job_id!r} but lies in the folder of {job_id!r}")
            except (DamagedFile, ValueError) as exc:  # ValueError: pydantic's, for a record of the wrong shape
                reason = exc if isinstance(exc, DamagedFile) else f"does not describe a job ({exc.__class__.__name__})"
                records[job_id] = self._damaged_record(job_id, role, file, str(reason))
                continue
            records[job_id] = record
        return records

    def _damaged_record(self, job_id: str, role: RoleLetter, file: Path, reason: str) -> JobRecord:
        error = (
            f"the job's record {file} {reason}. The job is kept as 'damaged': it will not run again and its "
            f"id stays taken; its other files are untouched. Restore job.json from a backup and restart "
            f"the service, or delete {file.parent} to discard the job"
        )
        log.error("job %s is damaged: %s", job_id, error)  # loud: an operator must look at this
        self._damaged.add(job_id)
        try:
            when = file.stat().st_mtime
        except OSError:
            when = time.time()
        return DamagedJobRecord(job_id=job_id, role=role, state=JobState.DAMAGED, stage=Stage.DAMAGED, error=error,
                                created_at=when, updated_at=when, stopped_at=when)

    def delete(self, job_id: str) -> None:
        """Remove every trace of a job (a submission refused half-way, or a deleted job); its id is free again."""
        with self._audit_lock:
            audit = self._audit_logs.pop(job_id, None)
        if audit is not None:
            audit.close()
        with self._record_lock:  # a snapshot taken before this is not written after it
            self._record_written[job_id] = next(self._record_seq)
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self._damaged.discard(job_id)
        self._sealed.discard(job_id)

    #: What a job's folder keeps whatever a peer asks: its record and its audit log.
    KEPT_ON_PEER_DELETE = ("job.json", "audit.log")

    def drop_job_data(self, job_id: str) -> list[str]:
        """Remove a job's data files (model, aligned IDs, checkpoints, PSI buckets, report, batches), keeping its
        record and audit log; returns what was removed."""
        removed = []
        for item in sorted(self.job_dir(job_id).iterdir()):
            if item.name in self.KEPT_ON_PEER_DELETE:
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            removed.append(item.name)
        return removed

    def close(self) -> None:
        """Close the open audit logs (at shutdown)."""
        with self._audit_lock:
            audits = list(self._audit_logs.values())
            self._audit_logs.clear()
        for audit in audits:
            audit.close()

    def save_model(self, job_id: str, model: dict[str, Any]) -> None:
        atomic_write_json(self._folder(job_id) / "model.json", model)

    def load_model(self, job_id: str) -> dict[str, Any] | None:
        return self._load(job_id, "model.json")

    def save_scorecard(self, job_id: str, data: dict[str, Any]) -> None:
        """A scorecard job's binning and selection as this party keeps them (a feature party: its bins only)."""
        atomic_write_json(self._folder(job_id) / "scorecard.json", data)

    def load_scorecard(self, job_id: str) -> dict[str, Any] | None:
        return self._load(job_id, "scorecard.json")

    def save_card(self, job_id: str, card: dict[str, Any]) -> None:
        """This party's scorecard part: its characteristics' bins, points table and CSI reference."""
        atomic_write_json(self._folder(job_id) / "card.json", card)

    def load_card(self, job_id: str) -> dict[str, Any] | None:
        return self._load(job_id, "card.json")

    def save_stability(self, job_id: str, data: dict[str, Any]) -> None:
        """A scorecard model's serving counts: served scores per band (B), served rows per bin (a feature party)."""
        atomic_write_json(self._folder(job_id) / "stability.json", data)

    def load_stability(self, job_id: str) -> dict[str, Any] | None:
        return self._load(job_id, "stability.json")

    def save_report(self, job_id: str, page: str) -> None:
        atomic_write_text(self._folder(job_id) / "report.html", page)

    def load_report(self, job_id: str) -> str | None:
        file = self.job_dir(job_id) / "report.html"
        return file.read_text() if file.is_file() else None

    def save_alignment(self, job_id: str, ids: list[str]) -> None:
        atomic_write_json(self._folder(job_id) / "alignment.json", {"ids": ids})

    def load_alignment(self, job_id: str) -> list[str] | None:
        data = self._load(job_id, "alignment.json")
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
            raise JobError(f"job {job_id}: {self.job_dir(job_id) / 'alignment.json'} holds no list of IDs; "
                           f"{FIXES['alignment.json']}")
        return list(data["ids"])

    # -- checkpoints: kept for the start and the last two epochs ---------------------------------
    #
    # Pruning leaves the start (−1) and the two newest epochs at every party. If the newest is
    # damaged at one party, the one before (or at worst the start) is still common to all three,
    # so a resume still finds an epoch to continue from.

    def save_checkpoint(self, job_id: str, epoch: int, state: dict[str, Any]) -> None:
        """Write the state after ``epoch`` (0600: the arbiter's holds its private key)."""
        if job_id in self._sealed:
            raise JobError(f"job {job_id} was cancelled here; it takes no more checkpoints")
        folder = self._folder(job_id, "checkpoints")
        atomic_write_json(folder / f"epoch-{epoch}.json", state)
        # By file name, not by checking each one: a damaged file just ages out like the rest.
        for old in self._checkpoint_epochs(job_id)[1:-self.KEEP_EPOCHS]:
            (folder / f"epoch-{old}.json").unlink(missing_ok=True)

    def _checkpoint_epochs(self, job_id: str) -> list[int]:
        """Epochs with a checkpoint file, readable or not, ascending."""
        epochs = []
        for file in (self.job_dir(job_id) / "checkpoints").glob("epoch-*.json"):
            try:
                epochs.append(int(file.stem.removeprefix("epoch-")))
            except ValueError:
                continue
        return sorted(epochs)

    def checkpoints(self, job_id: str) -> list[int]:
        """Epochs this party can resume from, ascending (−1 is the state before training).

        Only checkpoints that pass their check are listed; a damaged one is logged and left
        out, so the parties agree on an older epoch instead. A job whose record is damaged
        cannot resume at all, so it lists none.
        """
        if job_id in self._damaged:
            return []
        readable = []
        for epoch in self._checkpoint_epochs(job_id):
            file = self.job_dir(job_id) / "checkpoints" / f"epoch-{epoch}.json"
            try:
                read_json(file)
            except DamagedFile as exc:
                log.warning("job %s: checkpoint %s %s; it is skipped (an older epoch can be resumed from)",
                            job_id, file, exc)
                continue
            readable.append(epoch)
        return readable

    def has_checkpoints(self, job_id: str) -> bool:
        """Whether anything is left in the job's checkpoint folder (half-written files count: they hold secrets too)."""
        return (self.job_dir(job_id) / "checkpoints").exists()

    def load_checkpoint(self, job_id: str, epoch: int) -> dict[str, Any]:
        file = self.job_dir(job_id) / "checkpoints" / f"epoch-{epoch}.json"
        if not file.is_file():
            raise JobError(f"job {job_id} has no checkpoint for epoch {epoch} here")
        try:
            data = read_json(file)
        except DamagedFile as exc:
            raise JobError(
                f"job {job_id}: checkpoint {file} {exc}; resume again to continue from an older epoch that "
                "all parties can read, or submit the job again"
            ) from None
        if not isinstance(data, dict):
            raise JobError(f"job {job_id}: checkpoint {file} holds no saved state; resume from another epoch")
        return data

    def drop_checkpoints(self, job_id: str, *, seal: bool = False) -> None:
        """Remove checkpoints once they cannot be needed (they may hold private keys).

        ``seal``: the job can never resume (it was cancelled), so refuse any checkpoint
        written after this, say by a message that was still being handled.
        """
        if seal:
            self._sealed.add(job_id)
        shutil.rmtree(self.job_dir(job_id) / "checkpoints", ignore_errors=True)

    # -- the arbiter's decryption ledger: one line per released slot, kept for the job's life ---------

    def append_ledger(self, job_id: str, entries: list[tuple[str, str]]) -> None:
        """Record released decryptions (slot, digest) durably, before the answer leaves the service.

        Holds digests only, no secret. It is what stops a resume from renewing the
        decryption budget, so it is flushed to disk before the arbiter answers.
        """
        if not entries:
            return
        file = self._folder(job_id) / "ledger.jsonl"
        fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        with os.fdopen(fd, "a") as handle:
            handle.write("".join(json.dumps({"slot": slot, "sha256": digest}) + "\n" for slot, digest in entries))
            handle.flush()
            os.fsync(handle.fileno())

    def load_ledger(self, job_id: str) -> dict[str, str]:
        """Every slot the arbiter released for this job; a torn last line (a crash mid-write) is skipped."""
        file = self.job_dir(job_id) / "ledger.jsonl"
        if not file.is_file():
            return {}
        ledger: dict[str, str] = {}
        for line in file.read_text().splitlines():
            try:
                entry = json.loads(line)
                ledger[str(entry["slot"])] = str(entry["sha256"])
            except (ValueError, KeyError, TypeError):
                continue  # only the line being written when the service died can be torn: it was never answered
        return ledger

    def audit(self, job_id: str, line: str) -> None:
        """Append a line to the job's audit log (refusals, scoring requests: never an ID)."""
        with self._audit_lock:
            audit = self._audit_logs.pop(job_id, None)
            if audit is None:
                audit = AuditLog(self._folder(job_id) / "audit.log")
            self._audit_logs[job_id] = audit  # now the most recently used
            if len(self._audit_logs) > self.OPEN_AUDIT_LOGS:
                _, oldest = self._audit_logs.popitem(last=False)
                oldest.close()
        audit.write(line)

    def _load(self, job_id: str, name: str) -> Any:
        file = self.job_dir(job_id) / name
        if not file.is_file():
            return None
        try:
            return read_json(file)
        except DamagedFile as exc:
            fix = FIXES.get(name, "restore it from a backup")
            raise JobError(f"job {job_id}: {file} {exc}; {fix}") from None
