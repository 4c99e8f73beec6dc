import numpy as np
import pytest

from vfl.crypto.encoding import decode, encode, operand_limit
from vfl.errors import EncodingError, EncodingOverflow


def test_round_trip_positive_negative_and_zero(public_key):
    values = np.array([0.0, 1.5, -1.5, 123.456, -0.000001, 2.0**-20])

    decoded = decode(encode(values, 24, public_key.n), 24, public_key.n)

    assert np.allclose(decoded, values, atol=2.0**-25)


def test_negative_numbers_are_residues_mod_n(public_key):
    (residue,) = encode(np.array([-1.0]), 0, public_key.n)

    assert residue == public_key.n - 1


def test_rounding_error_is_at_most_half_a_unit(public_key, rng):
    values = rng.normal(size=1000) * 10
    k = 10

    decoded = decode(encode(values, k, public_key.n), k, public_key.n)

    assert np.max(np.abs(decoded - values)) <= 2.0 ** -(k + 1)


def test_nan_and_infinity_are_refused_with_position(public_key):
    with pytest.raises(EncodingError, match=r"value\[2\]"):
        encode(np.array([1.0, 2.0, np.nan]), 16, public_key.n)
    with pytest.raises(EncodingError):
        encode(np.array([np.inf]), 16, public_key.n)


def test_operand_beyond_headroom_is_refused(public_key):
    too_big = float(operand_limit(public_key.n)) * 2

    with pytest.raises(EncodingOverflow, match="too large"):
        encode(np.array([too_big]), 0, public_key.n)


def test_residue_in_the_overflow_band_raises_instead_of_wrapping(public_key):
    middle = public_key.n // 2  # neither a small positive nor a small negative number

    with pytest.raises(EncodingOverflow, match="overflow band"):
        decode([middle], 0, public_key.n)
