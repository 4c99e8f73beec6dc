"""The PSI protocol end to end in one process: exact results, and what each side sees."""

import gmpy2
import numpy as np
import pytest

from psi import run_psi
from psi.hashing import fdh
from psi.messages import BlindedChunk, DeclaredSize, IntersectionTags, KeyHolderTags, PsiPublicKey, SignedChunk
from psi.protocol import PsiKeyHolder, PsiRequester
from vfl.errors import DataError, PSIError
from vfl.protocol.messages import IntVector

BITS = 1024


def make_sets(size: int, overlap: float, seed: int) -> tuple[list[str], list[str], set[str]]:
    rng = np.random.default_rng(seed)
    shared = int(round(size * overlap))
    pool = [f"cust-{v}" for v in rng.choice(10 * size + 10, size=2 * size - shared, replace=False)]
    ids_a = pool[:size]
    ids_b = pool[size - shared :]
    rng.shuffle(ids_b)
    return ids_a, ids_b, set(ids_a) & set(ids_b)


@pytest.mark.parametrize("size", [1, 10, 1000])
@pytest.mark.parametrize("overlap", [0.0, 0.3, 1.0])
def test_intersection_is_exact_and_aligned(size, overlap):
    ids_a, ids_b, truth = make_sets(size, overlap, seed=size)

    result = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=2 if size > 100 else 1, chunk_size=256)

    assert result.intersection_size == len(truth)
    assert {ids_a[i] for i in result.rows_a} == truth
    assert [ids_a[i] for i in result.rows_a] == [ids_b[j] for j in result.rows_b]  # same order on both sides


@pytest.mark.slow
def test_hundred_thousand_ids():
    ids_a, ids_b, truth = make_sets(100_000, 0.3, seed=9)

    result = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS)

    assert result.intersection_size == len(truth)
    assert [ids_a[i] for i in result.rows_a] == [ids_b[j] for j in result.rows_b]


def test_each_side_receives_only_what_the_protocol_allows():
    ids_a, ids_b, truth = make_sets(300, 0.3, seed=3)
    transcript = []

    run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=64, transcript=transcript)

    to_a = [e.message for e in transcript if e.recipient == "A"]
    to_b = [e.message for e in transcript if e.recipient == "B"]
    assert {type(m) for m in to_a} == {DeclaredSize, BlindedChunk, IntersectionTags}
    assert {type(m) for m in to_b} == {PsiPublicKey, SignedChunk, KeyHolderTags}
    assert isinstance(to_a[0], DeclaredSize) and to_a[0].size_b == len(ids_b)  # B's size comes first, and is all A learns of B's set
    key = next(m for m in to_b if isinstance(m, PsiPublicKey))
    assert key.size_a == len(ids_a)
    n = key.key().n
    plain_hashes = {fdh(x, key.salt, n) for x in ids_b}
    blinded = [v for m in to_a if isinstance(m, BlindedChunk) for v in m.values.unpack(key.key().byte_width)]
    assert len(blinded) == len(ids_b) and plain_hashes.isdisjoint(blinded)
    (intersection,) = [m for m in to_a if isinstance(m, IntersectionTags)]
    assert intersection.count == len(truth)  # A learns the matching tags, nothing about B's other IDs
    a_tags = b"".join(m.tags for m in to_b if isinstance(m, KeyHolderTags))
    tags_in_order = [a_tags[i : i + 32] for i in range(0, len(a_tags), 32)]
    assert len(tags_in_order) == len(ids_a)
    assert tags_in_order != sorted(tags_in_order)  # shuffled, not in a revealing order


def test_blinding_factors_are_fresh_full_size_units():
    ids = [f"x{i}" for i in range(50)]
    holder = PsiKeyHolder("job", ids, key_bits=BITS, min_key_bits=BITS)
    first, second = PsiRequester("job", ids, min_key_bits=BITS), PsiRequester("job", ids, min_key_bits=BITS)
    (key,) = holder.start()

    out_first = first.handle(key.message, "A")[1].message  # [0] is the declared size
    out_second = second.handle(key.message, "A")[1].message

    n = holder.key.public.n
    factors = [gmpy2.invert(r_inv, n) for r_inv in first._blinding[0][0]]  # B keeps r⁻¹
    assert len(set(factors)) == len(factors) == 50
    # Full size: a uniform unit of Z_n has at most |n| - 64 bits with probability below 2^-63, so the 50 factors
    # miss this bound together with probability below 2^-57 (|n| - 16 failed up to 1 run in 650).
    assert min(r.bit_length() for r in factors) > n.bit_length() - 64
    assert set(out_first.values.unpack(128)).isdisjoint(out_second.values.unpack(128))


