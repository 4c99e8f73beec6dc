import numpy as np
import pytest

from vfl.crypto.vector import Encryptor
from vfl.errors import ProtocolError
from vfl.protocol.messages import CipherVector, EncryptedForward, EpochDecision, KeyRequest
from vfl.protocol.wire import decode_message, encode_message


@pytest.fixture
def forward(public_key):
    enc = Encryptor(public_key).encrypt(np.arange(4.0), 32)
    return EncryptedForward(job_id="job-1", epoch=2, batch=1, enc_u_a=CipherVector.from_vector(enc))


def test_round_trip_is_exact_and_compact(forward, public_key):
    frame = encode_message(forward)

    assert decode_message(frame) == forward
    # Ciphertexts travel as raw fixed-width bytes: the frame is barely larger than them.
    assert len(frame) < 4 * public_key.ciphertext_bytes + 400


def test_messages_without_blobs_round_trip():
    decision = EpochDecision(job_id="j", epoch=0, batch=-1, train_loss=None, validation_loss=0.5,
                             stop=False, reason=None, improved=True, best_epoch=0)

    assert decode_message(encode_message(decision)) == decision


@pytest.mark.parametrize(
    "mangle, problem",
    [
        (lambda f: b"XXXX" + f[4:], "bad magic"),
        (lambda f: f[:-10], "truncated or padded"),
        (lambda f: f + b"\0", "truncated or padded"),
        (lambda f: f[:8] + b"[" + f[9:], "header is not valid"),
        (lambda f: f[:6], "bad magic|truncated"),
    ],
    ids=["magic", "truncated", "padded", "garbled-header", "tiny"],
)
def test_malformed_frames_raise_protocol_errors(forward, mangle, problem):
    with pytest.raises(ProtocolError, match=problem):
        decode_message(mangle(encode_message(forward)))


def test_expected_kind_is_enforced(forward):
    with pytest.raises(ProtocolError, match="expected a key_request"):
        decode_message(encode_message(forward), expected=KeyRequest)


def test_field_validation_errors_are_readable():
    frame = encode_message(KeyRequest(job_id="j", party="A", n_params=3, model="logistic", key_bits=1024, config_digest="x")).replace(b'"n_params":3', b'"n_params":0')

    with pytest.raises(ProtocolError, match="n_params"):
        decode_message(frame)
