"""Multi-lender queries over the services: the lender's files and endpoints, the querier's fan-out.

The protocol is :mod:`vfl.lending`; this module moves it over mTLS and keeps its state.

A **lender** (``[lending] enabled = true``) keeps under ``<data_dir>/lending/``
(0700, files 0600)::

    key.json            its RSA key, salt, epoch, publication and rotation times (checksummed)
    tags-<key_id>.bin   the shuffled tags of that key, 32 bytes each
    budgets.json        what each querier has spent today and its requests of the last minute
    audit.log           who fetched a tag set or asked for signatures, when, and how many: never an ID

It publishes a tag set at its first start, then every ``rotate_every``
seconds, at a start that finds the borrower list changed, and on
``POST /v1/lending/rotate``; the old key keeps answering until the new set is
written, then is refused. A restart reloads the key, the tags and the budgets.

A **querier** (``[lending] lenders = [...]``) answers ``POST /v1/lending-query``:
it fetches each lender's tag set once per key (kept in memory), blinds the IDs
under each lender's key, asks all the lenders at once, checks and unblinds the
signatures, and matches. A lender that answers ``StaleKey`` has rotated: its
set is fetched again and the IDs blinded anew, once. In ``"count"`` mode the
count is computed here and only the count goes back to the caller; this
service itself still sees which lender holds each ID (see the README's threat
model).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, HTTPException
from gmpy2 import mpz
from pydantic import BaseModel, ConfigDict, Field

from vfl.data.ids import normalize_id
from vfl.errors import (
    ConfigError,
    LimitExceeded,
    NotReady,
    PeerNotAllowed,
    PeerRefused,
    ProtocolError,
    RateLimited,
    TransportError,
    VFLError,
)
from vfl.lending.budget import Budgets
from vfl.lending.lender import (
    LenderKey,
    StaleKey,
    TagSet,
    borrowers_digest,
    check_blinded,
    encode,
    parse_values,
    publish,
    sign_blinded,
)
from vfl.lending.querier import Querier, answers
from vfl.data.dataset import DatasetSection
from vfl.files import atomic_write
from vfl.service.store import FILE_MODE, FOLDER_MODE, atomic_write_json, read_json
from vfl.data.sources import open_source

if TYPE_CHECKING:
    from vfl.service.node import Node

log = logging.getLogger("vfl.service")

#: Up to this many values, signing runs on the event loop (about a millisecond each): a thread hop costs more.
INLINE_SIGNATURES = 8
#: How often the rotation task looks at the clock, at most.
CHECK_EVERY = 60.0
#: After a failed publication, the next try.
RETRY_AFTER = 60.0
TAG_SET_PATH = "/v1/peer/lending/tag-set"
BLIND_SIGN_PATH = "/v1/peer/lending/blind-sign"


class AuditLog:
    """One line per event, ``<UTC time> <line>``, appended at once to a 0600 file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: Any = None

    def write(self, line: str) -> None:
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                os.fchmod(fd, FILE_MODE)
                self._handle = os.fdopen(fd, "a", buffering=1)
            self._handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class LendingService:
    """A service's lending roles: lender, querier, or both (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.me = node.config.party.id
        self.settings = node.config.lending
        self.folder = Path(node.config.party.data_dir) / "lending"
        self.audit = AuditLog(self.folder / "audit.log")
        self.key: LenderKey | None = None
        self.tag_set: TagSet | None = None
        self._public: dict[str, Any] | None = None  # the tag set's JSON, made once per key
        self.publish_seconds: float | None = None
        self.budgets = Budgets(self.settings.budget_per_day, self.settings.rate_per_minute,
                               where=f"lender {self.me!r}")
        self.querier = Querier(min_key_bits=node.config.limits.min_key_bits)
        self._fetching: dict[str, asyncio.Lock] = {}
        self._rotation: asyncio.Lock | None = None
        self.publish_error: str | None = None  # why the last publication failed, until one succeeds

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        source = self.settings.borrowers_file
        if source is not None and not source.is_file():  # a lender without its list is a config error: say it now
            raise ConfigError(f"lending.borrowers_file {source} does not exist; a lender needs its borrower list")
        self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, FOLDER_MODE)
        self._rotation = asyncio.Lock()
        self._load_budgets()
        self._load_key()
        self.node.spawn(self._keep_current())

    async def stop(self) -> None:
        self.audit.close()

    # -- the lender's files -----------------------------------------------------------------

    def _load_budgets(self) -> None:
        path = self.folder / "budgets.json"
        if not path.is_file():
            return
        try:
            state = read_json(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file: say so, and count from zero
            log.error("lending: %s cannot be read (%s); every querier's budget starts from zero today", path, exc)
            return
        self.budgets = Budgets(self.settings.budget_per_day, self.settings.rate_per_minute, state,
                               where=f"lender {self.me!r}")

    def _save_budgets(self) -> None:
        atomic_write_json(self.folder / "budgets.json", self.budgets.to_dict())

    def _load_key(self) -> None:
        """The key and tags of the last publication, if they are whole; else a new one is published."""
        path = self.folder / "key.json"
        if not path.is_file():
            return
        try:
            stored = read_json(path)
            key = LenderKey.from_dict(stored)
            tags = (self.folder / f"tags-{key.key_id}.bin").read_bytes()
            if hashlib.sha256(tags).hexdigest() != stored.get("tags_sha256"):
                raise ValueError(f"tags-{key.key_id}.bin does not match its SHA-256 in key.json")
        except Exception as exc:  # noqa: BLE001 - anything damaged: publish afresh under a new key
            log.error("lending: the stored key or tag set under %s cannot be used (%s); publishing a new one",
                      self.folder, exc)
            return
        self.key, self.tag_set, self._public = key, key.tag_set(tags), None
        log.info("lending: tag set %s (epoch %d, %d borrowers) reloaded; it rotates at %s", key.key_id, key.epoch,
                 self.tag_set.size, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(key.rotates_at)))

    def _persist(self, key: LenderKey, tag_set: TagSet) -> None:
        """Tags first (named by key id), then key.json, which commits; the old tags go last."""
        tags_path = self.folder / f"tags-{key.key_id}.bin"
        atomic_write(tags_path, tag_set.tags, FILE_MODE)
        atomic_write_json(self.folder / "key.json",
                          {**key.to_dict(), "tags_sha256": hashlib.sha256(tag_set.tags).hexdigest(),
                           "size": tag_set.size})
        for old in self.folder.glob("tags-*.bin"):
            if old != tags_path:
                old.unlink(missing_ok=True)

    def _borrower_ids(self) -> list[str]:
        settings = self.settings
        if settings.borrowers is not None:
            return list(self.node.source(settings.borrowers).iter_ids())
        dataset = DatasetSection(path=settings.borrowers_file, id_column=settings.id_column)
        source = open_source("lending borrowers", dataset, max_bytes=self.node.config.limits.max_csv_bytes)
        try:
            return list(source.iter_ids())
        finally:
            source.close()

    # -- publication and rotation ---------------------------------------------------------------

    async def rotate(self, reason: str) -> TagSet:
        """Publish a new tag set under a new key; the old key answers until the new set is on disk."""
        assert self._rotation is not None
        async with self._rotation:
            ids = await asyncio.to_thread(self._borrower_ids)
            started = time.perf_counter()
            epoch = self.key.epoch + 1 if self.key is not None else 1
            limits = self.node.config.limits
            key, tag_set = await asyncio.to_thread(
                publish, ids, epoch=epoch, now=time.time(), rotate_every=self.settings.rotate_every,
                key_bits=self.settings.key_bits, min_key_bits=limits.min_key_bits, primes=self.settings.primes,
                engine=self.node.engine,
            )
            await asyncio.to_thread(self._persist, key, tag_set)
            seconds = time.perf_counter() - started
            old = self.key
            self.key, self.tag_set, self._public, self.publish_seconds = key, tag_set, None, seconds
        line = (f"published tag set {key.key_id} (epoch {key.epoch}): {tag_set.size} borrowers, "
                f"{seconds:.1f} s ({tag_set.size / seconds if seconds else 0:.0f} signatures/s); {reason}")
        if old is not None:
            line += f"; key {old.key_id} (epoch {old.epoch}) is no longer signed with"
        self.audit.write(line)
        log.info("lending: %s", line)
        return tag_set

    async def _borrowers_changed(self) -> bool:
        ids = await asyncio.to_thread(self._borrower_ids)
        return self.key is not None and borrowers_digest(ids) != self.key.borrowers

    async def _keep_current(self) -> None:
        """Publish at the first start, after a change found at start-up, and whenever the key is due."""
        reason = "first publication" if self.key is None else None
        if reason is None:
            try:
                if await self._borrowers_changed():
                    reason = "the borrower list changed while the service was down"
            except Exception as exc:  # noqa: BLE001 - the stored set answers; the next rotation tries again
                log.error("lending: cannot read the borrower list (%s); the stored tag set answers meanwhile", exc)
        while True:
            if reason is None and self.key is not None and time.time() >= self.key.rotates_at:
                reason = f"scheduled rotation (lending.rotate_every = {self.settings.rotate_every:g} s)"
            if reason is not None:
                try:
                    await self.rotate(reason)
                    reason, self.publish_error = None, None
                except Exception as exc:  # noqa: BLE001 - whatever it was, the service lives on and says why
                    self.publish_error = f"{type(exc).__name__}: {exc}"
                    log.error("lending: publishing a tag set failed (%s); retrying in %g s", self.publish_error,
                              RETRY_AFTER)
                    await asyncio.sleep(RETRY_AFTER)
                    continue
            due = self.key.rotates_at - time.time() if self.key is not None else 0.0
            await asyncio.sleep(max(0.05, min(CHECK_EVERY, due)))

    # -- the lender's endpoints ---------------------------------------------------------------------

    def _check_querier(self, caller: str, what: str) -> None:
        if not self.settings.allows(caller):
            self.audit.write(f"refused {what} to {caller}: not in lending.allowed_queriers")
            raise PeerNotAllowed(f"{caller!r} may not query lender {self.me!r}: it is not in the lender's "
                                 "lending.allowed_queriers")

    def _no_tag_set(self) -> VFLError:
        if self.publish_error is not None:  # not worth retrying for peer_timeout: name the problem now
            return ConfigError(f"lender {self.me!r} has no tag set: publishing it failed ({self.publish_error}); "
                               "its operators must fix its [lending] section or borrower list")
        return NotReady(f"lender {self.me!r} is publishing its first tag set; retry shortly")

    def tag_set_for(self, caller: str) -> dict[str, Any]:
        self._check_querier(caller, "the tag set")
        if self.tag_set is None:
            raise self._no_tag_set()
        if self._public is None or self._public["key_id"] != self.tag_set.key_id:
            self._public = self.tag_set.to_public()
        self.audit.write(f"tag set {self.tag_set.key_id} (epoch {self.tag_set.epoch}, {self.tag_set.size} tags) "
                         f"sent to {caller}")
        return self._public

    async def blind_sign(self, caller: str, key_id: str, raw_values: list[str]) -> dict[str, Any]:
        """Sign a querier's blinded values, after the key, range, unit, budget and rate checks."""
        count = len(raw_values) if isinstance(raw_values, list) else 0
        self._check_querier(caller, f"blind signatures ({_count(count, 'value')})")
        key = self.key
        if key is None:
            raise self._no_tag_set()
        try:
            if key_id != key.key_id:
                raise StaleKey(f"key {key_id!r} is not lender {self.me!r}'s current key (now {key.key_id}, epoch "
                               f"{key.epoch}): it rotated; fetch the tag set again")
            values = parse_values(raw_values, key.private.public, limit=self.settings.max_ids_per_query)
            check_blinded(values, key.private.public.n)
            usage = self.budgets.charge(caller, len(values))
            self._save_budgets()  # before anything is signed: a crash cannot hand out unpaid signatures
        except VFLError as exc:
            self.audit.write(f"refused blind signatures to {caller} ({_count(count, 'value')}): "
                             f"{type(exc).__name__}: {exc}")
            raise
        if len(values) <= INLINE_SIGNATURES:
            signatures = sign_blinded(key, key_id, values)
        else:
            signatures = await asyncio.to_thread(sign_blinded, key, key_id, values, self.node.engine)
        self.audit.write(f"signed {_count(len(values), 'blinded value')} for {caller} under key {key.key_id} (epoch "
                         f"{key.epoch}); {usage['used']} of {self.budgets.per_day} IDs used today")
        return {"key_id": key.key_id, "epoch": key.epoch, "signatures": encode(signatures)}

    # -- the querier -------------------------------------------------------------------------------

    async def query(self, ids: list[Any], answer: Literal["lenders", "count"],
                    lenders: list[str] | None = None) -> dict[str, Any]:
        """Ask every lender (or those named) about ``ids`` at once; per ID, which lenders hold it or how many."""
        started = time.perf_counter()
        configured = self.settings.lenders
        if not configured:
            raise ConfigError(f"party {self.me!r} asks no lenders: list their peer ids under [lending] lenders")
        asked = list(dict.fromkeys(lenders)) if lenders else list(configured)
        for lender in asked:
            if lender not in configured:
                raise ConfigError(f"unknown lender {lender!r}: party {self.me!r} asks "
                                  f"{', '.join(configured)} ([lending] lenders)")
        if not ids:
            raise LimitExceeded("give at least one ID in 'ids'")
        if len(ids) > self.settings.max_ids_per_query:
            raise LimitExceeded(f"{len(ids)} IDs in one query; at most {self.settings.max_ids_per_query} "
                                "(lending.max_ids_per_query)")
        wanted = [normalize_id(x, source="ids", position=i) for i, x in enumerate(ids)]
        distinct = list(dict.fromkeys(wanted))  # an ID given twice is asked (and paid for) once
        outcomes = await asyncio.gather(*(self._ask(lender, distinct) for lender in asked), return_exceptions=True)
        failures = {lender: exc for lender, exc in zip(asked, outcomes) if isinstance(exc, BaseException)}
        for exc in failures.values():
            if not isinstance(exc, VFLError):
                raise exc
        if failures:
            self.audit.write(f"lending query of {_count(len(distinct), 'ID')} refused by {', '.join(failures)} "
                             f"(asked {', '.join(asked)})")
            raise _combined(failures)
        position = {x: i for i, x in enumerate(distinct)}
        found = {lender: [hits[position[x]] for x in wanted] for lender, hits in zip(asked, outcomes)}
        self.audit.write(f"lending query of {_count(len(distinct), 'ID')} asked of {', '.join(asked)} (answer={answer})")
        keys = {lender: self.querier.cached(lender).summary() for lender in asked if self.querier.cached(lender)}
        return {"answer": answer, "lenders": asked, "results": answers(wanted, found, answer), "keys": keys,
                "seconds": round(time.perf_counter() - started, 4)}

    async def _tag_set(self, lender: str, *, refresh: bool = False) -> TagSet:
        lock = self._fetching.setdefault(lender, asyncio.Lock())
        async with lock:
            cached = self.querier.cached(lender)
            if cached is not None and not refresh:
                return cached
            client = self.node.client
            data = await client.call_json(lender, "GET", TAG_SET_PATH,
                                          connect_within=self.node.config.limits.connect_timeout)
            tag_set = await asyncio.to_thread(self.querier.accept, lender, data)
            log.info("lending: tag set %s of lender %s (epoch %d, %d tags) fetched", tag_set.key_id, lender,
                     tag_set.epoch, tag_set.size)
            return tag_set

    async def _ask(self, lender: str, ids: list[str]) -> list[bool]:
        """One lender's answers for ``ids``: blind under its current key, have it sign, check, unblind, match."""
        for attempt in range(2):
            tag_set = await self._tag_set(lender, refresh=attempt > 0)
            if len(ids) <= INLINE_SIGNATURES:
                blinded = self.querier.blind(lender, ids)
            else:  # an exponentiation and a hash per ID: off the event loop
                blinded = await asyncio.to_thread(self.querier.blind, lender, ids)
            try:
                reply = await self.node.client.call_json(
                    lender, "POST", BLIND_SIGN_PATH, {"key_id": tag_set.key_id, "values": encode(blinded.values)},
                    connect_within=self.node.config.limits.connect_timeout)
            except PeerRefused as exc:
                if exc.error == "StaleKey" and attempt == 0:
                    log.info("lending: lender %s rotated its key %s; fetching its new tag set", lender, tag_set.key_id)
                    continue
                raise
            try:
                key_id = str(reply["key_id"])
                signatures = [mpz(int(s, 16)) for s in reply["signatures"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise ProtocolError(f"lender {lender!r} answered the blind query with garbage ({exc!r})") from None
            try:
                if len(ids) <= INLINE_SIGNATURES:
                    return self.querier.match(blinded, key_id, signatures)
                return await asyncio.to_thread(self.querier.match, blinded, key_id, signatures)
            except StaleKey:
                if attempt == 0:
                    continue
                raise
        raise TransportError(f"lender {lender!r} rotated its key twice during one query; ask again")

    # -- status ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lender = None
        if self.settings.enabled:
            lender = {"tag_set": self.tag_set.summary() if self.tag_set is not None else None,
                      "publishing": self._rotation is not None and self._rotation.locked(),
                      "publish_seconds": self.publish_seconds,
                      "publish_error": self.publish_error,
                      "rotate_every": self.settings.rotate_every,
                      "budget_per_day": self.settings.budget_per_day,
                      "rate_per_minute": self.settings.rate_per_minute,
                      "queriers": {q: self.budgets.usage(q) for q in self.budgets.queriers()}}
        querier = None
        if self.settings.lenders:
            querier = {"lenders": list(self.settings.lenders),
                       "cached": {name: ts.summary() for name in self.settings.lenders
                                  if (ts := self.querier.cached(name)) is not None}}
        return {"party": self.me, "lender": lender, "querier": querier}


def _combined(failures: dict[str, VFLError]) -> VFLError:
    """One error for the caller naming every lender that failed: 429 if every one was a budget or rate refusal."""
    reasons = "; ".join(f"lender {lender!r}: {_reason(exc)}" for lender, exc in failures.items())
    if all(isinstance(exc, PeerRefused) and exc.status == 429 for exc in failures.values()):
        return RateLimited(f"the query was refused: {reasons}")
    if len(failures) == 1:
        (exc,) = failures.values()
        if not isinstance(exc, (PeerRefused, TransportError)):
            return exc  # our own check of the lender's answer (a bad tag set or signature): its own status
    return TransportError(f"the query failed at {len(failures)} lender(s): {reasons}")


def _reason(exc: VFLError) -> str:
    """A lender's refusal without the client's "peer 'x' refused POST /v1/...:" prefix (the lender is named)."""
    text = str(exc)
    if isinstance(exc, PeerRefused) and " refused " in text and ": " in text:
        status = f"HTTP {exc.status} {exc.error or ''}".rstrip()
        return f"{status}: {text.partition(': ')[2]}"
    return text


# -- HTTP ------------------------------------------------------------------------------------------------


class BlindSignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(description="the key id of the tag set the values were blinded for")
    values: list[str] = Field(description="blinded values FDH(id)·r^e mod n, hexadecimal")


class LendingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str | int] = Field(description="the applicants' IDs (compared as exact text, as in the PSI)")
    answer: Literal["lenders", "count"] = Field(
        "lenders", description='"lenders": which lenders hold each ID; "count": only how many')
    lenders: list[str] | None = Field(None, description="ask only these of the configured lenders (default: all)")


def install(app: FastAPI, node: Node) -> None:
    """The lending routes of a party service (A or B)."""
    from vfl.service.api import Token, peer_id

    caller_id = Depends(peer_id)  # the calling peer's party id, from its client certificate

    def service(lender: bool = False) -> LendingService:
        lending = node.lending
        if lender and not node.config.lending.enabled:
            raise HTTPException(404, f"party {node.config.party.id!r} is not a lender ([lending] enabled = false)")
        return lending

    @app.get(TAG_SET_PATH, tags=["peer"], summary="A lender's current tag set: key id, public key, rotation time, "
                                                   "size and the shuffled tags")
    async def tag_set(caller: str = caller_id) -> dict[str, Any]:
        return service(lender=True).tag_set_for(caller)

    @app.post(BLIND_SIGN_PATH, tags=["peer"], summary="A lender signs blinded values under its current key "
                                                       "(within the querier's budget and rate)")
    async def blind_sign(body: BlindSignRequest, caller: str = caller_id) -> dict[str, Any]:
        return await service(lender=True).blind_sign(caller, body.key_id, body.values)

    @app.post("/v1/lending-query", tags=["lending"], dependencies=[Token],
              summary="Ask every configured lender at once whether it lends to these IDs, without revealing them")
    async def lending_query(body: LendingQuery) -> dict[str, Any]:
        return await service().query(body.ids, body.answer, body.lenders)

    @app.get("/v1/lending", tags=["lending"], dependencies=[Token],
             summary="This party's lending state: its tag set and queriers' budgets, the lenders it asks")
    async def lending_status() -> dict[str, Any]:
        return service().status()

    @app.post("/v1/lending/rotate", tags=["lending"], dependencies=[Token],
              summary="A lender publishes a new tag set under a new key now (after its borrower list changed)")
    async def rotate() -> dict[str, Any]:
        lending = service(lender=True)
        return (await lending.rotate("rotated by an orchestration call")).summary()
