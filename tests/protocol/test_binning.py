"""Federated binning (vfl/protocol/binning.py): exact counts, what a feature party receives, a deviating
label party, and every refusal. 1024-bit keys; the label party makes its own key."""

from __future__ import annotations

import json
import math

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz

from tests.conftest import TEST_KEY_BITS
from vfl.crypto.codec import byte_width, pack_ints
from vfl.crypto.keys import generate_keypair
from vfl.crypto.vector import Encryptor
from vfl.errors import DataError, KeyMismatch, LimitExceeded, ProtocolError, ReplayError
from vfl.ml.scorecard.binning import bin_events, bin_totals, woe_iv
from vfl.protocol import binning
from vfl.protocol.binning import (
    BinningCounts,
    BinningFeatureRole,
    BinningLabelRole,
    BinningRequest,
    BinningResult,
    CharacteristicGroups,
    check_modulus,
    prove_modulus,
)
from vfl.protocol.messages import CipherVector, IntVector
from vfl.protocol.wire import decode_message, encode_message

ROWS = 1200
SETTINGS = {"method": "iv_optimal", "fine_bins": 12, "max_bins": 5, "min_share": 0.05, "min_events": 5}


def wire(message):
    """Through the binary frame both ways, as the services send it."""
    return decode_message(encode_message(message))


