"""Runs all the roles of a job in one process by delivering their envelopes in order.

This is the whole "network" of the simulation: a FIFO queue. By default every
message is put through the binary wire codec on the way, so the simulation
exercises exactly the bytes the services exchange, and counts them.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from vfl.protocol.messages import Party
from vfl.protocol.role import Envelope, Role
from vfl.protocol.wire import decode_message, encode_message


class InMemoryChannel:
    def __init__(
        self,
        roles: dict[Party, Role],
        *,
        wire: bool = True,
        transcript: list[Envelope] | None = None,
        on_deliver: Callable[[Envelope], None] | None = None,
    ) -> None:
        self.roles = roles
        self.wire = wire
        self.transcript = transcript
        self.on_deliver = on_deliver
        self.bytes_sent: dict[tuple[Party, Party], int] = defaultdict(int)
        self.messages_sent = 0
        self.seconds_by_role: dict[Party, float] = defaultdict(float)
        #: This process's CPU seconds per role (a role's own CPU when it runs without worker processes).
        self.cpu_by_role: dict[Party, float] = defaultdict(float)

    def run(self, initial: Iterable[Envelope]) -> None:
        """Deliver envelopes until no role has anything more to send."""
        queue: deque[Envelope] = deque(initial)
        while queue:
            envelope = queue.popleft()
            message = envelope.message
            if self.wire:
                frame = encode_message(message)
                self.bytes_sent[(envelope.sender, envelope.recipient)] += len(frame)
                message = decode_message(frame)
                envelope = Envelope(envelope.sender, envelope.recipient, message)
            self.messages_sent += 1
            if self.transcript is not None:
                self.transcript.append(envelope)
            started, cpu = time.perf_counter(), time.process_time()
            replies = self.roles[envelope.recipient].handle(message, envelope.sender)
            self.seconds_by_role[envelope.recipient] += time.perf_counter() - started
            self.cpu_by_role[envelope.recipient] += time.process_time() - cpu
            if self.on_deliver is not None:
                self.on_deliver(envelope)
            queue.extend(replies)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent.values())
