"""Packing many fixed-point values into one ciphertext: exact round trips, and refusals of a bad packing."""

import numpy as np
import pytest

from tests.conftest import TEST_KEY_BITS
from vfl.crypto.encoding import decode
from vfl.crypto.packing import Layout, pack, unpack
from vfl.crypto.vector import Encryptor, decrypt_residues
from vfl.errors import CiphertextError


@pytest.mark.parametrize("count", [1, 13, 14, 15, 100])
def test_packed_values_decode_exactly_negatives_included(keypair, rng, count):
    public, private = keypair
    values = rng.normal(scale=50, size=count)
    values[0] = -(2.0**30)  # far below zero: a residue n − |x| packs without borrowing
    enc = Encryptor(public).encrypt(values, 32)
    layout = Layout.for_key(public.bits, 32)

    packed = pack(public, enc.ciphertexts, layout)

    assert len(packed) == layout.ciphertexts_for(count) == -(-count // 14)
    residues = unpack(decrypt_residues(private, packed), count, layout, public.n)
    assert np.array_equal(decode(residues, 32, public.n), decode(decrypt_residues(private, enc.ciphertexts), 32, public.n))


def test_packing_on_several_workers_gives_the_same_ciphertext_plaintexts(keypair, rng):
    from vfl.compute.engine import make_engine

    public, private = keypair
    enc = Encryptor(public).encrypt(rng.normal(size=14 * 70 + 3), 32)
    layout = Layout.for_key(public.bits, 32)
    engine = make_engine("local", workers=2)
    try:
        parallel = pack(public, enc.ciphertexts, layout, engine)
    finally:
        engine.close()

    serial = pack(public, enc.ciphertexts, layout)
    assert decrypt_residues(private, parallel) == decrypt_residues(private, serial)


def test_unpacking_refuses_a_wrong_count_and_a_slot_beyond_the_values(keypair):
    public, private = keypair
    layout = Layout.for_key(TEST_KEY_BITS, 32)
    enc = Encryptor(public).encrypt(np.arange(5.0), 32)
    residues = decrypt_residues(private, pack(public, enc.ciphertexts, layout))

    with pytest.raises(CiphertextError, match="5 packed values take 1 ciphertexts, not 2"):
        unpack(residues + residues, 5, layout, public.n)
    with pytest.raises(CiphertextError, match="more than its slots"):
        unpack(residues, 4, layout, public.n)  # the fifth value is left in the ciphertext
