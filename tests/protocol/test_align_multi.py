"""Alignment with k feature parties: B's PSI with each, intersected, in one shared order."""

import numpy as np
import pytest

from psi.joint import align, align_many, joint_rows
from vfl.errors import NoOverlapError

BITS = 1024


def test_joint_rows_keeps_only_rows_every_pair_shares_in_the_first_pairs_order():
    rows_b, rows_h = joint_rows([np.array([4, 1, 7]), np.array([7, 4, 9])], [np.array([0, 1, 2]), np.array([5, 6, 7])])

    assert rows_b.tolist() == [4, 7]
    assert [r.tolist() for r in rows_h] == [[0, 2], [6, 5]]


def test_three_feature_parties_align_the_same_people_in_the_same_order():
    rng = np.random.default_rng(1)
    people = [f"u{i:03d}" for i in range(300)]
    ids_b = [p for p in people if rng.random() < 0.85]
    feature_ids = [list(rng.permutation([p for p in people if rng.random() < 0.8])) for _ in range(3)]

    result = align_many(ids_b, feature_ids, key_bits=BITS, min_key_bits=BITS, engine=1)

    expected = set(ids_b).intersection(*map(set, feature_ids))
    aligned_b = [ids_b[i] for i in result.rows_b]
    assert set(aligned_b) == expected and len(aligned_b) == len(expected)
    for ids, rows in zip(feature_ids, result.rows):
        assert [ids[i] for i in rows] == aligned_b
    assert [p["pairwise_intersection"] for p in result.summary()["feature_parties"]] == [
        len(set(ids_b) & set(ids)) for ids in feature_ids]


def test_one_feature_party_is_exactly_the_two_party_alignment():
    ids_b, ids_a = [f"x{i}" for i in range(50)], [f"x{i}" for i in range(20, 90)]

    many = align_many(ids_b, [ids_a], key_bits=BITS, min_key_bits=BITS, engine=1)
    two = align(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, engine=1)

    assert np.array_equal(many.rows_b, two.rows_b) and np.array_equal(many.rows[0], two.rows_a)


def test_pairs_that_overlap_but_share_no_one_in_common_are_refused():
    with pytest.raises(NoOverlapError, match="no ID is held by all"):
        align_many(["a", "b"], [["a"], ["b"]], key_bits=BITS, min_key_bits=BITS, engine=1)
