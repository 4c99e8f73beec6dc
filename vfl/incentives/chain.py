"""An append-only, hash-chained ledger of finished jobs, co-signed by every party of each job.

Every party keeps its own copy of the ledger: a folder with one file,
``ledger.jsonl``, one entry per line, and ``ca.pem``, the federation's CA
certificate the signatures are checked against. An entry::

    {"index": 3,                                # its place in the chain, from 0
     "previous": "<digest of entry 2>",         # 64 zeros for entry 0
     "fields": {"job_id": ..., "time": "2026-11-03T10:15:02Z", "model": "logistic",
                "parties": [{"party": "bank", "role": "B", "dataset": "credit", "model_digest": "<sha256>"},
                            {"party": "shop", "role": "A", "dataset": "behaviour", "model_digest": "<sha256>"},
                            {"party": "arbiter", "role": "C", "dataset": null, "model_digest": null}],
                "config_digest": "<sha256 of the training config>",
                "metrics": {...}, "contributions": {...} or null},
     "field_digests": {"job_id": "<sha256 of the field's canonical JSON>", ...},
     "digest": "<sha256 of the header {index, previous, field_digests}>",
     "signatures": [{"party": "bank", "certificate": "<PEM>", "signature": "<base64>"}, ...]}

Dataset *names* only, never data; a model part's digest is the SHA-256 of its
canonical JSON (for a service, the checksum its ``model.json`` carries).

An entry names the job's whole roster: party B, every feature party (role A)
and the arbiter (role C), each once. Every party named in ``fields.parties`` signs the header (``SIGNED_PREFIX`` +
its canonical JSON) with the private key of its certificate, signed by the
federation's CA (the services' TLS keys): ECDSA P-256 with SHA-256 for the
certificates ``vfl certs`` makes (RSA PKCS#1 v1.5 and Ed25519 are accepted too).
The header binds each field through its digest and the entry before it
through ``previous``, so:

* a changed field no longer matches its digest (:func:`verify_entries` names
  the field), and recomputing the digest breaks every signature;
* a removed, inserted or reordered entry breaks ``index`` or ``previous``;
* a signature by a certificate the CA did not issue, or for another party
  id, or over other content, is named as such;
* a dropped *last* entry leaves a valid shorter chain: only another party's
  copy shows it (``vfl ledger verify DIR --against OTHER``, and party B's head
  check before each new entry);
* an entry that names fewer parties than a job has (none, or B alone) so that
  fewer must sign is refused, and so is a second entry for a job already in the
  chain.

Appends are atomic and serialised: under an exclusive lock the whole file is
rewritten to a temporary file, flushed and renamed over the old one, so a
crash leaves the old ledger or the new one, never half an entry, and two
writers never interleave. An entry is appended only if its ``index`` and
``previous`` continue this copy's chain and it verifies in full.

``vfl ledger verify DIR`` and ``vfl ledger show DIR`` read a copy;
``vfl simulate ... --ledger DIR`` appends a simulated job, signed with keys it
makes for the occasion (:func:`throwaway_signers`); party B's service builds and
distributes entries (:mod:`vfl.service.stages.ledger`, :mod:`vfl.service.ledger_copies`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from vfl.errors import ConfigError, LedgerConflict, LedgerError
from vfl.files import FILE_MODE, FOLDER_MODE, atomic_write

LEDGER_FILE = "ledger.jsonl"
CA_FILE = "ca.pem"
LOCK_FILE = ".ledger.lock"
GENESIS = "0" * 64
#: What a signature covers: this prefix, then the canonical JSON of the entry's header.
SIGNED_PREFIX = b"vfl ledger entry v1\n"
FIELDS = ("job_id", "time", "model", "parties", "config_digest", "metrics", "contributions")
ENTRY_KEYS = ("index", "previous", "fields", "field_digests", "digest", "signatures")


# -- canonical JSON and digests ------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` as JSON types only: numpy numbers become Python ones, NaN and ±inf become None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{type(value).__name__} cannot go into a ledger entry")


def canonical(value: Any) -> bytes:
    """One spelling of a JSON value: sorted keys, no spaces, ASCII; floats as Python writes them (round-trip)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def digest(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``, hex."""
    return hashlib.sha256(canonical(value)).hexdigest()


def config_digest(config: Any) -> str:
    """Digest of a training config (a :class:`vfl.ml.config.TrainingConfig` or its JSON dict): every setting."""
    from vfl.ml.config import TrainingConfig

    if not isinstance(config, TrainingConfig):
        config = TrainingConfig.model_validate(config)
    return digest(config.model_dump(mode="json"))


def model_digest(part: dict[str, Any]) -> str:
    """Digest of a model part as saved: for a service, the same as the SHA-256 checksum in its model.json."""
    return digest(json.loads(json.dumps(plain(part), sort_keys=True)))


def header(entry: dict[str, Any]) -> dict[str, Any]:
    return {"index": entry["index"], "previous": entry["previous"], "field_digests": entry["field_digests"]}


def signed_bytes(entry: dict[str, Any]) -> bytes:
    return SIGNED_PREFIX + canonical(header(entry))


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def draft(index: int, previous: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An unsigned entry that continues a chain at ``index`` after the entry whose digest is ``previous``."""
    missing = [f for f in FIELDS if f not in fields]
    extra = sorted(set(fields) - set(FIELDS))
    if missing or extra:
        raise LedgerError(f"a ledger entry has the fields {', '.join(FIELDS)}; missing {missing}, unknown {extra}")
    values = plain({f: fields[f] for f in FIELDS})
    entry = {"index": int(index), "previous": previous, "fields": values,
             "field_digests": {f: digest(values[f]) for f in FIELDS}}
    entry["digest"] = digest(header(entry))
    entry["signatures"] = []
    return entry


def signers_of(entry: dict[str, Any]) -> list[str]:
    """The party ids that must sign the entry: every party it names."""
    return [str(p.get("party")) for p in (entry.get("fields") or {}).get("parties") or []]


def roster_problem(parties: Any) -> str | None:
    """Why ``fields.parties`` is not a job's whole roster (None if it is): B, one or more A, C, each once."""
    if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
        return "is not a list of parties"
    roles = [p.get("role") for p in parties]
    ids = [p.get("party") for p in parties]
    if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
        return f"names the parties {ids}: every party once, by its id"
    if roles.count("B") != 1 or roles.count("C") != 1 or roles.count("A") < 1 or len(roles) != roles.count("A") + 2:
        return (f"names the roles {roles}: an entry names a job's whole roster (party B, every feature party A and "
                "the arbiter C), so that every one of them must sign it")
    return None


# -- keys and signatures -------------------------------------------------------------------------------------


def _load_key(data: bytes, where: str) -> Any:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM private key without a passphrase ({exc})") from exc


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


@dataclass(frozen=True)
class Signer:
    """A party's signing identity: its id, its certificate (PEM) and the certificate's private key."""

    party: str
    certificate: str
    key: Any

    @classmethod
    def from_files(cls, cert: Path, key: Path, party: str | None = None) -> Signer:
        try:
            pem = Path(cert).read_bytes()
            key_pem = Path(key).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the ledger signing certificate or key: {exc}") from exc
        certificate = x509.load_pem_x509_certificate(pem)
        name = common_name(certificate)
        if party is not None and name != party:
            raise ConfigError(f"{cert}: the certificate is for {name!r}, this party is {party!r}: a ledger signature "
                              "must name the party that signs")
        private = _load_key(key_pem, str(key))
        if private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) != \
                certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ConfigError(f"{key} is not the private key of the certificate {cert}")
        return cls(name or "", pem.decode(), private)

    def sign(self, entry: dict[str, Any]) -> dict[str, str]:
        """This party's signature over the entry's header."""
        data = signed_bytes(entry)
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPrivateKey):
            raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.sign(data)
        else:
            raise LedgerError(f"party {self.party!r}: keys of type {type(key).__name__} cannot sign ledger entries")
        return {"party": self.party, "certificate": self.certificate, "signature": base64.b64encode(raw).decode()}


