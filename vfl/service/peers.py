"""Calls from one service to its peers, over httpx.

* Every call has a timeout (``limits.request_timeout``).
* Connection errors, timeouts, 502/503/504 answers and "not ready yet"
  answers (409 :class:`~vfl.errors.NotReady`: a message that arrived early) are
  retried with exponential backoff until the peer has been unreachable, or not
  ready, for ``limits.peer_timeout`` seconds; then
  :class:`~vfl.errors.TransportError` says which peer, where, and for how long.
  Retrying is safe because every peer endpoint is idempotent.
* Any other error answer becomes :class:`~vfl.errors.PeerRefused` carrying the
  peer's own message and status.
* An answer larger than ``limits.max_response_bytes`` is not read to its end:
  :class:`~vfl.errors.ProtocolError` says which peer and how large.
* Every attempt must connect within ``limits.connect_timeout``. A call made
  with ``connect_within`` (registering a job: someone waits for the answer)
  gives up once no attempt has connected for that many seconds, with
  :class:`PeerUnreachable`, instead of retrying for ``peer_timeout``.

While a call retries, :attr:`PeerClient.trouble` says so at once: the peer, since when
(wall clock, its first failed attempt), when the call gives up, and the last
problem. It is cleared as soon as the peer answers again, so a job's status can
say "waiting for party-a (unreachable since 12:03:11; the job fails at 12:05:11
unless it comes back)" long before ``peer_timeout`` runs out.

httpx exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from vfl.errors import PeerRefused, PeerUnreachable, ProtocolError, TransportError, error_detail
from vfl.protocol.messages import Message
from vfl.protocol.wire import MEDIA_TYPE, encode_message
from vfl.service.config import ServiceConfig
from vfl.service.tls import WrongPeer, client_ssl_context

RETRY_STATUSES = frozenset({502, 503, 504})
PARTY_HEADER = "X-VFL-Party"


@dataclass
class PeerTrouble:
    """A peer that does not answer (or is not ready) while calls to it are retried."""

    peer: str
    since: float  # Unix time of the first failed attempt
    gives_up_at: float  # Unix time at which the call that noticed it gives up (and the job fails)
    problem: str
    state: str  # "unreachable" or "not ready"
    owner: object = field(default=None, repr=False, compare=False)  # the call that noticed it first

    def as_dict(self) -> dict[str, Any]:
        return {"peer": self.peer, "state": self.state, "since": round(self.since, 3),
                "fails_at": round(self.gives_up_at, 3), "problem": self.problem}


class PeerClient:
    def __init__(self, config: ServiceConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        limits = config.limits
        self.peer_timeout = limits.peer_timeout
        self.request_timeout = limits.request_timeout
        self.connect_timeout = limits.connect_timeout
        self.max_response_bytes = limits.max_response_bytes
        #: Peers that calls are retrying right now (see the module's docstring), by peer id.
        self.trouble: dict[str, PeerTrouble] = {}
        tls = config.tls
        timeout = httpx.Timeout(limits.request_timeout, connect=min(limits.connect_timeout, limits.request_timeout))
        if tls is None or transport is not None:
            # Without TLS peers learn who we are from a header; a given transport (tests) serves every peer.
            headers = {PARTY_HEADER: config.party.id} if tls is None else {}
            shared = httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers)
            self._clients = dict.fromkeys(config.peers, shared)
        else:
            # One client per peer: its TLS context accepts only that peer's certificate (see
            # tls.client_ssl_context). Peers learn who we are from our client certificate.
            self._clients = {peer: httpx.AsyncClient(timeout=timeout,
                                                     verify=client_ssl_context(tls.ca, tls.cert, tls.key, peer))
                             for peer in config.peers}

    async def aclose(self) -> None:
        for client in {id(c): c for c in self._clients.values()}.values():
            await client.aclose()

    def url(self, peer_id: str, path: str) -> str:
        peer = self.config.peers.get(peer_id)
        if peer is None:
            raise TransportError(f"{peer_id!r} is not a configured peer of {self.config.party.id!r}")
        return peer.url.rstrip("/") + path

    async def request(
        self,
        peer_id: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        connect_within: float | None = None,
    ) -> httpx.Response:
        """One call, retried on connection trouble; an error answer raises PeerRefused.

        With ``connect_within``, a peer that no attempt could connect to for that many
        seconds raises :class:`PeerUnreachable` (the request never reached it).
        """
        call = object()
        try:
            return await self._request(peer_id, method, path, call, json=json, content=content, headers=headers,
                                       connect_within=connect_within)
        except BaseException:
            # A call stopped while it retried (its job was cancelled): the wait it reported goes with it. Another
            # call still retrying the same peer reports it again at its next failed attempt.
            known = self.trouble.get(peer_id)
            if known is not None and known.owner is call:
                del self.trouble[peer_id]
            raise

    async def _request(self, peer_id: str, method: str, path: str, call: object, *, json: Any,
                       content: bytes | None, headers: dict[str, str] | None,
                       connect_within: float | None) -> httpx.Response:
        url = self.url(peer_id, path)
        started = time.monotonic()
        deadline = started + self.peer_timeout
        connect_deadline = None if connect_within is None else started + connect_within
        delay = 0.1
        problem = ""
        last_try = False
        connected = False  # did any attempt reach the peer (then a retry may find the request already done)
        while True:
            # No single attempt may outlast the peer's deadline: a silent partition holds a
            # request open until its timeout, and that must not stretch peer_timeout.
            budget = min(self.request_timeout, max(1.0, deadline - time.monotonic()))
            connect = min(self.connect_timeout, budget)
            if connect_deadline is not None:
                connect = max(0.1, min(connect, connect_deadline - time.monotonic()))
            timeout = httpx.Timeout(budget, connect=connect)
            try:
                client = self._clients[peer_id]
                response = await self._capped(client, peer_id, client.build_request(
                    method, url, json=json, content=content, headers=headers, timeout=timeout))
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if _caused_by(exc, WrongPeer):  # not a passing fault: the party at that address is another
                    raise PeerRefused(f"peer {peer_id!r} at {url} is not that party: {exc}; check the url under "
                                      f"[peers.{peer_id}]", error="WrongPeer") from None
                if connect_deadline is not None and not connected and time.monotonic() + delay > connect_deadline:
                    raise PeerUnreachable(
                        f"peer {peer_id!r} at {url} cannot be reached ({problem}); no connection within "
                        f"{connect_within:g}s (limits.connect_timeout): check that it is running and that the url "
                        f"under [peers.{peer_id}] is right", peer_id=peer_id,
                    ) from None
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                connected = True
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                connected = True
                not_ready = response.status_code == 409 and error_name(response) == "NotReady"
                if response.status_code not in RETRY_STATUSES and not not_ready:
                    self.trouble.pop(peer_id, None)  # it answers again
                    break
                problem = f"not ready: {error_detail(response)}" if not_ready else f"HTTP {response.status_code}"
            state = "not ready" if problem.startswith("not ready") else "unreachable"
            if state == "unreachable":
                self._noticed(peer_id, started, problem, call)
            if last_try:
                self.trouble.pop(peer_id, None)  # this call gives up: the error says it from here on
                raise TransportError(
                    f"peer {peer_id!r} at {url} has been {state} for {time.monotonic() - started:.1f}s "
                    f"(limits.peer_timeout = {self.peer_timeout:g}s; {problem}); check that it is running and reachable"
                )
            if time.monotonic() + delay > deadline:
                last_try = True  # one more attempt at once: the link may have come back during the last one
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        if response.status_code >= 400:
            raise PeerRefused(
                f"peer {peer_id!r} refused {method} {path}: {error_detail(response)}",
                status=response.status_code, error=error_name(response),
            )
        return response

    def _noticed(self, peer_id: str, started: float, problem: str, call: object) -> None:
        """A call to ``peer_id`` failed an attempt: keep the earliest such moment until the peer answers."""
        known = self.trouble.get(peer_id)
        now = time.time()
        if known is None:
            gives_up = now + (self.peer_timeout - (time.monotonic() - started))
            self.trouble[peer_id] = PeerTrouble(peer_id, now, gives_up, problem, "unreachable", call)
        else:
            known.problem = problem

    def waiting_for(self, peer_ids: list[str]) -> list[dict[str, Any]]:
        """The peers among ``peer_ids`` that calls are retrying now, for a job's status."""
        return [self.trouble[p].as_dict() for p in peer_ids if p in self.trouble]

    async def _capped(self, client: httpx.AsyncClient, peer_id: str, request: httpx.Request) -> httpx.Response:
        """Send ``request``; its answer read up to ``max_response_bytes`` (decoded), no further."""
        limit = self.max_response_bytes
        declared = None
        response = await client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _TooLarge(int(declared))
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _TooLarge(len(body))
        except _TooLarge as exc:
            raise ProtocolError(
                f"peer {peer_id!r} answered {request.method} {request.url.path} with more than {limit} bytes "
                f"({exc.size} so far; limits.max_response_bytes): the answer is not read further") from None
        finally:
            await response.aclose()
        # The body is decoded already: the rebuilt response must not decode it again.
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _ENCODING_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=request)

    async def send_message(self, peer_id: str, job_id: str, message: Message, generation: int = 0) -> int:
        """Deliver one protocol message (binary frame) to a peer's inbox; returns its size."""
        frame = encode_message(message)
        await self.request(
            peer_id, "POST", f"/v1/peer/jobs/{job_id}/messages/{message.KIND}?generation={generation}",
            content=frame, headers={"Content-Type": MEDIA_TYPE},
        )
        return len(frame)

    async def call_json(self, peer_id: str, method: str, path: str, body: Any = None, *,
                        connect_within: float | None = None) -> Any:
        response = await self.request(peer_id, method, path, json=body, connect_within=connect_within)
        return response.json() if response.content else None


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


_ENCODING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def error_name(response: httpx.Response) -> str | None:
    """The class name of the peer's VFLError, when it sent one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None
