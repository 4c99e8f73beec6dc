"""What every role shares: envelopes, message ordering, and the h11-style contract.

A role is a plain object. ``handle(message)`` takes one incoming message and
returns the envelopes to send; it never does I/O. Whoever drives the roles
(the in-memory channel in :mod:`vfl.protocol.channel`, or the HTTP services)
only delivers envelopes.

Ordering. Each role expects its incoming messages in one order, which it
states by numbering them: :meth:`Role.position` maps a message to its place in
the role's sequence, and ``cursor`` is the place of the next expected one.
Over a network, messages that are fine can still arrive a little early (party
A's next forward before party B has applied its last update, say), so:

* the expected message is processed at once;
* one up to ``LOOKAHEAD`` places ahead is held and processed when its turn comes;
* one further ahead is refused as :class:`~vfl.errors.NotReady`, which a
  transport retries later (it was only early, under load);
* one for a place already passed is refused (:class:`~vfl.errors.ReplayError`):
  exact duplicates are absorbed by the transport before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass

from vfl.errors import NotReady, PeerNotAllowed, ProtocolError, ReplayError, UnknownJobError
from vfl.protocol.messages import Message, Party
from vfl.protocol.roster import RoleKind, Roster

LOOKAHEAD = 4


@dataclass(frozen=True)
class Envelope:
    sender: Party
    recipient: Party
    message: Message


class Role:
    """Base of :class:`FeatureParty`, :class:`LabelParty` and :class:`Arbiter`.

    ``party`` is this role's id in the job's :class:`Roster`; ``KIND`` its role.
    """

    KIND: RoleKind

    def __init__(self, job_id: str, roster: Roster, party: Party) -> None:
        if roster.kind_of(party) != self.KIND:
            raise ValueError(f"party {party!r} is not the {self.KIND} party of roster {roster}")
        self.job_id = job_id
        self.roster = roster
        self.party: Party = party
        self.cursor = 0
        #: How far ahead of ``cursor`` a message may be held (more parties, more in flight).
        self.lookahead = LOOKAHEAD
        self._held: list[tuple[int, Message]] = []

    # Subclasses provide these two, and may refine ``validate``.
    def validate(self, message: Message) -> None:
        """Check a message's payload (lengths, ciphertexts) before anything else; the default accepts it."""

    def position(self, message: Message) -> int:
        """Place of ``message`` in this role's expected sequence."""
        raise NotImplementedError

    def process(self, message: Message) -> list[Envelope]:
        """Act on the expected message; advance ``cursor``; return what to send."""
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return False

    def check(self, message: Message, sender: Party | None = None) -> int:
        """Refuse a message this role can never accept now; return its place. Changes nothing.

        A transport calls this before queuing a message, so the sender hears
        about a replay, a wrong sender or an unknown job at once.
        """
        if message.job_id != self.job_id:
            raise UnknownJobError(f"{self.party} runs job {self.job_id!r}, not {message.job_id!r}")
        if self.KIND not in message.RECIPIENTS:
            raise ProtocolError(f"{message.KIND} is not a message party {self.party} receives")
        if sender is not None:
            kind = self.roster.kind_of(sender)
            if kind is None:
                raise PeerNotAllowed(f"{sender!r} is not a party of job {self.job_id}")
            if kind not in message.SENDERS:
                raise PeerNotAllowed(f"party {sender} ({kind} party) may not send {message.KIND}")
            claimed = getattr(message, message.SENDER_FIELD) if message.SENDER_FIELD else sender
            if claimed != sender:
                raise PeerNotAllowed(f"party {sender} sent a {message.KIND} claiming to be party {claimed}")
        # The payload first: a garbled ciphertext is refused as such, whatever step it claims to be.
        self.validate(message)
        place = self.position(message)
        if place < self.cursor:
            raise ReplayError(f"{message.address()} was already handled; refusing a second, different copy")
        if place - self.cursor > self.lookahead:
            raise NotReady(f"{message.address()} is too far ahead of this party's progress")
        if place > self.cursor and any(p == place for p, _ in self._held):
            raise ReplayError(f"{message.address()} is already waiting to be handled")
        return place

    def handle(self, message: Message, sender: Party | None = None) -> list[Envelope]:
        """Take one message (from ``sender``, when the transport knows it); return what to send."""
        place = self.check(message, sender)
        if place > self.cursor:
            self._held.append((place, message))
            return []
        out = self.process(message)
        out.extend(self._release_held())
        return out

    def _release_held(self) -> list[Envelope]:
        out: list[Envelope] = []
        while True:
            ready = [item for item in self._held if item[0] == self.cursor]
            if not ready:
                return out
            self._held.remove(ready[0])
            out.extend(self.process(ready[0][1]))

    def send(self, recipient: Party, message: Message) -> Envelope:
        return Envelope(self.party, recipient, message)