def fingerprint(cert: x509.Certificate) -> str:
    """A certificate's SHA-256 fingerprint as ``openssl x509 -fingerprint -sha256`` prints it (AB:CD:…)."""
    return ":".join(f"{byte:02X}" for byte in cert.fingerprint(hashes.SHA256()))


def load_ca(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the CA certificate {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate: {exc}") from exc


def _entry_time(entry: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(entry["fields"]["time"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except (KeyError, TypeError, ValueError):
        return None


def signature_problem(entry: dict[str, Any], signature: Any, ca: x509.Certificate) -> str | None:
    """Why one signature does not hold (None if it does): its certificate, the party it names, the signature."""
    if not isinstance(signature, dict) or not {"party", "certificate", "signature"} <= set(signature):
        return "is not a {party, certificate, signature} object"
    party = signature["party"]
    try:
        cert = x509.load_pem_x509_certificate(str(signature["certificate"]).encode())
    except ValueError:
        return f"of party {party!r}: its certificate is not a PEM certificate"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        issuer, ours = cert.issuer.rfc4514_string(), ca.subject.rfc4514_string()
        # Two CAs often share a name (every `vfl certs` CA is "vfl certificate authority"): fingerprints tell them
        # apart, and the usual cause is named when the names match.
        same_name = (" A CA of the same name but another key signed it: the CA was replaced after this entry was "
                     "signed (vfl certs --force, or vfl demo --prepare-only --force), or the entry comes from "
                     "another federation." if issuer == ours else "")
        return (f"of party {party!r}: its certificate (SHA-256 {fingerprint(cert)}, issued by {issuer}) was not "
                f"issued by the federation's CA ({ours}, SHA-256 {fingerprint(ca)}).{same_name}")
    if common_name(cert) != party:
        return f"of party {party!r}: its certificate is for {common_name(cert)!r}"
    when = _entry_time(entry)
    if when is not None and not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        return f"of party {party!r}: its certificate was not valid at the entry's time {entry['fields']['time']}"
    try:
        raw = base64.b64decode(str(signature["signature"]), validate=True)
    except ValueError:
        return f"of party {party!r}: the signature is not base64"
    key = cert.public_key()
    data = signed_bytes(entry)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(raw, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, data)
        else:
            return f"of party {party!r}: its key type {type(key).__name__} is not accepted"
    except InvalidSignature:
        return (f"of party {party!r} does not verify over this entry's header: the index, the previous digest or a "
                "field digest changed after it was signed")
    return None


# -- checking entries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One break in a ledger: the entry (its place in the file), its job, the field and what is wrong."""

    entry: int | None
    job_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = "ledger" if self.entry is None else f"entry {self.entry}"
        if self.job_id:
            where += f" (job {self.job_id})"
        return f"{where}: field '{self.field}': {self.message}"


def entry_problems(entry: Any, position: int, previous: str, ca: x509.Certificate | None,
                   *, signatures: bool = True) -> list[Problem]:
    """Everything wrong with ``entry`` as the ``position``-th of a chain whose last digest is ``previous``."""
    if not isinstance(entry, dict):
        return [Problem(position, None, "entry", "is not a JSON object")]
    fields = entry.get("fields") if isinstance(entry.get("fields"), dict) else {}
    job = fields.get("job_id") if isinstance(fields.get("job_id"), str) else None
    out: list[Problem] = []

    def bad(field: str, message: str) -> None:
        out.append(Problem(position, job, field, message))

    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        bad(missing[0], f"is missing (an entry has {', '.join(ENTRY_KEYS)})")
        return out
    if entry["index"] != position:
        bad("index", f"is {entry['index']!r} at position {position}: entries were removed, inserted or reordered")
    if entry["previous"] != previous:
        what = "the start of the chain" if position == 0 else f"entry {position - 1}'s digest"
        bad("previous", f"is not {what}: an entry before it was removed, inserted, reordered or changed")
    digests = entry["field_digests"] if isinstance(entry["field_digests"], dict) else {}
    if sorted(fields) != sorted(FIELDS) or sorted(digests) != sorted(FIELDS):
        bad("fields", f"an entry records exactly {', '.join(FIELDS)}; this one has {sorted(fields)}")
    for name in FIELDS:
        if name in fields and name in digests:
            try:
                ok = digest(fields[name]) == digests[name]
            except (TypeError, ValueError):
                ok = False
            if not ok:
                bad(name, "does not match the digest its parties signed: it was changed after signing")
    try:
        expected = digest(header(entry))
    except (TypeError, ValueError):
        expected = None
    if entry["digest"] != expected:
        bad("digest", "is not the SHA-256 of the entry's header (index, previous, field_digests)")
    roster = roster_problem(fields.get("parties"))
    if roster is not None:
        bad("parties", roster)
    if not signatures:
        return out
    signed = entry["signatures"] if isinstance(entry["signatures"], list) else []
    by_party: dict[str, Any] = {}
    for signature in signed:
        party = signature.get("party") if isinstance(signature, dict) else None
        if party in by_party:
            bad("signatures", f"party {party!r} signed twice")
        by_party[str(party)] = signature
    required = signers_of(entry)
    for party in required:
        if party not in by_party:
            bad("signatures", f"party {party!r} did not sign")
    for party, signature in by_party.items():
        if party not in required:
            bad("signatures", f"party {party!r} signed but takes no part in the entry")
            continue
        if ca is not None:
            problem = signature_problem(entry, signature, ca)
            if problem is not None:
                bad("signatures", f"the signature {problem}")
    return out


def job_of(entry: Any) -> str | None:
    fields = entry.get("fields") if isinstance(entry, dict) else None
    job = fields.get("job_id") if isinstance(fields, dict) else None
    return job if isinstance(job, str) else None


def verify_entries(entries: Sequence[Any], ca: x509.Certificate | None) -> list[Problem]:
    """Every break in a chain of entries: each entry's fields, digests, signatures and link to the one before,
    and a job recorded twice."""
    problems: list[Problem] = []
    previous = GENESIS
    first: dict[str, int] = {}
    for position, entry in enumerate(entries):
        problems += entry_problems(entry, position, previous, ca)
        previous = entry.get("digest") if isinstance(entry, dict) and isinstance(entry.get("digest"), str) else ""
        job = job_of(entry)
        if job is None:
            continue
        if job in first:
            problems.append(Problem(position, job, "job_id", f"job {job} is recorded twice (first at entry "
                                                             f"{first[job]}): a job has one entry"))
        else:
            first[job] = position
    return problems


def model_problems(entries: Sequence[dict[str, Any]], party: str, document: Any, where: str) -> list[Problem]:
    """Does ``document`` (a party's model part: a service's model.json, or the part itself) match what it signed?"""
    data = document.get("data") if isinstance(document, dict) and set(document) == {"sha256", "data"} else document
    job = data.get("job_id") if isinstance(data, dict) else None
    matches = [(i, e) for i, e in enumerate(entries) if isinstance(e, dict)
               and (e.get("fields") or {}).get("job_id") == job]
    if not matches:
        return [Problem(None, job, "job_id", f"{where}: no entry records job {job!r}")]
    out = []
    actual = model_digest(data)
    for i, entry in matches:
        named = [p for p in entry["fields"].get("parties") or [] if p.get("party") == party]
        if not named:
            out.append(Problem(i, job, "parties", f"party {party!r} takes no part in the entry"))
        elif named[0].get("model_digest") != actual:
            out.append(Problem(i, job, "parties", f"party {party!r} signed model digest "
                               f"{str(named[0].get('model_digest'))[:16]}…, but its model {where} digests to "
                               f"{actual[:16]}…: the party signed for another model than the one it holds"))
    return out


def copies_differ(mine: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]], other: str) -> list[Problem]:
    """Where two copies of one ledger part ways: the first entry whose digests differ, or entries one lacks."""
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a.get("digest") != b.get("digest"):
            return [Problem(i, (a.get("fields") or {}).get("job_id"), "digest",
                            f"differs from the copy in {other}: the two copies disagree from here on")]
    if len(mine) < len(theirs):
        return [Problem(len(mine), (theirs[len(mine)].get("fields") or {}).get("job_id"), "entry",
                        f"is missing here but present in {other} ({len(theirs)} entries there, {len(mine)} here): "
                        "entries were dropped from the end of this copy")]
    if len(mine) > len(theirs):
        return [Problem(len(theirs), (mine[len(theirs)].get("fields") or {}).get("job_id"), "entry",
                        f"is missing in {other} ({len(theirs)} entries there, {len(mine)} here)")]
    return []


# -- one copy of the ledger: a folder ------------------------------------------------------------------------


class Ledger:
    """One party's copy: ``folder/ledger.jsonl`` and the CA certificate ``folder/ca.pem`` it is checked against."""

    def __init__(self, folder: Path, ca: x509.Certificate | None = None) -> None:
        self.folder = Path(folder)
        self.file = self.folder / LEDGER_FILE
        self._ca = ca
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._checked: tuple[int, int, int] | None = None  # (size, mtime_ns, entries) of the copy last verified

    # reading

    def ca(self) -> x509.Certificate:
        if self._ca is None:
            self._ca = load_ca(self.folder / CA_FILE)
        return self._ca

    def entries(self) -> list[dict[str, Any]]:
        """The entries on disk, in order; a line that is not JSON is a :class:`LedgerError` naming it."""
        if not self.file.is_file():
            return []
        out = []
        for number, line in enumerate(self.file.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise LedgerError(f"{self.file}: line {number + 1} is not a JSON entry ({exc})") from None
        return out

    def head(self) -> tuple[int, str]:
        """(number of entries, digest of the last one, or the genesis digest)."""
        entries = self.entries()
        return len(entries), (entries[-1].get("digest", "") if entries else GENESIS)

    def problems(self) -> list[Problem]:
        """Everything wrong with this copy as it is on disk (remembered while the file does not change)."""
        try:
            stat = self.file.stat()
        except FileNotFoundError:
            return []
        key = (stat.st_size, stat.st_mtime_ns)
        if self._checked is not None and self._checked[:2] == key:
            return []
        try:
            entries = self.entries()
        except LedgerError as exc:
            return [Problem(None, None, "entry", str(exc))]
        found = verify_entries(entries, self.ca())
        if not found:
            self._checked = (*key, len(entries))
        return found

    def draft(self, fields: dict[str, Any]) -> dict[str, Any]:
        count, last = self.head()
        return draft(count, last, fields)

    # writing

    def install_ca(self, pem: bytes) -> None:
        """Keep a copy of the federation's CA certificate beside the entries (what `vfl ledger verify` uses)."""
        self._ensure_folder()
        target = self.folder / CA_FILE
        if not target.is_file() or target.read_bytes() != pem:
            atomic_write(target, pem, FILE_MODE, durable=True)
        self._ca = x509.load_pem_x509_certificate(pem)

    def _ensure_folder(self) -> None:
        self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, FOLDER_MODE)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on this copy, between threads and processes (re-entrant within a thread).

        Hold it from :meth:`draft` to :meth:`append` so that no other writer takes the index in between.
        """
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._ensure_folder()
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                yield
            finally:
                self._depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def append(self, entries: Sequence[dict[str, Any]]) -> tuple[int, str]:
        """Append fully signed entries that continue this copy's chain; returns the new head.

        An entry this copy already holds (same index, same digest) is skipped, so a
        repeated delivery does nothing. One whose index or previous digest does not
        continue the chain is a :class:`LedgerConflict`; one that does not verify
        (fields, digests, every party's signature against the CA) a
        :class:`LedgerError`. Nothing is written unless every entry is good.
        """
        ca = self.ca()
        with self.locked():
            broken = self.problems()
            if broken:
                raise LedgerError(f"this copy of the ledger ({self.file}) does not verify, so nothing is appended to "
                                  f"it: {'; '.join(str(p) for p in broken[:3])}; restore it from another party's copy")
            held = self.entries()
            new = []
            count, last = len(held), (held[-1]["digest"] if held else GENESIS)
            for entry in entries:
                index = entry.get("index") if isinstance(entry, dict) else None
                if isinstance(index, int) and 0 <= index < count and not new:
                    if held[index].get("digest") != entry.get("digest"):
                        raise LedgerConflict(
                            f"this copy's entry {index} (job {held[index]['fields'].get('job_id')}) has digest "
                            f"{str(held[index].get('digest'))[:16]}…, the one offered {str(entry.get('digest'))[:16]}…: "
                            "the copies disagree")
                    continue
                job = job_of(entry)
                if job is not None and any(job_of(e) == job for e in (*held, *new)):
                    raise LedgerConflict(f"this copy already records job {job}: a job has one entry")
                if index != count or entry.get("previous") != last:
                    raise LedgerConflict(
                        f"the entry offered is number {index} after digest {str(entry.get('previous'))[:16]}…; this "
                        f"copy holds {count} entries ending in {last[:16]}…")
                problems = entry_problems(entry, count, last, ca)
                if problems:
                    raise LedgerError("; ".join(str(p) for p in problems))
                new.append(entry)
                count, last = count + 1, entry["digest"]
            if new:
                lines = [json.dumps(e, sort_keys=True, separators=(",", ":")) for e in (*held, *new)]
                atomic_write(self.file, ("\n".join(lines) + "\n").encode(), FILE_MODE, durable=True)
                stat = self.file.stat()
                self._checked = (stat.st_size, stat.st_mtime_ns, count)  # what we just wrote, checked entry by entry
            return count, last


def verify_folder(folder: Path, ca_path: Path | None = None) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Read a copy and check it: (entries, problems). The CA is ``ca_path`` or the copy's own ``ca.pem``."""
    folder = Path(folder)
    if not (folder / LEDGER_FILE).is_file():
        raise ConfigError(f"{folder} holds no {LEDGER_FILE}: give the folder of a ledger copy")
    ca = load_ca(ca_path if ca_path is not None else folder / CA_FILE)
    ledger = Ledger(folder, ca)
    entries = ledger.entries()
    return entries, verify_entries(entries, ca)


# -- keys made for the occasion (vfl simulate --ledger) -------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vfl simulation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_private(path: Path, key: Any) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    atomic_write(path, pem, FILE_MODE, durable=True)


def throwaway_signers(folder: Path, parties: Sequence[str]) -> dict[str, Signer]:
    """Signers for a simulated job: a CA and one key per party in ``folder/keys``, made on first use.

    They prove nothing about who signed (whoever holds the folder holds every key,
    the CA's included); they let a simulation write, and `vfl ledger verify` check,
    entries of the same form the services write. The CA certificate is copied to
    ``folder/ca.pem``.
    """
    keys = Path(folder) / "keys"
    if (Path(folder) / LEDGER_FILE).is_file() and not (keys / "ca.key").is_file():
        raise ConfigError(f"{folder} holds a ledger that vfl simulate did not write (no keys/ca.key beside it): "
                          "give --ledger a folder of its own")
    keys.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_pem_path, ca_key_path = keys / "ca.pem", keys / "ca.key"
    if ca_pem_path.is_file() and ca_key_path.is_file():
        ca_cert = load_ca(ca_pem_path)
        ca_key = _load_key(ca_key_path.read_bytes(), str(ca_key_path))
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder().subject_name(_name("vfl simulation CA")).issuer_name(_name("vfl simulation CA"))
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_path, ca_key)
        atomic_write(ca_pem_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644, durable=True)
    signers = {}
    for party in parties:
        cert_path, key_path = keys / f"{party}.pem", keys / f"{party}.key"
        if not (cert_path.is_file() and key_path.is_file()):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder().subject_name(_name(party)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256())
            )
            _write_private(key_path, key)
            atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, durable=True)
        signers[party] = Signer.from_files(cert_path, key_path, party)
    Ledger(folder).install_ca(ca_pem_path.read_bytes())
    return signers


def simulation_fields(result: dict[str, Any], source_b: str) -> dict[str, Any]:
    """The ledger fields of a :func:`vfl.local.simulate.simulate` result: parties "B", "A"/"A1"…, "C"."""
    from vfl.incentives.shapley import ledger_view

    parts = result["model_parts"]
    features = result.get("feature_parties") or []
    parties = [{"party": "B", "role": "B", "dataset": Path(source_b).name,
                "model_digest": model_digest(parts["party_b"])}]
    for f in features:
        key = "party_a" if len(features) == 1 else f"party_{f['party'].lower()}"
        parties.append({"party": f["party"], "role": "A", "dataset": Path(str(f.get("source"))).name,
                        "model_digest": model_digest(parts[key])})
    parties.append({"party": "C", "role": "C", "dataset": None, "model_digest": None})
    return {"job_id": result.get("job_id") or "simulation", "time": now_utc(), "model": result["model"],
            "parties": parties, "config_digest": config_digest(result["config"]), "metrics": result["metrics"],
            "contributions": ledger_view(result.get("contributions"))}


def record_simulation(folder: str | Path, result: dict[str, Any], source_b: str) -> dict[str, Any]:
    """Append a simulated job to the ledger in ``folder``, signed by every party with throw-away keys."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise ConfigError(f"--ledger {folder}: the folder {folder.parent} does not exist")
    fields = simulation_fields(result, source_b)
    signers = throwaway_signers(folder, [p["party"] for p in fields["parties"]])
    ledger = Ledger(folder)
    with ledger.locked():  # the draft's index and the append see the same head, whoever else writes
        entry = ledger.draft(fields)
        entry["signatures"] = [signers[p].sign(entry) for p in signers_of(entry)]
        count, last = ledger.append([entry])
    return {"folder": str(folder), "entry": entry["index"], "digest": entry["digest"], "entries": count,
            "signed_by": signers_of(entry), "signatures_verified": True}
