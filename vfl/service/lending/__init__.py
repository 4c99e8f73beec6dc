"""Multi-lender queries at a service: a lender's tag sets and signatures, a querier's fan-out.

The protocol is :mod:`vfl.lending`; this package moves it over mTLS and keeps
its state: :mod:`.lender` (a lender's key, tag sets, budgets and what it signs)
and :mod:`.querier` (asking every lender at once). A service may be either, both
or neither; its routes are :mod:`vfl.service.http.lending`. Both write the same
audit log, ``<data_dir>/lending/audit.log``: who fetched a tag set or asked for
signatures, when, and how many, never an ID.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from vfl.compute.engine import Engine
from vfl.service.config import ServiceConfig
from vfl.service.datasets import Datasets
from vfl.service.lending.lender import Lender
from vfl.service.lending.querier import BLIND_SIGN_PATH, TAG_SET_PATH, LendingQueries
from vfl.service.logs import AuditLog
from vfl.service.peers import PeerClient


class LendingService:
    """A service's lending roles: ``lender`` when ``[lending] enabled``, ``queries`` when it lists lenders."""

    def __init__(self, config: ServiceConfig, datasets: Datasets, engine: Engine, client: PeerClient,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.config = config
        self.audit = AuditLog(Path(config.party.data_dir) / "lending" / "audit.log")
        self.lender = Lender(config, datasets, engine, self.audit, spawn)
        self.queries = LendingQueries(config, client, self.audit)

    async def start(self) -> None:
        if self.config.lending.enabled:
            await self.lender.start()

    async def stop(self) -> None:
        self.audit.close()

    def status(self) -> dict[str, Any]:
        settings = self.config.lending
        return {"party": self.config.party.id,
                "lender": self.lender.status() if settings.enabled else None,
                "querier": self.queries.status() if settings.lenders else None}


__all__ = ["BLIND_SIGN_PATH", "TAG_SET_PATH", "LendingService"]
