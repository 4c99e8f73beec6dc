"""ECDH PSI (X25519) as a protocol choice of the same alignment layer: RSA's rows, caps, checks, fresh scalars."""

from __future__ import annotations

import numpy as np
import pytest

from psi import ec, run_psi
from psi.buckets import bucket_count
from psi.joint import align, align_many
from psi.messages import (
    DeclaredSize,
    EcdhPublicInfo,
    IntersectionTags,
    KeyHolderPoints,
    MaskedChunk,
    RemaskedChunk,
)
from psi.protocol import PsiKeyHolder, PsiRequester
from tests.protocol.test_psi import BITS, make_sets
from tests.protocol.test_psi_bounds import run_roles
from vfl.errors import ConfigError, LimitExceeded, ProtocolError, PSIError
from vfl.protocol.role import Envelope
from vfl.protocol.wire import decode_message, encode_message

try:  # the group is the system's libsodium (>= 1.0.18), as in tests/unit/test_psi_ec.py
    ec._sodium()
except ConfigError as exc:
    pytest.skip(f"no usable libsodium: {exc}", allow_module_level=True)

#: RFC 9496 Appendix A.2: encodings every decoder must refuse.
NON_CANONICAL = bytes.fromhex("00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")  # u ≥ 2^255
SMALL_ORDER = (1).to_bytes(32, "little")  # u = 1: a point of order 4
ON_THE_TWIST = (2).to_bytes(32, "little")  # u = 2: u³ + A·u² + u is not a square mod p


def ecdh_roles(ids_a: list[str], ids_b: list[str], **holder: object) -> tuple[PsiKeyHolder, PsiRequester]:
    return (PsiKeyHolder("job", ids_a, protocol="ecdh", engine=1, **holder),
            PsiRequester("job", ids_b, protocol="ecdh", engine=1))


# -- the same rows as RSA ------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket_ids, buckets", [(1_000_000, 1), (100, 3)], ids=["K=1", "K=3"])
def test_ecdh_gives_exactly_the_rows_rsa_gives(bucket_ids, buckets):
    ids_a, ids_b, truth = make_sets(300, 0.4, seed=31)
    rsa = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16, bucket_ids=bucket_ids)

    ecdh = run_psi(ids_a, ids_b, workers=1, chunk_size=16, bucket_ids=bucket_ids, protocol="ecdh")

    assert ecdh.buckets == rsa.buckets == buckets == bucket_count(300, 300, bucket_ids)
    assert {ids_a[i] for i in ecdh.rows_a} == truth
    np.testing.assert_array_equal(ecdh.rows_a, rsa.rows_a)  # same order: by ID, whatever the protocol
    np.testing.assert_array_equal(ecdh.rows_b, rsa.rows_b)
    assert (ecdh.declared_size_a, ecdh.declared_size_b) == (rsa.declared_size_a, rsa.declared_size_b) == (300, 300)


@pytest.mark.parametrize("bucket_ids", [1_000_000, 70], ids=["K=1", "K=3"])
def test_align_with_ecdh_equals_align_with_rsa(bucket_ids):
    ids_a, ids_b, truth = make_sets(200, 0.3, seed=32)
    rsa = align(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, engine=2, bucket_ids=bucket_ids)

    ecdh = align(ids_a, ids_b, engine=2, protocol="ecdh", bucket_ids=bucket_ids)

    assert ecdh.method == "ecdh-x25519-psi" and rsa.method == "rsa-blind-signature-psi"
    assert ecdh.size == len(truth)
    np.testing.assert_array_equal(ecdh.rows_a, rsa.rows_a)
    np.testing.assert_array_equal(ecdh.rows_b, rsa.rows_b)
    assert ecdh.summary()["intersection"] == rsa.summary()["intersection"]


