"""Unbalanced ECDH PSI: the large side's offline set, reused; per query the work and bytes follow the small side."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from psi import ec, run_psi
from psi.unbalanced import (
    BlindedQuery,
    EvaluatedQuery,
    LargeSet,
    LargeSide,
    OfflineKey,
    PeerTags,
    QueryMatches,
    SmallSide,
    run_unbalanced,
    transfer_offline,
)
from tests.protocol.test_psi import BITS, make_sets
from vfl.compute.engine import as_engine
from vfl.errors import ConfigError, LimitExceeded, PSIError
from vfl.protocol.wire import encode_message

try:
    ec._sodium()
except ConfigError as exc:
    pytest.skip(f"no usable libsodium: {exc}", allow_module_level=True)

ENGINE = as_engine(1)


def offline(ids_large: list[str], label: str = "party-b->party-a") -> tuple[OfflineKey, LargeSet]:
    key = OfflineKey.new(label)
    return key, LargeSet.build(ids_large, key, ENGINE, chunk_size=64)


def query(key: OfflineKey, table: LargeSet, ids_large: list[str], ids_small: list[str], peer: PeerTags | None = None,
          **caps: object):
    if peer is None:
        peer, _ = transfer_offline(table, "job", own_size=len(ids_small), chunk_size=50)
    large = LargeSide("job", key, table, ENGINE, **caps)
    small = SmallSide("job", ids_small, peer, ENGINE, chunk_size=16)
    return run_unbalanced(large, small, ids_large=ids_large), large, small


@pytest.mark.parametrize("large_side", ["A", "B"])
def test_unbalanced_gives_exactly_the_rows_rsa_gives(large_side):
    # Arrange: A much larger than B, or B than A; the truth from RSA on the same inputs.
    ids_a, ids_b, truth = make_sets(300, 0.5, seed=41)
    ids_a, ids_b = (ids_a, ids_b[::7]) if large_side == "A" else (ids_a[::7], ids_b)
    rsa = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=32)
    ids_large, ids_small = (ids_a, ids_b) if large_side == "A" else (ids_b, ids_a)
    key, table = offline(ids_large)

    # Act
    result, _, _ = query(key, table, ids_large, ids_small)

    # Assert: the same pairs in the same (ID) order
    rows_a, rows_b = (result.rows_large, result.rows_small) if large_side == "A" else (result.rows_small,
                                                                                      result.rows_large)
    assert len(rsa.rows_a) > 5
    np.testing.assert_array_equal(rows_a, rsa.rows_a)
    np.testing.assert_array_equal(rows_b, rsa.rows_b)


def test_one_offline_set_serves_many_queries_and_each_query_costs_what_the_small_side_holds():
    ids_large = [f"c{i:05d}" for i in range(2_000)]
    key, table = offline(ids_large)
    peer, offline_bytes = transfer_offline(table, "job", own_size=10, chunk_size=500)
    small_sets = [[f"c{i:05d}" for i in range(0, 40, 2)] + ["x1", "x2"], [f"c{i:05d}" for i in range(1990, 2010)]]

    results = [query(key, table, ids_large, ids, peer=peer)[0] for ids in small_sets]

    assert [sorted(ids_large[r] for r in res.rows_large) for res in results] == [
        sorted(set(ids) & set(ids_large)) for ids in small_sets]
    assert offline_bytes > 2_000 * 16
    # Online: 32 bytes out and back per small-side ID and 16 per match, plus framing; nothing per large-side ID.
    for ids, res in zip(small_sets, results):
        assert res.online_bytes < 64 * len(ids) + 16 * res.intersection_size + 2_000


def test_the_same_key_gives_the_same_tags_and_a_new_key_unlinkable_ones():
    ids = [f"id{i}" for i in range(50)]
    key = OfflineKey.new("b->a")

    again = LargeSet.build(ids, key, ENGINE)
    rotated = LargeSet.build(ids, OfflineKey.new("b->a"), ENGINE)

    np.testing.assert_array_equal(LargeSet.build(ids, key, ENGINE).tags, again.tags)  # reuse: linkable by design
    assert not set(again.tags.tolist()) & set(rotated.tags.tolist())


def test_no_message_carries_an_id_or_a_value_that_identifies_one_unmasked():
    ids_large = [f"secret-large-{i}" for i in range(100)]
    ids_small = [f"secret-large-{i}" for i in range(0, 100, 10)] + ["secret-small-only"]
    key, table = offline(ids_large)
    peer, _ = transfer_offline(table, "job", own_size=len(ids_small))
    small = SmallSide("job", ids_small, peer, ENGINE)
    large = LargeSide("job", key, table, ENGINE)
    frames: list[bytes] = [encode_message(m) for m in table.offline_messages("job")]

    for q in small.queries():
        answer = large.evaluate(q)
        frames += [encode_message(q), encode_message(answer)]
        matches = small.receive(answer)
    frames.append(encode_message(matches))
    unmasked = set(ec.hash_to_group([x.encode() for x in ids_large + ids_small], small.dst))

    blob = b"".join(frames)
    assert b"secret-" not in blob
    assert not any(p in blob for p in unmasked)


def test_a_point_that_is_not_a_group_element_is_refused_by_either_side():
    ids_large = [f"c{i}" for i in range(30)]
    key, table = offline(ids_large)
    peer, _ = transfer_offline(table, "job", own_size=5)
    bad = [ec.IDENTITY, bytes.fromhex("00" + "ff" * 31), b"\x01" * 31]

    for point in bad:
        large = LargeSide("job", key, table, ENGINE)
        q = BlindedQuery(job_id="job", digest=table.digest, size=1, chunk=0, total_chunks=1, count=1, points=point)
        with pytest.raises(PSIError, match="blinded query chunk 0"):
            large.evaluate(q)
        small = SmallSide("job", ["c1"], peer, ENGINE)
        list(small.queries())
        with pytest.raises(PSIError, match="evaluated chunk 0"):
            small.receive(EvaluatedQuery(job_id="job", chunk=0, count=1, points=point))


def test_a_query_against_a_rotated_set_or_above_the_caps_is_refused():
    ids_large = [f"c{i}" for i in range(30)]
    key, table = offline(ids_large)
    peer, _ = transfer_offline(table, "job", own_size=20)
    rotated_key, rebuilt = offline(ids_large)  # the large side rotated its key: the old copy is stale

    with pytest.raises(PSIError, match="fetch the offline set again"):
        LargeSide("job", rotated_key, rebuilt, ENGINE).evaluate(next(SmallSide("job", ["c1"], peer, ENGINE).queries()))
    with pytest.raises(LimitExceeded, match="max_psi_ids"):
        query(key, table, ids_large, [f"c{i}" for i in range(20)], peer=peer, max_peer_ids=10)
    with pytest.raises(LimitExceeded, match="max_psi_ids"):
        transfer_offline(table, "job", own_size=5, max_peer_ids=10)


def test_matches_naming_tags_outside_the_set_are_refused():
    ids_large = [f"c{i}" for i in range(30)]
    key, table = offline(ids_large)
    peer, _ = transfer_offline(table, "job", own_size=1)
    large = LargeSide("job", key, table, ENGINE)
    small = SmallSide("job", ["c1"], peer, ENGINE)
    large.evaluate(next(small.queries()))

    with pytest.raises(PSIError, match="not in this party's offline set"):
        large.learn(QueryMatches(job_id="job", count=1, tags=b"\x00" * 16))


def test_a_tampered_offline_set_is_refused_by_the_small_side():
    key, table = offline([f"c{i}" for i in range(30)])
    messages = table.offline_messages("job", chunk_size=10)
    tampered = messages[1].model_copy(update={"tags": messages[1].tags[:-1] + b"\x00"})

    with pytest.raises(PSIError):
        PeerTags.receive([messages[0], tampered, messages[2]], own_size=5)
    with pytest.raises(PSIError, match="in order"):
        PeerTags.receive([messages[1], messages[0], messages[2]], own_size=5)


def test_the_key_and_both_sets_survive_a_restart(tmp_path):
    ids_large = [f"c{i}" for i in range(40)]
    key, table = offline(ids_large)
    peer, _ = transfer_offline(table, "job", own_size=5)

    key.save(tmp_path / "key.json")
    table.save(tmp_path / "large")
    peer.save(tmp_path / "small")
    result, _, _ = query(OfflineKey.load(tmp_path / "key.json"), LargeSet.load(tmp_path / "large"), ids_large,
                         ["c3", "c7", "zz"], peer=PeerTags.load(tmp_path / "small"))

    assert stat.S_IMODE(os.stat(tmp_path / "key.json").st_mode) == 0o600
    assert sorted(ids_large[r] for r in result.rows_large) == ["c3", "c7"]
    (tmp_path / "large" / "tags.npy").write_bytes((tmp_path / "large" / "tags.npy").read_bytes()[:-16] + b"\x01" * 16)
    with pytest.raises(ConfigError, match="does not match its recorded digest"):
        LargeSet.load(tmp_path / "large")


# -- the roles the services run: B large, A small ------------------------------------------------------------------


def run_roles(ids_a, ids_b, key, table, cached=None):
    from vfl.protocol.channel import InMemoryChannel
    from psi.unbalanced import UnbalancedEvaluator, UnbalancedQuerier

    kept: list[PeerTags] = []
    querier = UnbalancedQuerier("job", ids_a, engine=1, cached=cached, keep=kept.append, chunk_size=16)
    evaluator = UnbalancedEvaluator("job", ids_b, key=key, table=table, engine=1)
    channel = InMemoryChannel({"A": querier, "B": evaluator})
    channel.run(querier.start())
    return querier, evaluator, kept, channel


def test_the_roles_give_rsas_rows_and_a_second_job_reuses_the_set_a_kept():
    ids_a, ids_b, _ = make_sets(200, 0.5, seed=43)
    ids_a = ids_a[::5]  # A small, B large
    rsa = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=32)
    key, table = offline(ids_b, "party-b->party-a")

    first_a, first_b, kept, first = run_roles(ids_a, ids_b, key, table)
    second_a, second_b, _, second = run_roles(ids_a, ids_b, key, table, cached=kept[0])

    for querier, evaluator in [(first_a, first_b), (second_a, second_b)]:
        np.testing.assert_array_equal(querier.rows, rsa.rows_a)
        np.testing.assert_array_equal(evaluator.rows, rsa.rows_b)
    assert first_b.sent_offline_set and not second_b.sent_offline_set and second_a.reused_offline_set
    assert second.bytes_sent[("B", "A")] < first.bytes_sent[("B", "A")] - 16 * len(ids_b)


def test_a_rotated_key_sends_the_new_set_and_the_old_copy_is_replaced():
    ids_b = [f"c{i}" for i in range(100)]
    ids_a = ["c1", "c50", "x"]
    key, table = offline(ids_b)
    _, _, kept, _ = run_roles(ids_a, ids_b, key, table)
    new_key, new_table = offline(ids_b)

    querier, evaluator, kept_again, _ = run_roles(ids_a, ids_b, new_key, new_table, cached=kept[0])

    assert evaluator.sent_offline_set and kept_again[0].digest == new_table.digest != kept[0].digest
    assert sorted(ids_a[i] for i in querier.rows) == ["c1", "c50"]


def test_b_caps_the_query_size_a_declares():
    from psi.unbalanced import OfflineRequest, UnbalancedEvaluator

    key, table = offline([f"c{i}" for i in range(50)])
    evaluator = UnbalancedEvaluator("job", [f"c{i}" for i in range(50)], key=key, table=table, engine=1,
                                    max_peer_ids=10)

    with pytest.raises(LimitExceeded, match="max_psi_ids"):
        evaluator.handle(OfflineRequest(job_id="job", size=11), "A")


# -- the same roles with the feature party large: only the mapping of parties to roles changes ---------------------


def test_the_roles_mirrored_give_rsas_rows_when_the_feature_party_is_large():
    from psi.unbalanced import UnbalancedEvaluator, UnbalancedQuerier
    from vfl.protocol.channel import InMemoryChannel

    # Arrange: A (the feature party) much larger than B; A holds the key and the offline set, B queries it
    ids_a, ids_b, _ = make_sets(200, 0.5, seed=47)
    ids_b = ids_b[::5]
    rsa = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=32)
    key, table = offline(ids_a, "party-a->party-b")
    kept: list[PeerTags] = []

    def job(cached: PeerTags | None):
        querier = UnbalancedQuerier("job", ids_b, kind="label", engine=1, cached=cached, keep=kept.append,
                                    chunk_size=16)
        evaluator = UnbalancedEvaluator("job", ids_a, key=key, table=table, kind="feature", engine=1,
                                        expected_peer_size=len(ids_b))
        channel = InMemoryChannel({"A": evaluator, "B": querier})
        channel.run(querier.start())
        return querier, evaluator, channel

    # Act: two jobs, the second with the copy B kept
    first_b, first_a, first = job(None)
    second_b, second_a, second = job(kept[0])

    # Assert: RSA's rows at both parties; each reports its sizes as A's and B's; the second sends no tags
    for querier, evaluator in [(first_b, first_a), (second_b, second_a)]:
        np.testing.assert_array_equal(evaluator.rows, rsa.rows_a)
        np.testing.assert_array_equal(querier.rows, rsa.rows_b)
        assert (evaluator.size_a, evaluator.size_b, evaluator.declared_size_b) == (len(ids_a), len(ids_b), len(ids_b))
        assert (querier.size_a, querier.size_b, querier.declared_size_b) == (len(ids_a), len(ids_b), len(ids_b))
    assert first_a.sent_offline_set and not second_a.sent_offline_set and second_b.reused_offline_set
    assert second.bytes_sent[("A", "B")] < first.bytes_sent[("A", "B")] - 16 * len(ids_a)


def test_the_large_feature_party_refuses_a_query_size_other_than_the_registered_one():
    from psi.unbalanced import OfflineRequest, UnbalancedEvaluator

    key, table = offline([f"c{i}" for i in range(50)], "party-a->party-b")
    evaluator = UnbalancedEvaluator("job", [f"c{i}" for i in range(50)], key=key, table=table, kind="feature",
                                    engine=1, expected_peer_size=10)

    with pytest.raises(PSIError, match="party B's query declares 11 IDs, but the job was registered with 10"):
        evaluator.handle(OfflineRequest(job_id="job", size=11), "B")
