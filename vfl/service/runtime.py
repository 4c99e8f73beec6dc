"""One job at one service: its roles, the messages it receives, what it sends.

The roles are the same I/O-free objects the simulation uses. This module only
moves their messages:

* **Receiving.** A frame arrives over HTTP. It is decoded, checked against the
  sender's identity, and de-duplicated: the same message again is answered
  "duplicate" and does nothing; a different message for a step already taken
  is a :class:`~vfl.errors.ReplayError` (HTTP 409).
* **Parties** queue a message after the role's side-effect-free ``check`` and
  process their queue in order on a worker, because their steps are slow and
  must not hold an HTTP request open (A's handler waiting on C while C's waits
  on A would deadlock).
* **The arbiter** handles each message inside the request, so a decryption it
  refuses reaches the sender as a 409 with the reason.
* **Sending.** What a role returns goes through an ordered outbox: to a peer
  over HTTP, or straight back into this job's own queue when a role addresses
  its own party (B sends the residual to itself).

**Generations.** A job's runtime has a generation number, bumped whenever the
job resumes from a checkpoint. Every message carries its sender's generation.
One from an older generation was in flight when a party went down: it is
answered "stale" and dropped, so it can neither be applied twice nor fail the
job. One from a newer generation means this party has not been told to
resume yet: it is refused as :class:`~vfl.errors.NotReady` (409), and the
sender retries it until this party has resumed.

Anything that goes wrong fails the job with a readable error, which the
service then tells the peers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from vfl.errors import LimitExceeded, NotReady, OutOfOrderError, PeerRefused, ReplayError, VFLError
from vfl.protocol.messages import IntVector, Message, Party
from vfl.protocol.role import Envelope, Role
from vfl.protocol.wire import decode_message

log = logging.getLogger("vfl.service")

#: Messages that arrive before their role exists are kept, up to this many.
EARLY_LIMIT = 16

SendFn = Callable[[Envelope, int], Awaitable[int]]  # (envelope, generation) → bytes sent
HandledFn = Callable[[Role, Message, list[Envelope]], Awaitable[None]]
FailFn = Callable[[str, bool], Awaitable[None]]  # (reason, the peer says the job was cancelled)


def dedup_key(sender: Party, message: Message) -> tuple:
    """What makes two messages "the same step": sender, kind, address and sub-slot."""
    return (
        sender,
        message.KIND,
        getattr(message, "epoch", None),
        getattr(message, "batch", None),
        getattr(message, "chunk", None),
        getattr(message, "split", None),
        getattr(message, "request_id", None),
    )


class JobRuntime:
    def __init__(
        self,
        job_id: str,
        party: Party,
        *,
        send: SendFn,
        on_handled: HandledFn,
        on_failure: FailFn,
        synchronous: bool = False,
        generation: int = 0,
        max_vector_length: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.party = party
        self.synchronous = synchronous
        self.generation = generation
        self.max_vector_length = max_vector_length
        self._send = send
        self._on_handled = on_handled
        self._on_failure = on_failure
        self.roles: dict[str, Role] = {}
        self._seen: dict[tuple, str] = {}
        self._early: list[tuple[Party, Message]] = []
        self._inbox: asyncio.Queue[tuple[Party, Message]] = asyncio.Queue()
        self._outbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self.failed: str | None = None
        self.closed = False
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.last_activity = time.monotonic()
        self._peer_quiet: dict[str, tuple[float, float]] = {}
        #: Seconds this party spent inside its roles' ``handle`` (computing), by protocol ("psi", "train"): the
        #: rest of a stage's time it waited for its peers. Counted for this runtime only (one per generation).
        self.compute_seconds: dict[str, float] = {}

    def touch(self) -> None:
        """Long local work for the job is still going (e.g. a large offline PSI set): it counts as activity.

        Safe from a worker thread: one float assignment. The watchdogs here and at
        the peers (through ``quiet`` in the probe answer) then do not take the job for idle.
        """
        self.last_activity = time.monotonic()

    def note_quiet(self, peer: str, reported: object) -> None:
        """Keep what ``peer``'s probe answer said: how long ago some party last worked for the job.

        An answer without a usable ``quiet`` (an older version, or garbage) is ignored.
        """
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) and 0 <= reported < math.inf:
            self._peer_quiet[peer] = (float(reported), time.monotonic())

    def quiet(self) -> float:
        """Seconds since any party of the job last sent, received or worked for it, as far as this one knows.

        Its own last activity, or a peer's ``quiet`` aged by the time since the
        peer said it, whichever is more recent. Each answer is built the same
        way, so liveness reaches parties that do not talk to each other: a
        feature party waiting for training sees, through party B, that another
        feature party is still building its offline set. It never makes a
        silent job look alive: every value goes back to some party's real
        activity plus the time since, and answers round up (:func:`quiet_answer`).
        """
        now = time.monotonic()
        return min([now - self.last_activity, *(q + now - at for q, at in self._peer_quiet.values())])

    def psi_bytes(self) -> int:
        """Bytes this party sent and received during alignment."""
        return self.bytes_in.get("psi", 0) + self.bytes_out.get("psi", 0)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._deliver_forever(), name=f"{self.job_id}-outbox"))
        if not self.synchronous:
            self._tasks.append(loop.create_task(self._work_forever(), name=f"{self.job_id}-worker"))

    async def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._tasks.clear()

    async def add_role(self, protocol: str, role: Role, initial: list[Envelope] | None = None) -> None:
        """Attach a role; send its opening envelopes; hand it any messages that came early.

        ``protocol`` is a message protocol ("psi", "train"), or ``"<protocol>:<party id>"``
        for a role that serves one peer only: party B runs one PSI per feature party.
        """
        self.roles[protocol] = role
        await self.post(initial or [])
        early = [(s, m) for s, m in self._early if self._role_for(s, m) is role]
        self._early = [(s, m) for s, m in self._early if self._role_for(s, m) is not role]
        for sender, message in early:
            await self._accept(sender, message)

    def _role_for(self, sender: Party, message: Message) -> Role | None:
        """The role a message from ``sender`` goes to: the one serving that sender, else the protocol's."""
        role = self.roles.get(f"{message.PROTOCOL}:{sender}")
        return self.roles.get(message.PROTOCOL) if role is None else role

    async def post(self, envelopes: list[Envelope]) -> None:
        """Queue envelopes for sending, in order."""
        for envelope in envelopes:
            await self._outbox.put(envelope)

    # -- receiving ------------------------------------------------------------------

    async def receive(self, sender: Party, frame: bytes, kind: str | None = None, generation: int = 0) -> str:
        """Take one frame from ``sender``: "accepted", "duplicate" or "stale", or raise (→ 4xx)."""
        self.last_activity = time.monotonic()
        if generation < self.generation:
            return "stale"
        if generation > self.generation:
            raise NotReady(
                f"job {self.job_id} is at generation {self.generation} here, the message at {generation}: "
                "this party has not resumed yet"
            )
        message = decode_message(frame)
        self._check_size(message)
        if kind is not None and message.KIND != kind:
            raise OutOfOrderError(f"the {kind} endpoint received a {message.KIND} message")
        if self.failed:
            raise OutOfOrderError(f"job {self.job_id} has failed here: {self.failed}")
        self.bytes_in[message.PROTOCOL] = self.bytes_in.get(message.PROTOCOL, 0) + len(frame)
        key = dedup_key(sender, message)
        digest = hashlib.sha256(frame).hexdigest()
        seen = self._seen.get(key)
        if seen == digest:
            return "duplicate"
        if seen is not None:
            raise ReplayError(f"{message.address()} from party {sender} was already received with other content")
        await self._accept(sender, message, key, digest)
        return "accepted"

    def _check_size(self, message: Message) -> None:
        if self.max_vector_length is None:
            return
        for name in type(message).model_fields:
            value = getattr(message, name)
            if isinstance(value, IntVector) and value.count > self.max_vector_length:
                raise LimitExceeded(
                    f"{message.KIND}.{name} has {value.count} elements; this service accepts at most "
                    f"{self.max_vector_length} (limits.max_vector_length)"
                )

    async def _accept(self, sender: Party, message: Message, key: tuple | None = None, digest: str | None = None) -> None:
        role = self._role_for(sender, message)
        if role is None:
            if len(self._early) >= EARLY_LIMIT:
                raise NotReady(f"{message.address()} arrived before this party is ready for it")
            self._early.append((sender, message))
        elif self.synchronous:
            async with self._lock:
                envelopes = await self._handle(role, message, sender)
                await self._after(role, message, envelopes)
        else:
            role.check(message, sender)
            await self._inbox.put((sender, message))
        if key is not None:
            self._seen[key] = digest

    async def _handle(self, role: Role, message: Message, sender: Party) -> list[Envelope]:
        """The role handles one message in a thread; the time it takes is this party's compute."""
        began = time.perf_counter()
        try:
            return await asyncio.to_thread(role.handle, message, sender)
        finally:
            protocol = message.PROTOCOL
            self.compute_seconds[protocol] = self.compute_seconds.get(protocol, 0.0) + time.perf_counter() - began

    async def _after(self, role: Role, message: Message, envelopes: list[Envelope]) -> None:
        self.last_activity = time.monotonic()
        # The service records progress first (the arbiter's decryption ledger must be on disk
        # before its answer leaves), then the answers go out.
        await self._on_handled(role, message, envelopes)
        for envelope in envelopes:
            await self._outbox.put(envelope)

    # -- the two loops ----------------------------------------------------------------

    async def _work_forever(self) -> None:
        while True:
            sender, message = await self._inbox.get()
            role = self._role_for(sender, message)
            try:
                envelopes = await self._handle(role, message, sender)
                await self._after(role, message, envelopes)
            except VFLError as exc:
                await self.fail(f"{type(exc).__name__} while handling {message.address()}: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not hang it
                log.exception("unexpected error in job %s", self.job_id)
                await self.fail(f"internal error while handling {message.address()}: {exc!r}")
                return

    async def _deliver_forever(self) -> None:
        while True:
            envelope = await self._outbox.get()
            try:
                if envelope.recipient == self.party:
                    await self._accept(envelope.sender, envelope.message)
                else:
                    # Stamped with this runtime's own generation: a runtime being replaced
                    # must never send under its successor's number.
                    sent = await self._send(envelope, self.generation)
                    protocol = envelope.message.PROTOCOL
                    self.bytes_out[protocol] = self.bytes_out.get(protocol, 0) + sent
            except VFLError as exc:
                # A peer that cancelled the job refuses what is still in flight: that is a cancel, not a fault.
                cancelled = isinstance(exc, PeerRefused) and exc.error == "JobCancelled"
                await self.fail(f"could not deliver {envelope.message.address()} to party {envelope.recipient}: {exc}",
                                cancelled=cancelled)
                return

    async def fail(self, reason: str, *, cancelled: bool = False) -> None:
        if self.failed is None and not self.closed:
            self.failed = reason
            # The service's own line ("job X: failed: ..." / "cancelled: ...") follows from on_failure.
            log.debug("job %s: runtime stopped (%s): %s", self.job_id, "cancelled" if cancelled else "failed", reason)
            await self._on_failure(reason, cancelled)