def make_data(rows: int = ROWS, seed: int = 7):
    """Two feature parties' columns (one with NaNs, one integer-valued) and B's labels and own columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    with_nan = x[:, 1].copy()
    with_nan[rng.random(rows) < 0.12] = np.nan
    a1 = np.column_stack([x[:, 0], with_nan])
    a2 = np.column_stack([np.round(x[:, 2] * 3), rng.normal(size=rows)])
    logit = 1.2 * x[:, 0] - 0.8 * np.nan_to_num(x[:, 1]) + 0.5 * x[:, 2] + 0.7 * x[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    b_own = x[:, 3:5]
    return {"A1": (a1, ["age", "income"]), "A2": (a2, ["tenure", "noise"])}, y, b_own


def label_role(y, engine=1, **kwargs):
    return BinningLabelRole("job", y, SETTINGS, key_bits=TEST_KEY_BITS, min_key_bits=TEST_KEY_BITS, engine=engine,
                            **kwargs)


def feature_role(party, X, names, engine=1, **kwargs):
    kwargs.setdefault("min_key_bits", TEST_KEY_BITS)
    return BinningFeatureRole("job", party, X, names, engine=engine, **kwargs)


def run_binning(parties, y, engine=1):
    """The whole protocol over the wire; returns B, the feature roles and every message each feature party got."""
    b = label_role(y, engine)
    roles, received = {}, {}
    for party, (X, names) in parties.items():
        roles[party] = feature_role(party, X, names, engine)
        request = wire(b.request(party))
        counts = wire(roles[party].answer(request))
        result = wire(b.receive_counts(counts))
        roles[party].apply(result)
        received[party] = [request, result]
    return b, roles, received


@pytest.fixture(scope="module")
def federated():
    parties, y, b_own = make_data()
    b, roles, received = run_binning(parties, y)
    b.bin_own(b_own, ["b0", "b1"])
    return parties, y, b, roles, received


# -- exactness -------------------------------------------------------------------------------


def test_events_and_totals_at_b_equal_the_plaintext_counts_of_every_fine_bin(federated):
    parties, y, b, roles, _ = federated

    reports = {(r.party, r.name): r for r in b.characteristics()}

    checked = 0
    for party, (X, names) in parties.items():
        for j, name in enumerate(names):
            fine = roles[party].fine[name]  # A's own fine bins: the test may look, B never sees them
            index = fine.assign(X[:, j])
            report = reports[(party, name)]
            assert list(report.fine_totals) == bin_totals(index, fine.count).tolist()
            assert list(report.fine_events) == bin_events(index, fine.count, y).tolist()
            checked += fine.count
    assert checked > 30
    missing = reports[("A1", "income")]
    assert missing.fine_totals[-1] == int(np.isnan(parties["A1"][0][:, 1]).sum()) > 0


def test_the_iv_b_reports_equals_the_pooled_plaintext_iv_with_the_same_final_bins(federated):
    parties, y, b, roles, _ = federated

    reports = {(r.party, r.name): r for r in b.characteristics()}

    for party, (X, names) in parties.items():
        for j, name in enumerate(names):
            final = roles[party].bins[name]
            index = final.assign(X[:, j])  # pooled: A's column with B's labels, as one party would hold them
            events, totals = bin_events(index, final.count, y), bin_totals(index, final.count)
            woe, iv = woe_iv(events, totals)
            report = reports[(party, name)]
            assert list(report.events) == events.tolist() and list(report.totals) == totals.tolist()
            assert np.allclose(report.woe, woe, atol=1e-9, rtol=0)
            assert abs(report.iv_total - float(iv.sum())) < 1e-9
            assert report.direction == roles[party].directions[name]
    assert reports[("A1", "age")].iv_total > 0.1  # a real signal, not an empty comparison
    assert reports[("A1", "income")].totals[-1] > 0  # the missing bin is in the comparison


def test_b_reports_every_characteristic_of_every_party_with_its_own_in_plaintext(federated):
    _parties, y, b, _, _ = federated

    report = b.report()

    assert [(c["party"], c["name"]) for c in report] == [
        ("A1", "age"), ("A1", "income"), ("A2", "tenure"), ("A2", "noise"), ("B", "b0"), ("B", "b1")]
    for c in report:
        assert c["iv"] == pytest.approx(sum(row["iv"] for row in c["bins"]), abs=1e-12)
        assert sum(row["total"] for row in c["bins"]) == len(y)
        assert c["bins"][-1]["missing"]
        assert ("label" in c["bins"][0]) == (c["party"] == "B")  # edges only for B's own characteristics
    own = b.reports["B"]["b0"]
    index = b.own_bins["b0"].assign(make_data()[2][:, 0])
    assert list(own.events) == bin_events(index, b.own_bins["b0"].count, y).tolist()
    json.dumps(report, allow_nan=False)  # the report is plain JSON


def test_the_engine_path_gives_the_same_counts(monkeypatch):
    parties, y, _ = make_data(rows=400, seed=3)
    monkeypatch.setattr(binning, "PRODUCT_PARALLEL_MIN", 0)  # split rows over the workers even for this size

    serial, _, _ = run_binning(parties, y, engine=1)
    parallel, _, _ = run_binning(parties, y, engine=2)

    assert [(r.fine_events, r.fine_totals) for r in serial.characteristics()] == \
        [(r.fine_events, r.fine_totals) for r in parallel.characteristics()]


# -- what the feature party receives ---------------------------------------------------------

LABEL_STATISTICS = {"events", "nonevents", "totals", "total", "fine_events", "fine_totals", "woe", "iv",
                    "iv_total", "event_rate", "share", "bins"}


def keys_of(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from keys_of(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from keys_of(inner)


def test_a_feature_partys_transcript_holds_no_label_statistic(federated):
    _, y, _b, _roles, received = federated

    for party, messages in received.items():
        assert [type(m) for m in messages] == [BinningRequest, BinningResult]
        request, result = messages
        for message in messages:
            fields = set(keys_of(message.model_dump(exclude={"enc_labels", "modulus_proof"})))
            assert not fields & LABEL_STATISTICS, f"{party} received {fields & LABEL_STATISTICS}"
        # The result: names, merges and directions only.
        assert all(set(c.model_dump()) == {"name", "groups", "direction"} for c in result.characteristics)
        # The labels arrive as real ciphertexts under B's key: units below n², none of the readable form 1 + m·n.
        key = request.public_key()
        enc = request.enc_labels.to_vector(key, expected_count=len(y), what="labels")
        assert all(c % key.n != 1 for c in enc.ciphertexts)
        assert request.enc_labels.frac_bits == 0
    # The two feature parties got the same key and the same [[y]]: one encryption per job.
    first, second = received["A1"][0], received["A2"][0]
    assert first.n == second.n and first.enc_labels == second.enc_labels


def test_b_learns_no_bin_edge_of_a_feature_party(federated):
    parties, _, b, roles, _ = federated
    counts = roles["A1"]  # recompute what A1 sent, to inspect the answer itself
    cuts = {c for name in parties["A1"][1] for c in counts.fine[name].cuts}

    report_floats = {v for c in b.report() if c["party"] == "A1" for row in c["bins"]
                     for k, v in row.items() if isinstance(v, float)}

    assert cuts and not cuts & report_floats
    assert all(k not in row for c in b.report() if c["party"] != "B" for row in c["bins"]
               for k in ("label", "lower", "upper"))


# -- a deviating label party -----------------------------------------------------------------


def deviating_request(b: BinningLabelRole, party: str, values: list[int]) -> BinningRequest:
    """B's honest request with [[y]] replaced by encryptions of ``values`` (any residues)."""
    honest = b.request(party)
    public = b.public_key
    cts = Encryptor(public, "djn", 1).encrypt_residues(values)
    enc = CipherVector(count=len(cts), data=pack_ints(cts, public.ciphertext_bytes), frac_bits=0)
    return honest.model_copy(update={"enc_labels": enc})


