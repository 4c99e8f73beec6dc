"""Every party's copies of the federation's job ledger: its signing key, its copies, and what it signs or appends.

Each party keeps one copy of the ledger per party B it works with, in
``<data_dir>/ledger/<party B's id>/`` (``ledger.jsonl`` and a copy of the CA
certificate; see :mod:`vfl.incentives.chain` for the format), and signs with the
key of its certificate (``[ledger]`` ``cert``/``key``, by default its TLS ones).

What a party B asks of every other party (its routes are in
:mod:`vfl.service.http.ledger`):

* :meth:`LedgerCopies.head`: how many entries this party's copy holds, its last
  digest, and what is wrong with it, if anything;
* :meth:`LedgerCopies.sign`: sign a job's entry, once it agrees with this party's
  own view: the job is one it took part in with this B and it succeeded here; the
  parties and their roles are the job's; its own dataset name and model digest
  are its own; the config digest is that of its own copy of the training config;
  and the entry continues its own copy's chain. Otherwise it refuses (409);
* :meth:`LedgerCopies.append`: append fully signed entries, each checked against
  this party's CA and chain;

A party signs at most one entry per job (it remembers the digest it signed, in
``<data_dir>/ledger/signed-<party B>.json``, beside its copy), refuses to append an entry for a job it took
part in but did not sign, and never rewrites its own job record from an entry
it did not sign. An entry names the job's whole roster, so every party of the
job must sign it (:func:`vfl.incentives.chain.roster_problem`).
* :func:`ledger_view`: a feature party's dataset name and model digest for the job.

Party B's own half (building an entry, gathering the signatures, distributing
it) is the ledger stage, :mod:`vfl.service.stages.ledger`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vfl.errors import JobError, LedgerConflict, LedgerError, PeerNotAllowed, UnknownJobError
from vfl.incentives import chain
from vfl.protocol.roster import LETTERS, RoleLetter
from vfl.service.config import ServiceConfig
from vfl.service.logs import job_event
from vfl.service.record import DamagedJobRecord, JobRecord
from vfl.files import DamagedFile, atomic_write_json, read_json
from vfl.service.store import JobStore


class LedgerCopies:
    """This party's ledger key and copies, opened once each."""

    def __init__(self, config: ServiceConfig, store: JobStore) -> None:
        self.config = config
        self.store = store
        self._signer: chain.Signer | None = None
        self._books: dict[str, chain.Ledger] = {}
        self._books_lock = threading.Lock()  # copies are opened from worker threads (signing runs off the loop)
        #: Party B writes one entry at a time: its copy, and every peer's, move on together.
        self.writing = asyncio.Lock()

    # -- key and copies ------------------------------------------------------------------------------

    def material(self) -> tuple[Path, Path, Path] | None:
        """(cert, key, ca) that sign and check ledger entries here, or None when the ledger is off or has none."""
        settings, tls = self.config.ledger, self.config.tls
        if not settings.enabled:
            return None
        cert = settings.cert or (tls.cert if tls else None)
        key = settings.key or (tls.key if tls else None)
        ca = settings.ca or (tls.ca if tls else None)
        if cert is None or key is None or ca is None:
            return None
        return cert, key, ca

    def why_off(self) -> str:
        if not self.config.ledger.enabled:
            return "the ledger is off at party B ([ledger] enabled = false)"
        return ("party B has no key to sign with: plain HTTP (insecure) without [ledger] cert, key and ca; with TLS "
                "the TLS certificate and key sign")

    def signer(self) -> chain.Signer:
        """This party's signing identity (its certificate must be for its own party id)."""
        if self._signer is None:
            material = self.material()
            if material is None:
                raise LedgerError(f"party {self.config.party.id!r} keeps no ledger: "
                                  + ("[ledger] enabled = false" if not self.config.ledger.enabled else
                                     "it has no signing key (plain HTTP without [ledger] cert, key and ca)"))
            self._signer = chain.Signer.from_files(material[0], material[1], self.config.party.id)
        return self._signer

    def copy_for(self, label_party: str) -> chain.Ledger:
        """This party's copy of the ledger party B ``label_party`` writes."""
        with self._books_lock:
            book = self._books.get(label_party)
            if book is None:
                material = self.material()
                if material is None:
                    raise LedgerError(f"party {self.config.party.id!r} keeps no ledger")
                book = chain.Ledger(Path(self.config.party.data_dir) / "ledger" / label_party)
                book.install_ca(material[2].read_bytes())
                self._books[label_party] = book
            return book

    def model_digest(self, job_id: str) -> str | None:
        """The digest of this party's model part of the job (the SHA-256 its model.json carries), or None."""
        model = self.store.load_model(job_id)
        return None if model is None else chain.model_digest(model)

    # -- what a party B asks ------------------------------------------------------------------------------

    def _from_label_party(self, caller: str) -> None:
        if self.config.kind_of(caller) != "label":
            raise PeerNotAllowed(f"{caller!r} is not a party B of {self.config.party.id!r}: only a party B writes "
                                 "a ledger")

    def head(self, caller: str) -> dict[str, Any]:
        """This party's copy of ``caller``'s ledger: how many entries, the last digest, and what is wrong with it."""
        self._from_label_party(caller)
        book = self.copy_for(caller)
        with book.locked():
            count, last = book.head()
            problems = [str(p) for p in book.problems()[:3]]
        return {"entries": count, "digest": last, "problems": problems}

    def sign(self, entry: dict[str, Any], caller: str, record_of: Callable[[str], JobRecord | None]) -> dict[str, str]:
        """Sign an entry for party B ``caller`` once it agrees with this party's own view of the job.

        ``record_of`` finds this party's record of a job by id (None: it has none).
        """
        self._from_label_party(caller)
        me = self.config.party.id
        book = self.copy_for(caller)
        with book.locked():
            broken = book.problems()
            if broken:
                raise LedgerError("this party's copy of the ledger does not verify: "
                                  + "; ".join(str(p) for p in broken[:3]))
            count, last = book.head()
            problems = chain.entry_problems(entry, count, last, None, signatures=False)
            if any(p.field in ("index", "previous") for p in problems):
                raise LedgerConflict(f"the entry does not continue this party's copy of the ledger, which holds "
                                     f"{count} entries ending in {last[:16]}…: " + "; ".join(str(p) for p in problems))
            if problems:
                raise LedgerError("; ".join(str(p) for p in problems))
            fields = entry["fields"]
            record = record_of(str(fields.get("job_id")))
            if record is None:
                raise UnknownJobError(f"no job {fields.get('job_id')!r} at party {me!r}")
            record.require_caller(caller, "label")
            if record.state != "succeeded":
                raise JobError(f"job {record.job_id} {record.state_phrase()} here: it is not signed as finished")
            named = [(p.get("party"), p.get("role")) for p in fields.get("parties") or []]
            expected = job_parties(record)
            if sorted(named) != sorted(expected):
                raise LedgerError(f"the entry names the parties {named}; job {record.job_id} has {expected} here")
            mine = next(p for p in fields["parties"] if p.get("party") == me)
            feature = self.config.kind == "feature"
            model = self.model_digest(record.job_id) if feature else None
            dataset = record.dataset if feature else None
            if mine.get("dataset") != dataset:
                raise LedgerError(f"the entry gives this party's dataset as {mine.get('dataset')!r}; it is {dataset!r}")
            if mine.get("model_digest") != model:
                raise LedgerError(f"the entry gives this party's model digest as {str(mine.get('model_digest'))[:16]}…;"
                                  f" its model part of job {record.job_id} digests to {str(model)[:16]}…")
            config = record.training_config()
            if fields.get("config_digest") != chain.config_digest(config) or fields.get("model") != config.model:
                raise LedgerError(f"the entry's training config is not the one this party trained job "
                                  f"{record.job_id} with")
            if any(chain.job_of(held) == record.job_id for held in book.entries()):
                raise LedgerConflict(f"job {record.job_id} is in this party's copy of the ledger already: a job has "
                                     "one entry")
            signed = self.signed(caller)
            if signed.get(record.job_id, entry["digest"]) != entry["digest"]:
                raise LedgerConflict(f"party {me!r} signed another entry for job {record.job_id} already (digest "
                                     f"{signed[record.job_id][:16]}…): a party signs one entry per job")
            signed[record.job_id] = entry["digest"]
            self._save_signed(caller, signed)  # before the signature leaves: a crash cannot sign twice
            signature = self.signer().sign(entry)
        job_event(record.job_id, "signed ledger entry %d for party B (%s)", entry["index"], caller)
        return signature

    def append(self, entries: list[dict[str, Any]], caller: str,
               record_of: Callable[[str], JobRecord | None]) -> dict[str, Any]:
        """Append fully signed entries from party B ``caller``, each checked against this party's CA and chain.

        An entry for a job this party took part in with ``caller`` must be the one it signed.
        """
        self._from_label_party(caller)
        signed = self.signed(caller)
        for entry in entries:
            job = chain.job_of(entry)
            record = record_of(job) if job is not None else None
            took_part = record is not None and caller in record.peers.values()
            if took_part and signed.get(str(job)) != (entry.get("digest") if isinstance(entry, dict) else None):
                raise LedgerError(f"party {self.config.party.id!r} took part in job {job} but did not sign this "
                                  "entry for it; it appends only the entry it signed")
        count, last = self.copy_for(caller).append(entries)
        return {"entries": count, "digest": last}

    def signed(self, label_party: str) -> dict[str, str]:
        """The digest of the one entry this party signed per job, for party B ``label_party``."""
        path = self._signed_path(label_party)
        if not path.is_file():
            return {}
        try:
            data = read_json(path)
        except DamagedFile as exc:
            raise LedgerError(f"{path} {exc}; restore it from a backup: without it this party cannot tell which "
                              "entries it signed") from None
        return {str(job): str(digest) for job, digest in (data or {}).items()}

    def _signed_path(self, label_party: str) -> Path:
        # Beside the copy, not in it: a copy that was lost and restored must not forget what this party signed.
        return Path(self.config.party.data_dir) / "ledger" / f"signed-{label_party}.json"

    def _save_signed(self, label_party: str, signed: dict[str, str]) -> None:
        atomic_write_json(self._signed_path(label_party), signed)