@pytest.mark.parametrize("parties", [1, 2])
@pytest.mark.parametrize("bucket_ids", [1_000_000, 80], ids=["K=1", "K=3"])
def test_align_many_with_ecdh_equals_rsa(parties, bucket_ids):
    rng = np.random.default_rng(33)
    pool = [f"p-{v}" for v in rng.choice(10_000, size=600, replace=False)]
    ids_b = pool[:240]
    features = [list(rng.permutation(pool[40 * h : 40 * h + 240])) for h in range(1, parties + 1)]
    rsa = align_many(ids_b, features, key_bits=BITS, min_key_bits=BITS, engine=1, bucket_ids=bucket_ids)

    ecdh = align_many(ids_b, features, engine=1, protocol="ecdh", bucket_ids=bucket_ids)

    assert ecdh.size == rsa.size > 0
    np.testing.assert_array_equal(ecdh.rows_b, rsa.rows_b)
    for got, expected in zip(ecdh.rows, rsa.rows):
        np.testing.assert_array_equal(got, expected)
    joint = [ids_b[j] for j in ecdh.rows_b]
    for ids, rows in zip(features, ecdh.rows):
        assert [ids[i] for i in rows] == joint  # row i is the same person at every party


def test_each_side_receives_only_points_and_the_sizes():
    ids_a, ids_b, truth = make_sets(300, 0.3, seed=34)
    transcript: list[Envelope] = []

    run_psi(ids_a, ids_b, workers=1, chunk_size=64, transcript=transcript, protocol="ecdh")

    to_a = [e.message for e in transcript if e.recipient == "A"]
    to_b = [e.message for e in transcript if e.recipient == "B"]
    assert {type(m) for m in to_a} == {DeclaredSize, MaskedChunk, IntersectionTags}
    assert {type(m) for m in to_b} == {EcdhPublicInfo, RemaskedChunk, KeyHolderPoints}
    assert isinstance(to_a[0], DeclaredSize) and to_a[0].size_b == len(ids_b)
    info = next(m for m in to_b if isinstance(m, EcdhPublicInfo))
    assert info.size_a == len(ids_a)
    # B's points are masked: none is a plain H(x) under the job's DST.
    plain = set(ec.hash_to_group([x.encode() for x in ids_b], ec.job_dst("local", info.salt)))
    masked = [p for m in to_a if isinstance(m, MaskedChunk) for p in ec.unpack_points(m.points)]
    assert len(masked) == len(ids_b) and plain.isdisjoint(masked)
    (intersection,) = [m for m in to_a if isinstance(m, IntersectionTags)]
    assert intersection.count == len(truth)
    a_points = [p for m in to_b if isinstance(m, KeyHolderPoints) for p in ec.unpack_points(m.points)]
    assert len(a_points) == len(ids_a) and a_points != sorted(a_points)  # shuffled
    # What B sends back are A's own points, nothing A did not send.
    assert set(ec.unpack_points(intersection.tags)) <= set(a_points)


def test_the_ecdh_messages_cross_the_wire_unchanged():
    ids_a, ids_b, _ = make_sets(40, 0.5, seed=35)
    transcript: list[Envelope] = []

    run_psi(ids_a, ids_b, workers=1, chunk_size=16, bucket_ids=15, transcript=transcript, protocol="ecdh")

    for envelope in transcript:
        assert decode_message(encode_message(envelope.message)) == envelope.message


def test_both_sides_must_run_the_same_protocol():
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    requester = PsiRequester("job", ["a"], protocol="ecdh")

    with pytest.raises(ProtocolError, match="party A runs the rsa PSI, but party B was set up for ecdh"):
        requester.handle(holder.start()[0].message, "A")

    with pytest.raises(ConfigError, match="psi.protocol must be one of"):
        PsiRequester("job", ["a"], protocol="dsa")
    with pytest.raises(ConfigError, match="for the RSA PSI"):
        PsiKeyHolder("job", ["a"], protocol="ecdh", key=holder.key)


# -- the declared sizes and their caps --------------------------------------------------------------


def test_a_declaration_above_the_key_holders_cap_is_refused_before_anything_is_masked():
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=36)
    holder = PsiKeyHolder("job", ids_a, protocol="ecdh", engine=1, max_peer_ids=99)
    requester = PsiRequester("job", ids_b, protocol="ecdh", engine=1)
    transcript: list[Envelope] = []

    with pytest.raises(LimitExceeded, match="declares 100 IDs .* at most 99"):
        run_roles(holder, requester, transcript)

    assert holder.size_b == 0 and not any(isinstance(e.message, RemaskedChunk) for e in transcript)


