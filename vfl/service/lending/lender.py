"""The lender's side of multi-lender queries: its key and tag set on disk, publication, rotation, blind signing.

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
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from vfl.compute.engine import Engine
from vfl.data.dataset import DatasetSection
from vfl.data.sources import open_source
from vfl.errors import ConfigError, NotReady, PeerNotAllowed, StaleKey, VFLError
from vfl.files import FILE_MODE, FOLDER_MODE, atomic_write
from vfl.lending.budget import Budgets
from vfl.lending.lender import (
    LenderKey,
    TagSet,
    borrowers_digest,
    check_blinded,
    encode,
    parse_values,
    publish,
    sign_blinded,
)
from vfl.service.config import ServiceConfig
from vfl.service.datasets import Datasets
from vfl.service.logs import AuditLog
from vfl.files import atomic_write_json, read_json

log = logging.getLogger("vfl.service")

#: Up to this many values, signing runs on the event loop (about a millisecond each): a thread hop costs more.
INLINE_SIGNATURES = 8
#: How often the rotation task looks at the clock, at most.
CHECK_EVERY = 60.0
#: After a failed publication, the next try.
RETRY_AFTER = 60.0


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Lender:
    """A lender's key, tag set and queriers' budgets, and what it answers."""

    def __init__(self, config: ServiceConfig, datasets: Datasets, engine: Engine, audit: AuditLog,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.config = config
        self.datasets = datasets
        self.engine = engine
        self.audit = audit
        self.spawn = spawn
        self.me = config.party.id
        self.settings = config.lending
        self.folder = Path(config.party.data_dir) / "lending"
        self.key: LenderKey | None = None
        self.tag_set: TagSet | None = None
        self._public: dict[str, Any] | None = None  # the tag set's JSON, made once per key
        self.publish_seconds: float | None = None
        self.budgets = Budgets(self.settings.budget_per_day, self.settings.rate_per_minute,
                               where=f"lender {self.me!r}")
        self._rotation = asyncio.Lock()
        self.publish_error: str | None = None  # why the last publication failed, until one succeeds

    async def start(self) -> None:
        source = self.settings.borrowers_file
        if source is not None and not source.is_file():  # a lender without its list is a config error: say it now
            raise ConfigError(f"lending.borrowers_file {source} does not exist; a lender needs its borrower list")
        self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, FOLDER_MODE)
        self._load_budgets()
        self._load_key()
        self.spawn(self._keep_current())

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
            return list(self.datasets.source(settings.borrowers).iter_ids())
        dataset = DatasetSection(path=settings.borrowers_file, id_column=settings.id_column)
        source = open_source("lending borrowers", dataset, max_bytes=self.config.limits.max_csv_bytes)
        try:
            return list(source.iter_ids())
        finally:
            source.close()

    # -- publication and rotation ---------------------------------------------------------------

    async def rotate(self, reason: str) -> TagSet:
        """Publish a new tag set under a new key; the old key answers until the new set is on disk."""
        async with self._rotation:
            ids = await asyncio.to_thread(self._borrower_ids)
            started = time.perf_counter()
            epoch = self.key.epoch + 1 if self.key is not None else 1
            limits = self.config.limits
            key, tag_set = await asyncio.to_thread(
                publish, ids, epoch=epoch, now=time.time(), rotate_every=self.settings.rotate_every,
                key_bits=self.settings.key_bits, min_key_bits=limits.min_key_bits, primes=self.settings.primes,
                engine=self.engine,
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
        if not self.settings.allows(caller, self.config.kind_of(caller)):
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
        self._check_querier(caller, f"blind signatures ({plural(count, 'value')})")
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
            self.audit.write(f"refused blind signatures to {caller} ({plural(count, 'value')}): "
                             f"{type(exc).__name__}: {exc}")
            raise
        if len(values) <= INLINE_SIGNATURES:
            signatures = sign_blinded(key, key_id, values)
        else:
            signatures = await asyncio.to_thread(sign_blinded, key, key_id, values, self.engine)
        self.audit.write(f"signed {plural(len(values), 'blinded value')} for {caller} under key {key.key_id} (epoch "
                         f"{key.epoch}); {usage['used']} of {self.budgets.per_day} IDs used today")
        return {"key_id": key.key_id, "epoch": key.epoch, "signatures": encode(signatures)}

    def status(self) -> dict[str, Any]:
        return {"tag_set": self.tag_set.summary() if self.tag_set is not None else None,
                "publishing": self._rotation.locked(),
                "publish_seconds": self.publish_seconds,
                "publish_error": self.publish_error,
                "rotate_every": self.settings.rotate_every,
                "budget_per_day": self.settings.budget_per_day,
                "rate_per_minute": self.settings.rate_per_minute,
                "queriers": {q: self.budgets.usage(q) for q in self.budgets.queriers()}}


__all__ = ["Lender", "plural"]
