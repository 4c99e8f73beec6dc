"""The X25519 group core of the ECDH PSI (psi/ec.py): published vectors, algebra, refusals, the engine path."""

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

# RFC 9380 Appendix J.7.2: curve25519_XMD:SHA-512_ELL2_NU_ (msg, u[0] or None, P.x), big-endian hex.
NU_DST = b"QUUX-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_NU_"
NU_VECTORS = [
    (b"", "608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd",
     "1bb913f0c9daefa0b3375378ffa534bda5526c97391952a7789eb976edfe4d08"),
    (b"abc", "46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5",
     "7c22950b7d900fa866334262fcaea47a441a578df43b894b4625c9b450f9a026"),
    (b"abcdef0123456789", "235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa",
     "31ad08a8b0deeb2a4d8b0206ca25f567ab4e042746f792f4b7973f3ae2096c52"),
    (b"q128_" + b"q" * 128, None, "027877759d155b1997d0d84683a313eb78bdb493271d935b622900459d52ceaa"),
]

# RFC 7748 §6.1: X25519 Diffie-Hellman (private keys as RFC 7748 writes them, unclamped; X25519 clamps).
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
#: The base point u = 9 (RFC 7748 §4.1).
GENERATOR = (9).to_bytes(32, "little")

P = ec.FIELD_PRIME
#: Values every check must refuse, each with the reason it names.
BAD_ENCODINGS = {
    "u = p (non-canonical 0)": (P.to_bytes(32, "little"), "is not a canonical u-coordinate"),
    "u = p + 9 (non-canonical 9)": ((P + 9).to_bytes(32, "little"), "is not a canonical u-coordinate"),
    "top bit set": ((9 + 2**255).to_bytes(32, "little"), "is not a canonical u-coordinate"),
    "u = 1 (order 4)": ((1).to_bytes(32, "little"), "is a point of small order"),
    "order 8": (min(ec.SMALL_ORDER - {0, 1, P - 1}).to_bytes(32, "little"), "is a point of small order"),
    "u = p − 1": ((P - 1).to_bytes(32, "little"), "is a point of small order"),
    "u = 2 (on the twist)": ((2).to_bytes(32, "little"), "is not on curve25519"),
}


def clamp(raw: bytes) -> ec.Scalar:
    """RFC 7748 §5 decodeScalar25519, as an ec.Scalar."""
    value = int.from_bytes(raw, "little") & ~7 & ((1 << 255) - 1) | (1 << 254)
    return ec.Scalar(value.to_bytes(32, "little"))


@pytest.mark.parametrize("msg, length, expected", XMD_SHA512_VECTORS, ids=["empty-32", "abc-32", "empty-128"])
def test_expand_message_xmd_sha512_matches_rfc9380(msg, length, expected):
    out = ec.expand_message_xmd(msg, XMD_DST, length)

    assert out.hex() == expected


@pytest.mark.parametrize("msg, u0, expected", NU_VECTORS, ids=["empty", "abc", "abcdef", "q128"])
def test_hash_to_group_matches_rfc9380s_curve25519_encode_to_curve(msg, u0, expected):
    field = ec.hash_to_field([msg], NU_DST)
    point = ec.hash_to_group([msg], NU_DST)

    if u0 is not None:
        assert int(field[0]) == int(u0, 16)
    assert point == [int(expected, 16).to_bytes(32, "little")]


def test_scalar_mult_matches_rfc7748s_diffie_hellman():
    alice = clamp(ALICE)

    assert ec.scalar_mult(alice, [GENERATOR]) == [ALICE_PUBLIC]
    assert ec.scalar_mult(alice, [BOB_PUBLIC]) == [SHARED]


