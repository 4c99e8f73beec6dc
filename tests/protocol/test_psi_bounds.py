"""The PSI signs no more than B declared, and each side caps what the other may declare.

Each signature party A returns lets party B test one ID against A's set, so a B
that pads its set with guessed IDs would learn which of them A holds. These
tests play such a B (and a padded A), with the stock roles changed in a line
or two, and check what the honest side refuses and how much it gave away.
"""

from __future__ import annotations

import pytest

from psi import run_psi
from psi.messages import BlindedChunk, DeclaredSize, PsiPublicKey, SignedChunk
from psi.protocol import PsiKeyHolder, PsiRequester
from tests.protocol.test_psi import BITS, make_sets
from psi.joint import align
from vfl.errors import ConfigError, LimitExceeded, PSIError, ReplayError
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import IntVector
from vfl.protocol.role import Envelope


class UnderDeclaringRequester(PsiRequester):
    """A party B that declares ``claimed`` IDs, then blinds all of its (larger) set anyway."""

    claimed = 0

    def declaration(self) -> DeclaredSize:
        return DeclaredSize(job_id=self.job_id, size_b=self.claimed)


class MisdeclaringKeyHolder(PsiKeyHolder):
    """A party A whose public key announces ``claimed`` IDs while it publishes tags for all of its set."""

    claimed = 0

    def start(self) -> list[Envelope]:
        (envelope,) = super().start()
        lie = envelope.message.model_copy(update={"size_a": self.claimed})
        return [self.send("B", lie)]


def run_roles(holder: PsiKeyHolder, requester: PsiRequester, transcript: list[Envelope] | None = None) -> None:
    """Run both roles to the end, or to the first refusal (which propagates); record what was delivered."""
    channel = InMemoryChannel({"A": holder, "B": requester}, transcript=transcript)
    channel.run(holder.start())


def signed_values(transcript: list[Envelope]) -> int:
    return sum(e.message.values.count for e in transcript if isinstance(e.message, SignedChunk))


# -- a B that asks for more signatures than it declared ------------------------------------------------


@pytest.mark.parametrize("claimed", [100, 64], ids=["mid-chunk", "chunk-boundary"])
def test_a_requester_sending_more_than_it_declared_is_refused(claimed):
    ids_a, ids_b, _ = make_sets(300, 0.5, seed=1)
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, chunk_size=64)
    requester = UnderDeclaringRequester("job", ids_b, min_key_bits=BITS)
    requester.claimed = claimed
    transcript: list[Envelope] = []

    with pytest.raises(PSIError, match=f"declared {claimed} IDs"):
        run_roles(holder, requester, transcript)

    assert holder.declared_size_b == claimed
    assert holder.size_b <= claimed  # A signed no more than declared: 64 (one chunk), not 300
    assert signed_values(transcript) == holder.size_b < len(ids_b)
    assert holder.rows is None  # and the alignment did not finish


def test_a_resent_chunk_with_other_content_is_refused():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    requester = PsiRequester("job", [f"x{i}" for i in range(10)], min_key_bits=BITS)
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(declared.message, "B")
    holder.handle(chunk.message, "B")
    other = chunk.message.model_copy(update={"values": IntVector.pack([5] * 10, 128)})

    with pytest.raises(ReplayError, match="already handled"):
        holder.handle(other, "B")

    assert holder.size_b == 10  # the first copy only


def test_a_second_declaration_cannot_raise_the_first():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    holder.start()
    holder.handle(DeclaredSize(job_id="job", size_b=1), "B")

    with pytest.raises(ReplayError, match="already handled"):
        holder.handle(DeclaredSize(job_id="job", size_b=1000), "B")

    assert holder.declared_size_b == 1


def test_a_chunk_beyond_the_declared_total_is_refused():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS, chunk_size=64)
    holder.start()
    holder.handle(DeclaredSize(job_id="job", size_b=64), "B")  # exactly one chunk
    extra = BlindedChunk(job_id="job", chunk=1, total_chunks=2, values=IntVector.pack([5] * 64, 128))

    with pytest.raises(PSIError, match="make 1 chunks"):
        holder.handle(extra, "B")

    assert holder.size_b == 0


def test_chunks_before_the_declaration_wait_and_nothing_is_signed():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    requester = PsiRequester("job", ["a", "c"], min_key_bits=BITS)
    _, chunk = requester.handle(holder.start()[0].message, "A")

    out = holder.handle(chunk.message, "B")  # B "forgot" to declare

    assert out == [] and holder.size_b == 0 and holder.declared_size_b is None


