"""Per-querier budgets of a lender: IDs per UTC day and requests per minute (no I/O).

Every signature a lender returns lets the querier test one ID against its
borrowers, so a querier with no bound could test its whole customer file.
:class:`Budgets` charges each blind-sign request before anything is signed:
``per_day`` IDs per querier per UTC calendar day, and ``per_minute``
requests per querier in the last 60 seconds (counted per whole second, so
the state stays small at any rate). A refusal is
:class:`~vfl.errors.RateLimited` (HTTP 429) naming the limit, its config key
and when it frees up, and charges nothing. The state is a plain dict
(:meth:`Budgets.to_dict`) that the service rewrites after every charge, so a
restart keeps what was spent.
"""

from __future__ import annotations

import time
from typing import Any

from vfl.errors import RateLimited

WINDOW = 60.0


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _next_midnight(now: float) -> float:
    return (int(now) // 86400 + 1) * 86400


class Budgets:
    def __init__(self, per_day: int, per_minute: int, state: dict[str, Any] | None = None, *,
                 where: str = "this lender") -> None:
        self.per_day = per_day
        self.per_minute = per_minute
        self.where = where  # who enforces the limits, for messages ("lender 'bank-2'")
        self._state: dict[str, dict[str, Any]] = {}
        for querier, entry in (state or {}).items():
            try:
                self._state[str(querier)] = {"day": str(entry["day"]), "used": int(entry["used"]),
                                             "recent": {int(k): int(v) for k, v in entry.get("recent", {}).items()}}
            except (AttributeError, KeyError, TypeError, ValueError):
                continue  # an unreadable entry: that querier starts the day afresh (the service logs it)

    def _entry(self, querier: str, now: float) -> dict[str, Any]:
        entry = self._state.setdefault(querier, {"day": utc_day(now), "used": 0, "recent": {}})
        if entry["day"] != utc_day(now):
            entry["day"], entry["used"] = utc_day(now), 0
        # Requests per whole second of the last minute: at most 60 numbers to keep, whatever the rate.
        second = int(now)
        entry["recent"] = {t: c for t, c in entry["recent"].items() if second - WINDOW < t <= second}
        return entry

    def charge(self, querier: str, count: int, now: float | None = None) -> dict[str, Any]:
        """Take one request and ``count`` IDs from the querier's allowance, or raise RateLimited (nothing taken)."""
        now = time.time() if now is None else now
        entry = self._entry(querier, now)
        made = sum(entry["recent"].values())
        if made >= self.per_minute:
            wait = max(1, int(min(entry["recent"]) + WINDOW - now + 1))
            raise RateLimited(
                f"querier {querier!r} made {made} lending requests in the last minute, the most "
                f"{self.where} allows (lending.rate_per_minute = {self.per_minute}); retry in {wait} s"
            )
        if entry["used"] + count > self.per_day:
            left = self.per_day - entry["used"]
            reset = time.strftime("%H:%M UTC", time.gmtime(_next_midnight(now)))
            raise RateLimited(
                f"querier {querier!r} has asked about {entry['used']} of its {self.per_day} IDs for today "
                f"({entry['day']}, lending.budget_per_day at {self.where}); {count} more would pass it "
                f"({left} left). The budget renews at {reset}"
            )
        entry["used"] += count
        entry["recent"][int(now)] = entry["recent"].get(int(now), 0) + 1
        return self.usage(querier, now)

    def usage(self, querier: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        entry = self._entry(querier, now)
        return {"day": entry["day"], "used": entry["used"], "left": self.per_day - entry["used"],
                "requests_last_minute": sum(entry["recent"].values())}

    def queriers(self) -> list[str]:
        return sorted(self._state)

    def to_dict(self) -> dict[str, Any]:
        return {q: {"day": e["day"], "used": e["used"], "recent": {str(t): c for t, c in e["recent"].items()}}
                for q, e in self._state.items()}