def test_a_key_holder_declaring_more_than_the_requesters_cap_is_refused():
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=37)
    holder = PsiKeyHolder("job", ids_a, protocol="ecdh", engine=1)
    requester = PsiRequester("job", ids_b, protocol="ecdh", engine=1, max_peer_ratio=0.5)
    transcript: list[Envelope] = []

    with pytest.raises(LimitExceeded, match="more than 0.5"):
        run_roles(holder, requester, transcript)

    assert not any(isinstance(e.message, MaskedChunk) for e in transcript)  # B masked nothing


class UnderDeclaringRequester(PsiRequester):
    claimed = 0

    def declaration(self) -> DeclaredSize:
        return DeclaredSize(job_id=self.job_id, size_b=self.claimed)


def test_a_requester_sending_more_than_it_declared_gets_no_more_remasked():
    ids_a, ids_b, _ = make_sets(300, 0.5, seed=38)
    holder = PsiKeyHolder("job", ids_a, protocol="ecdh", engine=1, chunk_size=64)
    requester = UnderDeclaringRequester("job", ids_b, protocol="ecdh", engine=1)
    requester.claimed = 100
    transcript: list[Envelope] = []

    with pytest.raises(PSIError, match="declared 100 IDs"):
        run_roles(holder, requester, transcript)

    remasked = sum(e.message.count for e in transcript if isinstance(e.message, RemaskedChunk))
    assert remasked == holder.size_b <= 100 and holder.rows is None


# -- malformed points from a deviating peer ---------------------------------------------------------

BAD_POINTS = {
    "identity": (ec.IDENTITY, "is the identity element"),
    "non-canonical": (NON_CANONICAL, "is not a canonical u-coordinate"),
    "small order": (SMALL_ORDER, "is a point of small order"),
    "on the twist": (ON_THE_TWIST, "is not on curve25519"),
}


def _replace(packed: bytes, index: int, point: bytes) -> bytes:
    points = ec.unpack_points(packed)
    points[index] = point
    return b"".join(points)


@pytest.mark.parametrize("bad", BAD_POINTS, ids=list(BAD_POINTS))
def test_the_key_holder_refuses_a_malformed_masked_point(bad):
    point, reason = BAD_POINTS[bad]
    holder, requester = ecdh_roles(["a", "b"], [f"x{i}" for i in range(10)])
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(declared.message, "B")
    forged = chunk.message.model_copy(update={"points": _replace(chunk.message.points, 3, point)})

    with pytest.raises(PSIError, match=f"party B's masked chunk 0: point 3 {reason}"):
        holder.handle(forged, "B")

    assert holder.size_b == 0  # nothing was remasked


@pytest.mark.parametrize("cut", [-1, +1, -32], ids=["31-byte-point", "33-byte-point", "missing-point"])
def test_the_key_holder_refuses_points_of_the_wrong_length(cut):
    holder, requester = ecdh_roles(["a", "b"], [f"x{i}" for i in range(10)])
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(declared.message, "B")
    points = chunk.message.points
    forged = chunk.message.model_copy(update={"points": points[:cut] if cut < 0 else points + b"\x00" * cut})

    with pytest.raises(PSIError, match="bytes for 10 points of 32"):
        holder.handle(forged, "B")


def _requester_at_answers() -> tuple[PsiRequester, list[Envelope]]:
    """An honest B that has sent its chunk, and A's honest answers (remasked chunk, then A's points)."""
    holder, requester = ecdh_roles(["a", "b", "c"], ["a", "c", "d", "e"])
    declared, chunk = requester.handle(holder.start()[0].message, "A")
    holder.handle(declared.message, "B")
    return requester, holder.handle(chunk.message, "B")