def decrypt_answer(b: BinningLabelRole, counts: BinningCounts) -> list[tuple[list[int], list[int]]]:
    private = b._key()[1]
    out = []
    for c in counts.characteristics:
        cts = c.masked_events.to_vector(b.public_key, what="counts").ciphertexts
        out.append((c.totals, [int(private.raw_decrypt(x)) for x in cts]))
    return out


def test_weights_2_to_the_i_do_not_reveal_which_rows_are_in_a_bin():
    rows = 600  # Σ 2^i over any bin stays below n (1024 bits): unmasked, it would spell out the bin's rows
    parties, y, _ = make_data(rows=rows, seed=11)
    X, names = parties["A1"]
    b = label_role(y)
    a = feature_role("A1", X, names)
    weights = [1 << i for i in range(rows)]

    counts = a.answer(wire(deviating_request(b, "A1", weights)))
    decrypted = decrypt_answer(b, counts)

    n = int(b.public_key.n)
    for (totals, values), name, j in zip(decrypted, names, range(len(names))):
        index = a.fine[name].assign(X[:, j])
        for bin_, (total, value) in enumerate(zip(totals, values)):
            members = np.flatnonzero(index == bin_)
            true_sum = sum(1 << int(i) for i in members)
            k = total + 1
            # All B can use: the residue mod K_b, i.e. log2(n_b + 1) bits of the weighted sum, as for 0/1 labels.
            assert value % k == true_sum % k
            if total:
                assert value != true_sum
                read = {i for i in range(rows) if value >> i & 1}  # the attack: read the bin's rows off the bits
                assert read != set(members.tolist())
                # The mask fills the bits above log2(K_b): B's reading is far from the bin (about half of all rows).
                assert len(read ^ set(members.tolist())) > rows // 4
            assert value < n


def test_a_one_customer_indicator_still_shows_that_customers_fine_bin():
    """The stated bound: a 0/1 vector is a legitimate input, so a 1 on one row names that row's fine bin
    (one of at most 1/min_share bins). Only the per-partner budget of binning runs, which the service
    enforces, limits how often B can ask."""
    parties, y, _ = make_data(rows=500, seed=5)
    X, names = parties["A2"]
    b = label_role(y)
    a = feature_role("A2", X, names)
    target = 123

    counts = a.answer(deviating_request(b, "A2", [1 if i == target else 0 for i in range(500)]))
    decrypted = decrypt_answer(b, counts)

    for (totals, values), name, j in zip(decrypted, names, range(len(names))):
        events = [v % (t + 1) for t, v in zip(totals, values)]
        assert events.index(1) == a.fine[name].assign(X[target:target + 1, j])[0]
        assert sum(events) == 1
        assert min(t for t in totals[:-1]) >= 0.05 * 500  # the bin it names holds at least A's min share


def test_a_modulus_with_gcd_n_phi_above_one_cannot_prove_itself():
    public, private = generate_keypair(TEST_KEY_BITS, min_bits=TEST_KEY_BITS)
    check_modulus(public.n, prove_modulus(private))  # an honest key passes
    forged = [mpz(1)] * binning.PROOF_VALUES

    with pytest.raises(KeyMismatch, match="does not prove"):
        check_modulus(public.n, forged)
    # A modulus with a small prime factor (so gcd(n, φ(n)) could exceed 1) is refused outright.
    with pytest.raises(KeyMismatch, match="prime factor below"):
        check_modulus(public.n * 3, prove_modulus(private))


# -- refusals --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    parties, y, _ = make_data(rows=300, seed=2)
    X, names = parties["A1"]
    b = label_role(y)
    return b, X, names, b.request("A1")


def test_a_label_vector_of_the_wrong_length_is_refused(small):
    _b, X, names, request = small
    a = feature_role("A1", X[:-1], names)  # A's aligned rows differ from B's vector

    with pytest.raises(ProtocolError, match="299"):
        a.answer(request)


def test_a_key_below_the_feature_partys_minimum_is_refused(small):
    _b, X, names, request = small
    a = feature_role("A1", X, names, min_key_bits=2048)

    with pytest.raises(KeyMismatch, match="at least 2048"):
        a.answer(request)


def test_a_key_above_the_feature_partys_maximum_is_refused(small):
    _b, X, names, request = small
    a = feature_role("A1", X, names, min_key_bits=512, max_key_bits=768)

    with pytest.raises(KeyMismatch, match="maximum of 768"):
        a.answer(request)


def test_a_key_without_a_valid_modulus_proof_is_refused(small):
    b, X, names, request = small
    width = byte_width(b.public_key.n + 1)
    forged = request.model_copy(update={"modulus_proof": IntVector.pack([mpz(2)] * binning.PROOF_VALUES, width)})

    with pytest.raises(KeyMismatch, match="does not prove"):
        feature_role("A1", X, names).answer(forged)


