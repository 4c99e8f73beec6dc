"""vfl.lending without services: publication, blind signing, matching, rotation, bad values, budgets."""

from __future__ import annotations

import json

import gmpy2
import pytest
from gmpy2 import mpz

from psi.hashing import fdh
from psi.keys import generate_rsa_key
from vfl.errors import PSIError, ProtocolError, RateLimited
from vfl.lending import Budgets, LenderKey, Querier, StaleKey, TagSet, answers, publish, sign_blinded
from vfl.lending.lender import encode, key_id_of, parse_values

BITS = 1024


@pytest.fixture(scope="module")
def rsa_key():
    return generate_rsa_key(BITS, min_bits=BITS)


def published(ids, key, epoch=1, now=1000.0):
    return publish(ids, epoch=epoch, now=now, rotate_every=3600, key_bits=BITS, min_key_bits=BITS, key=key, engine=1)


def ask(querier, lender_key, ids, lender="L"):
    blinded = querier.blind(lender, ids)
    signatures = sign_blinded(lender_key, blinded.key_id, blinded.values)
    return querier.match(blinded, lender_key.key_id, signatures)


def test_the_querier_finds_exactly_the_borrowers(rsa_key):
    borrowers = [f"C{i:04d}" for i in range(0, 300, 3)]
    key, tags = published(borrowers + borrowers[:5], rsa_key)  # repeats count once
    assert tags.size == len(borrowers)
    querier = Querier(min_key_bits=BITS)
    querier.accept("L", json.loads(json.dumps(tags.to_public())))  # as it travels
    asked = [f"C{i:04d}" for i in range(0, 40)]

    hits = ask(querier, key, asked)

    assert hits == [x in set(borrowers) for x in asked]
    assert answers(asked[:4], {"L": hits[:4], "M": [False, True, False, True]}, "lenders") == [
        {"id": "C0000", "found_at": ["L"]}, {"id": "C0001", "found_at": ["M"]},
        {"id": "C0002", "found_at": []}, {"id": "C0003", "found_at": ["L", "M"]}]
    assert [a["count"] for a in answers(asked[:4], {"L": hits[:4], "M": [True] * 4}, "count")] == [2, 1, 1, 2]


def test_tags_are_shuffled_and_blinded_values_reveal_nothing(rsa_key):
    ids = [f"x{i}" for i in range(200)]
    key, tags = published(ids, rsa_key)
    assert tags.tag_list() != sorted(tags.tag_list())
    querier = Querier(min_key_bits=BITS)
    querier.accept("L", tags.to_public())
    first, second = querier.blind("L", ["x1"]), querier.blind("L", ["x1"])
    plain = fdh("x1", tags.salt, tags.public.n)
    assert first.values[0] != second.values[0]  # fresh r every time
    assert plain not in (first.values[0], second.values[0])


def test_rotation_invalidates_the_old_tags(rsa_key):
    ids = ["a", "b", "c"]
    old_key, old_tags = published(ids, rsa_key, epoch=1)
    new_key, new_tags = published(ids, generate_rsa_key(BITS, min_bits=BITS), epoch=2)
    assert new_key.key_id != old_key.key_id
    querier = Querier(min_key_bits=BITS)
    querier.accept("L", old_tags.to_public())
    blinded = querier.blind("L", ["a"])

    with pytest.raises(StaleKey, match="rotated"):  # the lender no longer signs under the old key id
        sign_blinded(new_key, blinded.key_id, blinded.values)
    # A signature under the new key is never matched against the old key's tags: the cache is dropped.
    signatures = sign_blinded(new_key, new_key.key_id, [mpz(5)])
    with pytest.raises(StaleKey):
        querier.match(blinded, new_key.key_id, signatures)
    assert querier.cached("L") is None
    # Even with the same RSA key, a new salt makes every old tag useless.
    same_key, same_tags = published(ids, rsa_key, epoch=2)
    assert set(same_tags.tag_list()).isdisjoint(old_tags.tag_list())


def test_the_lender_refuses_bad_values(rsa_key):
    key, _ = published(["a"], rsa_key)
    n = key.private.public.n
    for bad, message in ((mpz(0), r"values\[1\] is outside \[1, n−1\]"), (n, r"values\[1\] is outside"),
                         (n + 5, r"values\[1\] is outside"), (key.private.p * 7, r"values\[1\] shares a factor")):
        with pytest.raises(PSIError, match=message):
            sign_blinded(key, key.key_id, [mpz(3), bad])
    public = key.private.public
    with pytest.raises(ProtocolError, match=r"values\[1\] is garbled"):
        parse_values(["0a", "zz"], public, limit=10)
    with pytest.raises(ProtocolError, match=r"values\[0\] is not a blinded value"):
        parse_values(["f" * (2 * public.byte_width + 1)], public, limit=10)
    with pytest.raises(ProtocolError, match="at most 2 per request"):
        parse_values(["1", "2", "3"], public, limit=2)
    assert parse_values(encode([mpz(17)]), public, limit=2) == [17]