@pytest.mark.parametrize("bad", ["zero", "n", "above-n", "factor-of-n"])
def test_key_holder_refuses_values_outside_the_unit_group(bad):
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    holder.start()
    holder.handle(DeclaredSize(job_id="job", size_b=1), "B")
    n = holder.key.public.n
    value = {"zero": 0, "n": n, "above-n": n + 5, "factor-of-n": holder.key.p}[bad]
    chunk = BlindedChunk(job_id="job", chunk=0, total_chunks=1, values=IntVector.pack([value], 128))

    with pytest.raises(PSIError, match="invalid blinded value"):
        holder.handle(chunk, "B")


def test_requester_refuses_a_signature_that_does_not_verify():
    holder = PsiKeyHolder("job", ["a"], key_bits=BITS, min_key_bits=BITS)
    requester = PsiRequester("job", ["a"], min_key_bits=BITS)
    (key,) = holder.start()
    declared, blinded = requester.handle(key.message, "A")
    holder.handle(declared.message, "B")
    (signed, *_) = holder.handle(blinded.message, "B")
    forged = signed.message.model_copy(update={"values": IntVector.pack([7], 128)})

    with pytest.raises(PSIError, match="does not verify"):
        requester.handle(forged, "A")


@pytest.mark.parametrize(
    "ids_a, ids_b, problem",
    [
        (["a", "a"], ["a"], "duplicated"),
        (["a", ""], ["a"], "empty"),
        (["a", None], ["a"], "missing"),
        (["a", float("nan")], ["a"], "NaN"),
        ([], ["a"], "no IDs"),
    ],
    ids=["duplicate", "empty-id", "none", "nan", "empty-set"],
)
def test_bad_ids_are_clean_errors(ids_a, ids_b, problem):
    with pytest.raises(DataError, match=problem):
        run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1)


def test_no_overlap_is_a_clean_empty_result():
    result = run_psi(["a", "b"], ["c", "d"], key_bits=BITS, min_key_bits=BITS, workers=1)

    assert result.intersection_size == 0 and result.rows_a.size == 0 and result.rows_b.size == 0


def test_ids_follow_the_documented_rule():
    result = run_psi(["007", 7, 8.0], ["7", "8", "7.0"], key_bits=BITS, min_key_bits=BITS, workers=1)

    assert sorted(result.rows_a.tolist()) == [1, 2]  # 7 ↔ "7" and 8.0 ↔ "8"; "007" matches nothing


def test_alignment_order_is_by_id_and_the_same_in_every_run():
    ids_a, ids_b, truth = make_sets(200, 0.5, seed=5)

    first = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1)
    second = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1)

    aligned = [ids_a[i] for i in first.rows_a]
    assert aligned == sorted(truth)
    assert np.array_equal(first.rows_a, second.rows_a) and np.array_equal(first.rows_b, second.rows_b)


def test_a_key_that_is_not_a_permutation_is_refused_before_anything_is_blinded():
    """An A choosing p with e | p − 1 would read each FDH(x)'s class mod e-th powers through the blinding."""
    import gmpy2
    from gmpy2 import mpz

    from psi.keys import RsaPublicKey
    from psi.messages import PsiPublicKey

    e = mpz(65537)
    state = gmpy2.random_state(11)
    while True:  # p = 2·e·k + 1, a 512-bit prime: r ↦ r^e is then e-to-1 mod p
        p = 2 * e * (gmpy2.mpz_urandomb(state, 495) | (mpz(1) << 494)) + 1
        if gmpy2.is_prime(p) and p.bit_length() == 512:
            break
    q = gmpy2.next_prime(gmpy2.mpz_urandomb(state, 512) | (mpz(3) << 510))
    holder = PsiKeyHolder("job", ["a", "b"], key_bits=BITS, min_key_bits=BITS)
    (honest,) = holder.start()
    forged = PsiPublicKey.from_key("job", RsaPublicKey(p * q, e), honest.message.salt, 2, 64,
                                   proof=honest.message.proof)  # the honest key's roots prove nothing here
    requester = PsiRequester("job", ["a", "x"], min_key_bits=BITS)

    with pytest.raises(PSIError, match="party A's PSI key does not prove its key is an RSA permutation"):
        requester.handle(forged, "A")
    with pytest.raises(PSIError, match="RSA permutation"):
        PsiRequester("job", ["a"], min_key_bits=BITS).handle(honest.message.model_copy(update={"proof": b""}), "A")

    assert requester.key is None and not requester._blinding  # nothing was blinded under the forged key
    assert PsiRequester("job", ["a"], min_key_bits=BITS).handle(honest.message, "A")  # the honest key passes
