"""The querier's side of multi-lender queries: ``POST /v1/lending-query`` asks every lender at once.

A **querier** (``[lending] lenders = [...]``) fetches each lender's tag set once
per key (kept in memory), blinds the IDs under each lender's key, asks all the
lenders at once, checks and unblinds the signatures, and matches. A lender that
answers ``StaleKey`` has rotated: its set is fetched again and the IDs blinded
anew, once. In ``"count"`` mode the count is computed here and only the count
goes back to the caller; this service itself still sees which lender holds each
ID (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

from gmpy2 import mpz

from vfl.data.ids import normalize_id
from vfl.errors import ConfigError, LimitExceeded, PeerRefused, ProtocolError, RateLimited, StaleKey, TransportError, VFLError
from vfl.lending.lender import TagSet, encode
from vfl.lending.querier import Querier, answers
from vfl.service.config import ServiceConfig
from vfl.service.lending.lender import INLINE_SIGNATURES, plural
from vfl.service.logs import AuditLog
from vfl.service.peers import PeerClient

log = logging.getLogger("vfl.service")

TAG_SET_PATH = "/v1/peer/lending/tag-set"
BLIND_SIGN_PATH = "/v1/peer/lending/blind-sign"


class LendingQueries:
    """A querier's lenders, their tag sets as fetched, and the fan-out of one query."""

    def __init__(self, config: ServiceConfig, client: PeerClient, audit: AuditLog) -> None:
        self.config = config
        self.client = client
        self.audit = audit
        self.me = config.party.id
        self.settings = config.lending
        #: The protocol's state: each lender's tag set, blinding and matching.
        self.protocol = Querier(min_key_bits=config.limits.min_key_bits, max_key_bits=config.limits.max_key_bits,
                                max_tags=config.lending.max_tag_set_size)
        self._fetching: dict[str, asyncio.Lock] = {}

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
            self.audit.write(f"lending query of {plural(len(distinct), 'ID')} refused by {', '.join(failures)} "
                             f"(asked {', '.join(asked)})")
            raise _combined(failures)
        position = {x: i for i, x in enumerate(distinct)}
        found = {lender: [hits[position[x]] for x in wanted] for lender, hits in zip(asked, outcomes)}
        self.audit.write(f"lending query of {plural(len(distinct), 'ID')} asked of {', '.join(asked)} (answer={answer})")
        keys = {lender: self.protocol.cached(lender).summary() for lender in asked if self.protocol.cached(lender)}
        return {"answer": answer, "lenders": asked, "results": answers(wanted, found, answer), "keys": keys,
                "seconds": round(time.perf_counter() - started, 4)}

    async def _tag_set(self, lender: str, *, refresh: bool = False) -> TagSet:
        lock = self._fetching.setdefault(lender, asyncio.Lock())
        async with lock:
            cached = self.protocol.cached(lender)
            if cached is not None and not refresh:
                return cached
            client = self.client
            data = await client.call_json(lender, "GET", TAG_SET_PATH,
                                          connect_within=self.config.limits.connect_timeout)
            tag_set = await asyncio.to_thread(self.protocol.accept, lender, data)
            log.info("lending: tag set %s of lender %s (epoch %d, %d tags) fetched", tag_set.key_id, lender,
                     tag_set.epoch, tag_set.size)
            return tag_set

    async def _ask(self, lender: str, ids: list[str]) -> list[bool]:
        """One lender's answers for ``ids``: blind under its current key, have it sign, check, unblind, match."""
        for attempt in range(2):
            tag_set = await self._tag_set(lender, refresh=attempt > 0)
            if len(ids) <= INLINE_SIGNATURES:
                blinded = self.protocol.blind(lender, ids)
            else:  # an exponentiation and a hash per ID: off the event loop
                blinded = await asyncio.to_thread(self.protocol.blind, lender, ids)
            try:
                reply = await self.client.call_json(
                    lender, "POST", BLIND_SIGN_PATH, {"key_id": tag_set.key_id, "values": encode(blinded.values)},
                    connect_within=self.config.limits.connect_timeout)
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
                    return self.protocol.match(blinded, key_id, signatures)
                return await asyncio.to_thread(self.protocol.match, blinded, key_id, signatures)
            except StaleKey:
                if attempt == 0:
                    continue
                raise
        raise TransportError(f"lender {lender!r} rotated its key twice during one query; ask again")

    def status(self) -> dict[str, Any]:
        return {"lenders": list(self.settings.lenders),
                "cached": {name: ts.summary() for name in self.settings.lenders
                           if (ts := self.protocol.cached(name)) is not None}}


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


__all__ = ["BLIND_SIGN_PATH", "TAG_SET_PATH", "LendingQueries"]