@pytest.mark.parametrize("bad", BAD_POINTS, ids=list(BAD_POINTS))
@pytest.mark.parametrize("which", [RemaskedChunk, KeyHolderPoints], ids=["remasked", "a-points"])
def test_the_requester_refuses_a_malformed_point_from_the_key_holder(bad, which):
    point, reason = BAD_POINTS[bad]
    requester, answers = _requester_at_answers()
    what = {RemaskedChunk: "party A's remasked chunk 0", KeyHolderPoints: "party A's point chunk 0"}[which]

    def deliver(message):
        if isinstance(message, which):
            message = message.model_copy(update={"points": _replace(message.points, 1, point)})
        return requester.handle(message, "A")

    with pytest.raises(PSIError, match=f"{what}: point 1 {reason}"):
        for envelope in answers:
            deliver(envelope.message)

    assert requester.rows is None


def test_the_requester_refuses_a_truncated_point_chunk():
    requester, answers = _requester_at_answers()
    remasked = answers[0].message
    forged = remasked.model_copy(update={"points": remasked.points[:-1]})

    with pytest.raises(PSIError, match="party A's remasked chunk 0 has 127 bytes for 4 points of 32"):
        requester.handle(forged, "A")


def test_the_requester_refuses_a_remasked_chunk_of_another_length():
    requester, answers = _requester_at_answers()
    remasked = answers[0].message
    forged = remasked.model_copy(update={"count": 3, "points": remasked.points[:96]})

    with pytest.raises(PSIError, match="has 3 points for 4 sent"):
        requester.handle(forged, "A")


# -- fresh scalars -------------------------------------------------------------------------------------


def test_two_runs_on_the_same_ids_share_no_point():
    ids_a, ids_b, _ = make_sets(60, 0.5, seed=39)
    runs = []
    for _ in range(2):
        transcript: list[Envelope] = []
        run_psi(ids_a, ids_b, workers=1, chunk_size=16, transcript=transcript, protocol="ecdh", job_id="same-job")
        runs.append(transcript)

    def points(transcript: list[Envelope], kind: type) -> set[bytes]:
        return {p for e in transcript if isinstance(e.message, kind) for p in ec.unpack_points(e.message.points)}

    salts = [next(e.message.salt for e in t if isinstance(e.message, EcdhPublicInfo)) for t in runs]
    assert salts[0] != salts[1]
    for kind in (MaskedChunk, RemaskedChunk, KeyHolderPoints):
        first, second = points(runs[0], kind), points(runs[1], kind)
        assert len(first) == len(second) > 0 and first.isdisjoint(second)


def test_each_role_draws_its_own_scalar():
    holders = [PsiKeyHolder("job", ["a"], protocol="ecdh") for _ in range(2)]
    requesters = [PsiRequester("job", ["a"], protocol="ecdh") for _ in range(2)]

    scalars = {r.suite.scalar.encoded for r in holders + requesters}

    assert len(scalars) == 4
    assert "secret" in repr(holders[0].suite.scalar)


# -- the simulation ------------------------------------------------------------------------------------


def test_a_simulation_aligned_with_ecdh_trains_on_the_rows_rsa_gives():
    import pandas as pd

    from vfl.data.table import from_dataframe
    from vfl.local.simulate import simulate
    from vfl.ml.config import TrainingConfig

    rng = np.random.default_rng(40)
    ids = [f"c{i:04d}" for i in rng.permutation(400)[:160]]
    x_a, x_b = rng.normal(size=(160, 2)), rng.normal(size=(160, 2))
    y = x_a @ [1.0, -0.5] + x_b @ [0.3, 0.8] + rng.normal(scale=0.1, size=160)
    table_a = from_dataframe(pd.DataFrame(x_a[20:], columns=["a0", "a1"]).assign(id=ids[20:]), id_column="id")
    frame_b = pd.DataFrame(x_b[:140], columns=["b0", "b1"]).assign(id=ids[:140], y=y[:140])
    table_b = from_dataframe(frame_b, id_column="id", label_column="y", model="linear")
    config = TrainingConfig(model="linear", epochs=2, key_bits=1024)

    rsa = simulate(table_a, table_b, config, workers=1)
    ecdh = simulate(table_a, table_b, config, workers=1, psi_protocol="ecdh")

    assert ecdh["alignment"]["method"] == "ecdh-x25519-psi"
    assert ecdh["alignment"]["intersection"] == rsa["alignment"]["intersection"] == 120
    assert ecdh["metrics"] == rsa["metrics"]