def test_min_share_below_the_feature_partys_floor_is_refused(small):
    _b, X, names, request = small
    lowered = request.model_copy(update={"min_share": 0.01})

    with pytest.raises(LimitExceeded, match="floor of 0.05"):
        feature_role("A1", X, names).answer(lowered)
    with pytest.raises(LimitExceeded, match="floor of 0.1"):
        feature_role("A1", X, names, min_share_floor=0.1).answer(request)


def test_unknown_characteristics_and_a_second_request_are_refused(small):
    _b, X, names, request = small
    a = feature_role("A1", X, names)

    with pytest.raises(ProtocolError, match="no characteristics"):
        a.answer(request.model_copy(update={"characteristics": ["age", "salary"]}))
    a.answer(request)
    with pytest.raises(ReplayError, match="already answered"):
        a.answer(request)


@pytest.mark.parametrize("groups, match", [
    (lambda g: [1] + g[1:], "starting at 0"),           # does not start at 0
    (lambda g: g[:-1] + [g[-1] + 2], "stepping"),        # skips a coarse bin
    (lambda g: g + [g[-1]], "each of the"),               # one more than the fine bins
    (lambda g: list(reversed(g)), "starting at 0"),       # not in order
])
def test_malformed_groups_are_refused(small, groups, match):
    b, X, names, request = small
    a = feature_role("A1", X, names)
    result = BinningLabelRole("job", b.labels, SETTINGS, key_bits=TEST_KEY_BITS, min_key_bits=TEST_KEY_BITS,
                              engine=1)
    request = result.request("A1")
    honest = result.receive_counts(a.answer(request))
    bad = [c.model_copy(update={"groups": groups(list(c.groups))}) if c.name == "age" else c
           for c in honest.characteristics]

    with pytest.raises(ProtocolError, match=match):
        a.apply(honest.model_copy(update={"characteristics": bad}))
    assert a.bins == {}  # nothing applied


def test_a_result_for_other_characteristics_or_another_party_is_refused(small):
    b, X, names, _ = small
    a = feature_role("A1", X, names)
    honest_b = label_role(b.labels)
    honest = honest_b.receive_counts(a.answer(honest_b.request("A1")))
    extra = CharacteristicGroups(name="salary", groups=[0], direction="increasing")

    with pytest.raises(ProtocolError, match="each must appear once"):
        a.apply(honest.model_copy(update={"characteristics": honest.characteristics[:1]}))
    with pytest.raises(ProtocolError, match="each must appear once"):
        a.apply(honest.model_copy(update={"characteristics": [*honest.characteristics, extra]}))
    with pytest.raises(ProtocolError, match="for party A2"):
        a.apply(honest.model_copy(update={"party": "A2"}))
    with pytest.raises(ProtocolError, match="direction"):
        wire(honest.model_copy(update={"characteristics": [
            CharacteristicGroups.model_construct(name="age", groups=[0], direction="sideways")]}))
    assert set(a.apply(honest)) == set(names)


def test_b_refuses_counts_that_do_not_add_up_or_come_twice(small):
    b, X, names, _ = small
    honest_b = label_role(b.labels)
    counts = feature_role("A1", X, names).answer(honest_b.request("A1", names))
    first = counts.characteristics[0]
    shifted = first.model_copy(update={"totals": [first.totals[0] + 1, *first.totals[1:]]})

    with pytest.raises(ProtocolError, match="cover 301 rows"):
        honest_b.receive_counts(counts.model_copy(update={"characteristics": [shifted, *counts.characteristics[1:]]}))
    with pytest.raises(ProtocolError, match="was asked for"):
        honest_b.receive_counts(counts.model_copy(update={"characteristics": counts.characteristics[::-1]}))
    honest_b.receive_counts(counts)
    with pytest.raises(ReplayError):
        honest_b.receive_counts(counts)
    assert honest_b.done


def test_labels_that_are_not_0_1_with_both_classes_are_refused():
    with pytest.raises(DataError, match="0 or 1"):
        label_role(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(DataError, match="both events and non-events"):
        label_role(np.zeros(10))


def test_mask_bound_leaves_no_room_for_wraparound():
    """K_b·R_b + S_b ≤ n − 1 for the largest R_b and an honest S_b = n_b: the residue is exact."""
    public, _ = generate_keypair(TEST_KEY_BITS, min_bits=TEST_KEY_BITS)
    n = int(public.n)
    for total in (0, 1, 7, 1000, 29_999):
        k = total + 1
        largest = (n - 1 - total) // k
        assert total + k * largest <= n - 1
        assert math.log2(n) - math.log2(largest + 1) < math.log2(k) + 1e-9  # the stated leak bound
    assert gmpy2.is_prime(public.n) is False
