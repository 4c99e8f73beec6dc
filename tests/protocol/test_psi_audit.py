"""The service's PSI roles audit every message they refuse while handling their queue.

At a service a message passes a check as it arrives, then waits in the job's queue.
A blinded chunk that arrives while B's declaration is still queued cannot be
measured against it yet: it is refused only when the worker handles it, by the
check ``handle`` runs again. That refusal must reach the audit log too, whatever
the order in which the requests and the worker happened to run.
"""

from __future__ import annotations

import pytest

from tests.protocol.test_psi import BITS
from tests.protocol.test_psi_bounds import UnderDeclaringRequester
from vfl.errors import PSIError
from vfl.service.psi_roles import AuditedKeyHolder


def roles(lines: list[str]) -> tuple[AuditedKeyHolder, UnderDeclaringRequester]:
    holder = AuditedKeyHolder("job", [f"a{i}" for i in range(20)], key_bits=BITS, min_key_bits=BITS,
                              audit=lines.append)
    requester = UnderDeclaringRequester("job", [f"x{i}" for i in range(10)], min_key_bits=BITS)
    requester.claimed = 3
    return holder, requester


def test_a_chunk_that_passed_its_arrival_check_before_the_declaration_was_handled_is_audited():
    lines: list[str] = []
    holder, requester = roles(lines)
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.check(declared.message, "B")
    holder.check(chunk.message, "B")  # the declaration is still queued: nothing to measure the chunk against
    holder.handle(declared.message, "B")

    with pytest.raises(PSIError, match="Refusing to sign more than party B declared"):
        holder.handle(chunk.message, "B")

    assert holder.size_b == 0
    assert len(lines) == 1 and lines[0].startswith("refused psi_blinded_chunk") and "declared 3 IDs" in lines[0]


def test_a_held_chunk_refused_when_the_declaration_releases_it_is_audited_under_its_own_name():
    lines: list[str] = []
    holder, requester = roles(lines)
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(chunk.message, "B")  # before the declaration: it waits

    with pytest.raises(PSIError, match="Refusing to sign more than party B declared"):
        holder.handle(declared.message, "B")

    assert holder.size_b == 0
    assert len(lines) == 1 and lines[0].startswith("refused psi_blinded_chunk")