def job_parties(record: JobRecord) -> list[tuple[str, RoleLetter]]:
    """(party id, role letter) of every party of the job, in roster order: feature parties, B, the arbiter."""
    roster = record.parties
    return [(record.peers.get(p, p), LETTERS[kind]) for p in (*roster.features, roster.label, roster.arbiter)
            if (kind := roster.kind_of(p)) is not None]


def ledger_view(copies: LedgerCopies, record: JobRecord, caller: str) -> dict[str, Any]:
    """A feature party's part of the job's entry: its dataset name and its model part's digest (for the job's B)."""
    record.require_caller(caller, "label")
    if record.state != "succeeded":
        raise JobError(f"job {record.job_id} {record.state_phrase()} here; it goes into the ledger once it succeeded")
    return {"party": copies.config.party.id, "dataset": record.dataset,
            "model_digest": copies.model_digest(record.job_id)}


def note_entries(records: list[JobRecord], store: JobStore, entries: list[dict[str, Any]],
                 signed: dict[str, str]) -> None:
    """Each job of ours that an appended entry records says so in its record: only for the entry it signed."""
    by_id = {record.job_id: record for record in records}
    for entry in entries:
        job = str(chain.job_of(entry))
        record = by_id.get(job)
        if record is not None and not isinstance(record, DamagedJobRecord) and signed.get(job) == entry.get("digest"):
            record.ledger = {"entry": entry["index"], "digest": entry["digest"], "signatures_verified": True,
                             "signed_by": chain.signers_of(entry)}
            store.save(record)


__all__ = ["LedgerCopies", "job_parties", "ledger_view", "note_entries"]