def ladder(k: int, u: int) -> int | None:
    """Unclamped k·P on u-coordinates (RFC 7748's ladder in plain Python): u, or None for the identity."""
    x2, z2, x3, z3 = 1, 0, u, 1
    for bit in reversed(range(k.bit_length())):
        if (k >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
        a, b = (x2 + z2) % P, (x2 - z2) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, u * (da - cb) ** 2 % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
        if (k >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
    return None if z2 == 0 else x2 * pow(z2, -1, P) % P


def test_the_reference_ladder_agrees_with_libsodium():
    alice = clamp(ALICE)

    assert ladder(int.from_bytes(alice.encoded, "little"), 9) == int.from_bytes(ALICE_PUBLIC, "little")


def test_hashed_points_are_valid_and_of_prime_order():
    points = ec.hash_to_group([f"id-{i}".encode() for i in range(20)], ec.job_dst("j", b"s"))

    ec.check_points(points)
    assert len(set(points)) == 20
    # cofactor cleared: ℓ·H(x) is the identity (a point with a torsion part would not be)
    assert all(ladder(ec.GROUP_ORDER, int.from_bytes(p, "little")) is None for p in points)


def test_clamping_erases_a_small_order_part_a_peer_adds():
    # Adding the point (0, 0) of order 2 maps u to 1/u; a scalar that is a multiple of 8 cannot tell them apart.
    point = ec.hash_to_group([b"alice"], ec.job_dst("j", b"s"))[0]
    shifted = ec.encode_u(pow(int.from_bytes(point, "little"), -1, P))
    k = ec.new_scalar()

    ec.check_points([shifted])  # a valid curve point, only not of prime order
    assert ladder(ec.GROUP_ORDER, int.from_bytes(shifted, "little")) is not None
    assert ec.scalar_mult(k, [shifted]) == ec.scalar_mult(k, [point])


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


def test_new_scalars_are_fresh_clamped_and_secret():
    scalars = [ec.new_scalar() for _ in range(50)]

    values = [int.from_bytes(k.encoded, "little") for k in scalars]
    assert len(set(values)) == 50
    assert all(v % 8 == 0 and v >> 254 == 1 and v % ec.GROUP_ORDER for v in values)
    assert "secret" in repr(scalars[0]) and scalars[0].encoded.hex() not in repr(scalars[0])


@pytest.mark.parametrize("value", [0, 2**254 + 1, 2**254 + 4, 2**255 + 8, 8, 2**256 - 8])
def test_an_unclamped_scalar_is_refused(value):
    with pytest.raises(ConfigError, match="clamped"):
        ec.Scalar(value.to_bytes(32, "little"))


def test_an_invertible_scalar_pair_unblinds():
    points = ec.hash_to_group([b"alice", b"bob", b"carol"], ec.job_dst("j", b"s"))

    pairs = [ec.new_invertible_scalar() for _ in range(10)]

    for blind, unblind in pairs:
        assert ec.scalar_mult(unblind, ec.scalar_mult(blind, points)) == points
    assert len({blind.encoded for blind, _ in pairs}) == 10


def test_the_identity_is_refused_with_its_index():
    points = ec.hash_to_group([b"alice", b"bob"], ec.job_dst("j", b"s"))

    with pytest.raises(PSIError, match=r"point 2 is the identity"):
        ec.check_points(points + [ec.IDENTITY])


@pytest.mark.parametrize("bad", list(BAD_ENCODINGS), ids=list(BAD_ENCODINGS))
def test_bad_encodings_are_refused_with_their_reason(bad):
    point, reason = BAD_ENCODINGS[bad]
    good = ec.hash_to_group([b"alice"], ec.job_dst("j", b"s"))

    with pytest.raises(PSIError, match=rf"point 1 {reason}"):
        ec.check_points(good + [point])


def test_every_listed_small_order_point_is_one():
    # libsodium returns -1 (an all-zero product) exactly for inputs of small order; p − 1 is on the twist.
    k = ec.new_scalar()
    on_curve = ec.SMALL_ORDER - {P - 1}

    assert all(ladder(8, u) is None for u in on_curve)
    for u in ec.SMALL_ORDER:
        with pytest.raises(PSIError, match="point 0 is (the identity|a point of small order)"):
            ec.scalar_mult(k, [ec.encode_u(u)], check=False)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_lengths_are_refused(size):
    with pytest.raises(PSIError, match=rf"point 0 is {size} bytes, not 32"):
        ec.check_points([b"\x01" * size])


def test_scalar_mult_checks_received_points_first():
    k = ec.new_scalar()

    with pytest.raises(PSIError, match="point 1 is the identity"):
        ec.scalar_mult(k, [GENERATOR, ec.IDENTITY])
    with pytest.raises(PSIError, match="point 0 is not on curve25519"):
        ec.scalar_mult(k, [BAD_ENCODINGS["u = 2 (on the twist)"][0]])


def test_a_truncated_packed_batch_is_refused():
    packed = ec.pack_points([GENERATOR, ALICE_PUBLIC])

    assert ec.unpack_points(packed) == [GENERATOR, ALICE_PUBLIC]
    with pytest.raises(PSIError, match="not a whole number"):
        ec.unpack_points(packed[:-1])
    with pytest.raises(PSIError, match="truncated"):
        ec.unpack_ids(ec.pack_ids([b"alice", b"bob"])[:-1])


def test_mult_task_checks_the_points_it_is_sent():
    packed = ec.pack_points([GENERATOR, BAD_ENCODINGS["u = p (non-canonical 0)"][0]])

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
            ec.mult([GENERATOR, ALICE_PUBLIC, GENERATOR, ec.IDENTITY], ec.new_scalar(), engine)
    finally:
        engine.close()


def test_a_scalar_pickles_for_worker_tasks():
    k = ec.new_scalar()

    assert pickle.loads(pickle.dumps(k)) == k
