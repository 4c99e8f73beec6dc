"""The ristretto255 group core of the ECDH PSI (psi/ec.py): published vectors, algebra, refusals, the engine path."""

import pickle

import pytest

from psi import ec
from vfl.compute.engine import make_engine
from vfl.errors import ConfigError, PSIError

try:  # the group is the system's libsodium (>= 1.0.18); .ci/run installs it where apt can
    ec._sodium()
except ConfigError as exc:
    pytest.skip(f"no usable libsodium: {exc}", allow_module_level=True)

# RFC 9380 Appendix K.3: expand_message_xmd(SHA-512), DST = QUUX-V01-CS02-with-expander-SHA512-256.
XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
XMD_SHA512_VECTORS = [
    (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    (b"", 0x80,
     ("41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921b052b62eaed99b46f72f2ef4cc96bfaf"
     "254ebbbec091e1a3b9e4fb5e5b619d2e0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
     "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961")),
]

# RFC 9496 Appendix A.3: element derivation (the one-way map) from 64 uniform bytes.
MAP_VECTORS = [
    (("5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1"
     "4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6"),
     "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46"),
    (("f116b34b8f17ceb56e8732a60d913dd10cce47a6d53bee9204be8b44f6678b27"
     "0102a56902e2488c46120e9276cfe54638286b9e4b3cdb470b542d46c2068d38"),
     "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b"),
]

# RFC 9496 Appendix A.2: encodings every decoder must refuse (a selection of each kind).
BAD_ENCODINGS = {
    "non-canonical field encoding (00ff..ff)": "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "non-canonical field encoding (s = p)": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "non-canonical field encoding (s ≥ 2^255)": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "negative field element (s = 1)": "0100000000000000000000000000000000000000000000000000000000000000",
    "negative field element (01ff..7f)": "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "non-square x²": "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    "negative xy": "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
    "s = −1": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

# RFC 9496 Appendix A.1: the generator B and 2B.
GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
TWICE_GENERATOR = bytes.fromhex("6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919")


def scalar_of(value: int) -> ec.Scalar:
    return ec.Scalar(value.to_bytes(32, "little"))


@pytest.mark.parametrize("msg, length, expected", XMD_SHA512_VECTORS, ids=["empty-32", "abc-32", "empty-128"])
def test_expand_message_xmd_sha512_matches_rfc9380(msg, length, expected):
    out = ec.expand_message_xmd(msg, XMD_DST, length)

    assert out.hex() == expected


@pytest.mark.parametrize("uniform, expected", MAP_VECTORS, ids=["a3-1", "a3-2"])
def test_one_way_map_matches_rfc9496(uniform, expected):
    point = ec.from_uniform_bytes(bytes.fromhex(uniform))

    assert point.hex() == expected


def test_the_whole_hash_and_mult_matches_rfc9497s_oprf_vectors():
    # RFC 9497 A.1.1.1 (ristretto255-SHA512, OPRF mode): BlindedElement = blind · HashToGroup(input) with
    # HashToGroup = hash_to_ristretto255 under DST "HashToGroup-" || contextString: the suite of hash_to_group.
    dst = b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512"
    blind = ec.Scalar(bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"))

    blinded = ec.scalar_mult(blind, ec.hash_to_group([b"\x00", b"\x5a" * 17], dst))

    assert [p.hex() for p in blinded] == [
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
    ]


def test_scalar_mult_of_the_generator_matches_rfc9496():
    doubled = ec.scalar_mult(scalar_of(2), [GENERATOR])

    assert doubled == [TWICE_GENERATOR]


def test_multiplication_commutes_so_equal_ids_meet():
    dst = ec.job_dst("job-1", b"s" * 32)
    a, b = ec.new_scalar(), ec.new_scalar()
    hashed = ec.hash_to_group([b"alice", b"bob", b"carol"], dst)

    ab = ec.scalar_mult(a, ec.scalar_mult(b, hashed))
    ba = ec.scalar_mult(b, ec.scalar_mult(a, hashed))

    assert ab == ba
    assert len(set(ab)) == 3


def test_different_dsts_give_different_points():
    ids = [b"alice", b"bob"]

    one = ec.hash_to_group(ids, ec.job_dst("job-1", b"s" * 32))
    other_job = ec.hash_to_group(ids, ec.job_dst("job-2", b"s" * 32))
    other_salt = ec.hash_to_group(ids, ec.job_dst("job-1", b"t" * 32))

    assert set(one).isdisjoint(other_job)
    assert set(one).isdisjoint(other_salt)
    assert one == ec.hash_to_group(ids, ec.job_dst("job-1", b"s" * 32))


def test_job_dst_is_a_valid_rfc9380_tag_that_names_the_suite():
    dst = ec.job_dst("a" * 10_000, b"\x00" * 64)

    assert 0 < len(dst) <= 255
    assert dst.startswith(ec.DST_PREFIX) and ec.SUITE_ID in dst
    # length prefixes: a job ID cannot borrow bytes from the salt
    assert ec.job_dst("ab", b"c") != ec.job_dst("a", b"bc")


@pytest.mark.parametrize("dst", [b"", b"x" * 256, "text"])
def test_a_dst_outside_rfc9380s_rules_is_refused(dst):
    with pytest.raises(ConfigError, match="domain separation tag"):
        ec.hash_to_group([b"alice"], dst)


def test_new_scalars_are_fresh_canonical_and_not_zero():
    scalars = [ec.new_scalar() for _ in range(50)]

    values = [int.from_bytes(k.encoded, "little") for k in scalars]
    assert len(set(values)) == 50
    assert all(0 < v < ec.GROUP_ORDER for v in values)
    assert "secret" in repr(scalars[0]) and scalars[0].encoded.hex() not in repr(scalars[0])


@pytest.mark.parametrize("value", [0, ec.GROUP_ORDER, 2**256 - 1])
def test_a_zero_or_non_canonical_scalar_is_refused(value):
    with pytest.raises(ConfigError, match="scalar"):
        ec.Scalar(value.to_bytes(32, "little"))


def test_the_identity_is_refused_with_its_index():
    points = ec.hash_to_group([b"alice", b"bob"], ec.job_dst("j", b"s"))

    with pytest.raises(PSIError, match=r"point 2 is the identity"):
        ec.check_points(points + [ec.IDENTITY])


@pytest.mark.parametrize("bad", list(BAD_ENCODINGS.values()), ids=list(BAD_ENCODINGS))
def test_rfc9496_bad_encodings_are_refused(bad):
    good = ec.hash_to_group([b"alice"], ec.job_dst("j", b"s"))

    with pytest.raises(PSIError, match=r"point 1 is not a canonical ristretto255 encoding"):
        ec.check_points(good + [bytes.fromhex(bad)])


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_lengths_are_refused(size):
    with pytest.raises(PSIError, match=rf"point 0 is {size} bytes, not 32"):
        ec.check_points([b"\x01" * size])


def test_scalar_mult_refuses_a_bad_point_even_unchecked():
    k = ec.new_scalar()

    with pytest.raises(PSIError, match="point 1 is the identity"):
        ec.scalar_mult(k, [GENERATOR, ec.IDENTITY])
    with pytest.raises(PSIError, match="point 0 is not a canonical"):
        ec.scalar_mult(k, [bytes.fromhex(BAD_ENCODINGS["negative xy"])])


def test_a_truncated_packed_batch_is_refused():
    packed = ec.pack_points([GENERATOR, TWICE_GENERATOR])

    assert ec.unpack_points(packed) == [GENERATOR, TWICE_GENERATOR]
    with pytest.raises(PSIError, match="not a whole number"):
        ec.unpack_points(packed[:-1])
    with pytest.raises(PSIError, match="truncated"):
        ec.unpack_ids(ec.pack_ids([b"alice", b"bob"])[:-1])


def test_mult_task_checks_the_points_it_is_sent():
    packed = ec.pack_points([GENERATOR, bytes.fromhex(BAD_ENCODINGS["non-square x²"])])

    with pytest.raises(PSIError, match="point 1 is not a canonical"):
        ec.mult_task(packed, ec.new_scalar())


def test_the_engine_path_equals_the_in_process_path():
    ids = [f"user-{i}".encode() for i in range(101)] + [b"", "é".encode()]
    dst = ec.job_dst("job-e", b"salt" * 8)
    a, b = ec.new_scalar(), ec.new_scalar()
    expected_a = ec.scalar_mult(a, ec.hash_to_group(ids, dst))
    expected_ba = ec.scalar_mult(b, expected_a)
    engine = make_engine("local", workers=2)
    try:
        got_a = ec.hash_and_mult(ids, dst, a, engine)
        got_ba = ec.mult(got_a, b, engine)
        empty = ec.hash_and_mult([], dst, a, engine)
    finally:
        engine.close()

    assert got_a == expected_a
    assert got_ba == expected_ba
    assert empty == []


def test_mult_refuses_bad_points_before_any_work():
    engine = make_engine("local", workers=2)
    try:
        with pytest.raises(PSIError, match="point 3 is the identity"):
            ec.mult([GENERATOR, TWICE_GENERATOR, GENERATOR, ec.IDENTITY], ec.new_scalar(), engine)
    finally:
        engine.close()


def test_a_scalar_pickles_for_worker_tasks():
    k = ec.new_scalar()

    assert pickle.loads(pickle.dumps(k)) == k
