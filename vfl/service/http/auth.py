"""Who is calling: the orchestration token or a dashboard session, the scrape token, a peer's certificate.

* **Orchestration** routes (``/v1/jobs...``, ``/v1/models...``, ...) need
  ``Authorization: Bearer <token>``, compared in constant time and never logged
  (:data:`Orchestrator`). Without that header, the dashboard's session cookie
  will do (see :mod:`vfl.service.http.ui`): with it, reads (GET, HEAD) need
  nothing more, so the report and model links work as plain links; anything
  else is cross-site request forgery unless proven otherwise, so it needs the
  header ``X-VFL-UI: 1`` (which a page of another origin cannot send without a
  CORS preflight, and no service answers one) and, when the browser sends
  ``Origin``, the service's own origin. A session at a feature party or the
  arbiter reads only.
* ``GET /metrics`` takes that token or the ``[metrics]`` scrape token, which
  opens nothing else (:data:`Scraper`).
* **Peer** routes (``/v1/peer/...``) know the caller by its party id
  (:data:`Peer`): with TLS (the default) the common name of the client
  certificate the TLS layer verified against the federation's CA; only a service
  configured with ``insecure = true`` takes the ``X-VFL-Party`` header's word.

Each refusal is an error of the tree (:class:`~vfl.errors.BadToken`,
:class:`~vfl.errors.NotAPeer`, ...), answered and counted like any other.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Header, Request

from vfl.errors import BadToken, Forbidden, NoClientCertificate, NotAPeer, RateLimited
from vfl.service.peers import PARTY_HEADER
from vfl.service.tls import common_name

#: The session cookie's name before the party id. ``__Host-`` makes browsers insist on Secure, Path=/, no Domain.
COOKIE_PREFIX = "__Host-vfl-session-"
#: The header the dashboard's script sends with every call; required with the cookie on anything but a read.
UI_HEADER = "X-VFL-UI"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 64
SAFE_METHODS = frozenset({"GET", "HEAD"})
ROLE_NAMES = {"feature": "feature party", "label": "label party", "arbiter": "arbiter"}


class Sessions:
    """Dashboard sessions: random ids, kept only as SHA-256 digests, each with an expiry."""

    def __init__(self, lifetime: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self.clock = clock
        self._expiry: dict[str, float] = {}

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self) -> str:
        now = self.clock()
        self._expiry = {key: until for key, until in self._expiry.items() if until > now}
        while len(self._expiry) >= self.limit:  # the oldest session makes way
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        session_id = secrets.token_urlsafe(32)
        self._expiry[self._digest(session_id)] = now + self.lifetime
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        key = self._digest(session_id)
        until = self._expiry.get(key)
        if until is None:
            return False
        if until <= self.clock():
            del self._expiry[key]
            return False
        return True

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._expiry.pop(self._digest(session_id), None)

    def __len__(self) -> int:
        return len(self._expiry)


class Window:
    """Events per key (a client address, a peer) in the last minute."""

    SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def recent(self, key: str) -> deque[float]:
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and now - events[0] > self.SECONDS:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def count(self, key: str) -> int:
        return len(self.recent(key))

    def add(self, key: str) -> int:
        """Count one more event for ``key``; how many there are now in the window."""
        events = self.recent(key)
        events.append(self.clock())
        self._events[key] = events
        return len(events)


class Throttle:
    """Wrong tokens and failed logins per client address: past ``limit`` a minute, the address gets 429.

    Its log is collapsed too: the first failure from an address in a minute is logged,
    the others counted, and the count logged with the next line from that address.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._failures = Window(clock)
        self._unlogged: dict[str, int] = {}

    def check(self, address: str) -> None:
        """Refuse an address that failed too often in the last minute, before its credential is looked at."""
        failures = self._failures.recent(address)
        if len(failures) >= self.limit:
            wait = Window.SECONDS - (self.clock() - failures[0])
            raise RateLimited(f"{len(failures)} wrong tokens or failed logins from {address} in the last minute "
                              f"(limits.auth_failures_per_minute = {self.limit}); retry in {wait:.0f} s")

    def failed(self, address: str, what: str) -> None:
        """Count a failure; log it if it is the first from the address in a while (with how many were not)."""
        if self._failures.add(address) == 1:
            skipped = self._unlogged.pop(address, 0)
            more = f" ({skipped} more before, not logged one by one)" if skipped else ""
            logging.getLogger("vfl.service").warning("%s from %s%s", what, address, more)
        else:
            self._unlogged[address] = self._unlogged.get(address, 0) + 1


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def cookie_name(party_id: str) -> str:
    """The session cookie of party ``party_id``'s service (characters a cookie name cannot hold become ``_``)."""
    return COOKIE_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", party_id)