def test_every_released_signature_is_checked(rsa_key, monkeypatch):
    key, tags = published(["a"], rsa_key)
    querier = Querier(min_key_bits=BITS)
    querier.accept("L", tags.to_public())
    blinded = querier.blind("L", ["a", "b"])
    signatures = sign_blinded(key, key.key_id, blinded.values)
    assert all(gmpy2.powmod(s, 65537, key.private.public.n) == v for s, v in zip(signatures, blinded.values))
    forged = [signatures[0], signatures[1] + 1]
    with pytest.raises(PSIError, match="signature 1 fails its check"):
        querier.match(blinded, key.key_id, forged)


def test_a_tag_set_is_checked_when_fetched(rsa_key):
    _, tags = published(["a", "b"], rsa_key)
    good = tags.to_public()
    for change, message in (({"key_id": "0" * 16}, "not the id of the key"), ({"size": 3}, "declares 3 tags"),
                            ({"tags": "!!"}, "malformed"), ({"e": 3}, "public exponent 3"),
                            ({"rotates_at": 0}, "rotates before")):
        with pytest.raises(PSIError, match=message):
            TagSet.from_public({**good, **change}, min_key_bits=BITS)
    with pytest.raises(PSIError, match="at least 2048"):
        TagSet.from_public(good, min_key_bits=2048)
    with pytest.raises(PSIError, match="has no 'salt'"):
        TagSet.from_public({k: v for k, v in good.items() if k != "salt"}, min_key_bits=BITS)


def test_a_querier_refuses_a_tag_set_that_would_cost_it_too_much(rsa_key):
    _, tags = published(["a", "b", "c"], rsa_key)

    with pytest.raises(PSIError, match="holds 3 tags; at most 2"):
        Querier(min_key_bits=BITS, max_tags=2).accept("L", tags.to_public())
    with pytest.raises(PSIError, match="at most 512 are accepted here"):
        TagSet.from_public(tags.to_public(), min_key_bits=256, max_key_bits=512)
    assert Querier(min_key_bits=BITS, max_key_bits=BITS, max_tags=3).accept("L", tags.to_public()).size == 3


def test_the_lender_key_round_trips(rsa_key):
    key, tags = published(["a", "b"], rsa_key, epoch=4)
    again = LenderKey.from_dict(json.loads(json.dumps(key.to_dict())))
    assert again.key_id == key.key_id and again.epoch == 4 and again.tag_set(tags.tags) == tags


def test_budgets_per_day_and_per_minute():
    day = 19_000 * 86400.0  # midnight UTC
    budgets = Budgets(per_day=5, per_minute=3, where="lender 'L'")
    budgets.charge("bank", 2, now=day + 10)
    budgets.charge("bank", 2, now=day + 11)
    with pytest.raises(RateLimited, match=r"asked about 4 of its 5 IDs .*budget_per_day at lender 'L'.*1 left"):
        budgets.charge("bank", 2, now=day + 12)
    budgets.charge("shop", 5, now=day + 12)  # per querier
    budgets.charge("bank", 1, now=day + 13)
    assert budgets.usage("bank", now=day + 14)["left"] == 0
    # The rate limit: 3 requests in any 60 s.
    with pytest.raises(RateLimited, match=r"3 lending requests in the last minute.*rate_per_minute = 3"):
        budgets.charge("bank", 0, now=day + 20)
    # A new UTC day renews the budget; the state survives a round trip (a restart).
    restored = Budgets(5, 3, json.loads(json.dumps(budgets.to_dict())))
    with pytest.raises(RateLimited, match="5 of its 5"):
        restored.charge("bank", 1, now=day + 100)
    assert restored.charge("bank", 5, now=day + 86400 + 1)["used"] == 5


def test_a_key_that_is_not_a_permutation_is_refused(rsa_key):
    """A lender choosing p with e | p − 1 would read FDH(id)'s class through the blinding; its set is refused."""
    e = mpz(65537)
    state = gmpy2.random_state(7)
    while True:  # p = 2·e·k + 1, a 512-bit prime
        p = 2 * e * (gmpy2.mpz_urandomb(state, 495) | (mpz(1) << 494)) + 1
        if gmpy2.is_prime(p) and p.bit_length() == 512:
            break
    q = gmpy2.next_prime(gmpy2.mpz_urandomb(state, 512) | (mpz(3) << 510))
    n = p * q
    _, honest = published(["a"], rsa_key)
    forged = {**honest.to_public(), "n": format(int(n), "x")}
    forged["key_id"] = key_id_of(n, honest.salt, honest.epoch)
    # The leak the check prevents: blinding does not hide FDH(x) modulo e-th powers mod p.
    h = fdh("applicant", honest.salt, n)
    r = mpz(123456789)
    blinded = h * gmpy2.powmod(r, e, n) % n
    assert gmpy2.powmod(blinded, (p - 1) // e, p) == gmpy2.powmod(h, (p - 1) // e, p)
    # The lender can take e-th roots of 1 value in e only, so it cannot answer the proof values.
    for proof in (honest.to_public()["proof"], ["1"] * 8, []):
        with pytest.raises(PSIError, match="does not prove its key is an RSA permutation"):
            TagSet.from_public({**forged, "proof": proof}, min_key_bits=BITS)
    tampered = list(honest.to_public()["proof"])
    tampered[3] = format(int(tampered[3], 16) + 1, "x")
    with pytest.raises(PSIError, match="RSA permutation"):
        TagSet.from_public({**honest.to_public(), "proof": tampered}, min_key_bits=BITS)