# -- caps on the declared size ------------------------------------------------------------------------


def test_a_declaration_above_max_psi_ids_is_refused_before_anything_is_signed():
    ids_a, ids_b, _ = make_sets(300, 0.5, seed=2)
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, chunk_size=64,
                          max_peer_ids=len(ids_b) - 1)
    requester = PsiRequester("job", ids_b, min_key_bits=BITS)
    transcript: list[Envelope] = []

    with pytest.raises(LimitExceeded, match=r"declares 300 IDs.*at most 299 \(limits.max_psi_ids\).*raise"):
        run_roles(holder, requester, transcript)

    assert holder.size_b == 0 and signed_values(transcript) == 0


def test_a_declaration_is_refused_even_when_its_chunks_came_first():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS, max_peer_ids=1)
    requester = PsiRequester("job", ["a", "c"], min_key_bits=BITS)
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(chunk.message, "B")  # held, waiting for the declaration

    with pytest.raises(LimitExceeded, match="max_psi_ids"):
        holder.handle(declared.message, "B")

    assert holder.size_b == 0


@pytest.mark.parametrize("size_b, refused", [(200, False), (201, True)])
def test_max_psi_ratio_caps_the_declaration_relative_to_a(size_b, refused):
    ids_a = [f"a{i}" for i in range(100)]
    ids_b = [f"a{i}" for i in range(50)] + [f"b{i}" for i in range(size_b - 50)]
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, chunk_size=64,
                          max_peer_ratio=2.0)
    requester = PsiRequester("job", ids_b, min_key_bits=BITS)

    if refused:
        named = r"declares 201 IDs.*more than 2 × party A's 100 \(limits.max_psi_ratio\)"
        with pytest.raises(LimitExceeded, match=named):
            run_roles(holder, requester)
        assert holder.size_b == 0
    else:
        run_roles(holder, requester)
        assert len(holder.rows) == 50 and holder.size_b == 200


def test_the_requester_caps_what_a_declares_too():
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=3)

    with pytest.raises(LimitExceeded, match=r"party A declares 100 IDs.*at most 99 \(limits.max_psi_ids\)"):
        run_psi(ids_a, ids_b[:99], key_bits=BITS, min_key_bits=BITS, workers=1, max_peer_ids=99)


def test_the_requester_refuses_tags_that_do_not_add_up_to_a_declaration():
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=4)
    holder = MisdeclaringKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, chunk_size=64)
    holder.claimed = 90  # looks small, then sends 100 tags
    requester = PsiRequester("job", ids_b, min_key_bits=BITS)

    with pytest.raises(PSIError, match="declared 90 IDs give 26 in this chunk"):
        run_roles(holder, requester)

    assert requester.rows is None  # B never computed, nor sent, an intersection


@pytest.mark.parametrize("caps", [{"max_peer_ids": 0}, {"max_peer_ratio": 0.0}, {"max_peer_ratio": -1.0}])
def test_nonsense_caps_are_config_errors(caps):
    with pytest.raises(ConfigError, match="limits.max_psi_"):
        PsiRequester("job", ["a"], **caps)


# -- honest runs ----------------------------------------------------------------------------------------


def test_an_honest_run_at_the_caps_is_exact_and_reports_both_declarations():
    ids_a, ids_b, truth = make_sets(300, 0.3, seed=5)

    result = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=64,
                     max_peer_ids=300, max_peer_ratio=1.0)

    assert {ids_a[i] for i in result.rows_a} == truth
    assert [ids_a[i] for i in result.rows_a] == [ids_b[j] for j in result.rows_b]
    assert (result.declared_size_a, result.declared_size_b) == (300, 300)


def test_the_alignment_summary_shows_the_declared_sizes():
    ids_a, ids_b, truth = make_sets(120, 0.5, seed=6)
    ids_b = ids_b[:100]

    summary = align(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, engine=1).summary()

    assert summary["declared_size_a"] == 120 and summary["declared_size_b"] == 100
    assert summary["party_a_ids"] == 120 and summary["party_b_ids"] == 100


def test_the_public_key_declares_a_set_size():
    holder = PsiKeyHolder("job", ["a", "b", "c"], key_bits=BITS, min_key_bits=BITS)

    (envelope,) = holder.start()

    assert isinstance(envelope.message, PsiPublicKey) and envelope.message.size_a == 3