def session_of(request: Request) -> str | None:
    return request.cookies.get(request.app.state.ui_cookie)


def same_origin(request: Request) -> bool:
    """Does the browser say this request comes from a page of this service? (No Origin: not a cross-site fetch.)"""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    parts = urlsplit(origin)
    return parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


def _bearer(authorization: str | None, tokens: list[str]) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    matches = [hmac.compare_digest(given.encode(), t.encode()) for t in tokens]  # each compared, in constant time
    return scheme.lower() == "bearer" and any(matches)


def throttled(request: Request) -> None:
    """429 for an address that failed too often; quietly, since its failures were logged (collapsed) already."""
    try:
        request.app.state.throttle.check(client_address(request))
    except RateLimited:
        request.state.quiet = True
        raise


def _refuse(request: Request, message: str) -> BadToken:
    """Count a failed credential against the caller's address; the error to raise."""
    request.app.state.throttle.failed(client_address(request), "a wrong token or session")
    request.state.quiet = True  # the throttle logs (collapsed); the error handler need not
    return BadToken(message)


# The header is not a documented parameter: the documents declare the bearer scheme instead (.contract).
async def require_orchestrator(request: Request,
                               authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    """This party's own operators: the bearer token, or (without one) a live dashboard session."""
    throttled(request)
    if authorization is not None or session_of(request) is None:
        if not _bearer(authorization, [request.app.state.token]):
            raise _refuse(request, "missing or wrong bearer token")
        return
    if not request.app.state.ui_sessions.valid(session_of(request)):
        raise _refuse(request, "the dashboard session is unknown or expired: log in again at /ui/login")
    if request.method in SAFE_METHODS:
        return
    if request.headers.get(UI_HEADER) != "1" or not same_origin(request):
        raise Forbidden(f"a call with the session cookie that changes anything needs the header {UI_HEADER}: 1 and "
                        "this service's own Origin")
    kind = request.app.state.node.kind
    if kind != "label":
        raise Forbidden(f"the dashboard at the {ROLE_NAMES[kind]} reads only; use the bearer token")


async def require_scraper(request: Request,
                          authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    """GET /metrics: the orchestration token, or the scrape token ([metrics] scrape_token_file) if one is set."""
    throttled(request)
    tokens = [request.app.state.token] + [t for t in (request.app.state.scrape_token,) if t]
    if not _bearer(authorization, tokens):
        raise _refuse(request, "missing or wrong bearer token (the orchestration or the scrape token)")


async def peer_id(request: Request, x_vfl_party: Annotated[str | None, Header(alias=PARTY_HEADER)] = None) -> str:
    """The calling peer's party id, which must be one of this service's configured peers."""
    config = request.app.state.node.config
    if config.tls is None:
        claimed = x_vfl_party
    else:
        der = getattr(request.state, "peer_certificate", None)
        if not der:
            raise NoClientCertificate("peer endpoints need a client certificate signed by the federation's CA")
        claimed = common_name(der)
        if x_vfl_party is not None and x_vfl_party != claimed:
            raise NotAPeer(f"the X-VFL-Party header says {x_vfl_party!r}, the certificate {claimed!r}")
    if not claimed or claimed not in config.peers:
        raise NotAPeer(f"caller {claimed!r} is not a configured peer of this service")
    return claimed


#: A route's dependency: this party's own operators (token or dashboard session).
Orchestrator = Depends(require_orchestrator)
#: A route's dependency: the orchestration token or the scrape token.
Scraper = Depends(require_scraper)
#: A route's parameter: the calling peer's party id.
Peer = Annotated[str, Depends(peer_id)]

__all__ = ["Orchestrator", "Peer", "ROLE_NAMES", "SAFE_METHODS", "Scraper", "Sessions", "Throttle", "UI_HEADER", "Window",
           "client_address", "cookie_name", "throttled", "peer_id", "require_orchestrator", "require_scraper", "same_origin",
           "session_of"]
