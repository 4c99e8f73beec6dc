import struct

import numpy as np
import pytest

from vfl.crypto.vector import Encryptor
from vfl.errors import ProtocolError
from vfl.protocol.messages import CipherVector, EncryptedForward, EpochDecision, KeyRequest
from vfl.protocol.wire import HEADER_LIMIT, MAGIC, MAX_HEADER_DEPTH, decode_message, encode_message


@pytest.fixture
def forward(public_key):
    enc = Encryptor(public_key).encrypt(np.arange(4.0), 32)
    return EncryptedForward(job_id="job-1", epoch=2, batch=1, party="A", enc_u=CipherVector.from_vector(enc))


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


def frame_with_header(header: bytes, tail: bytes = b"") -> bytes:
    """A frame around a hand-written header, as a hostile peer could send it."""
    return MAGIC + struct.pack(">I", len(header)) + header + tail


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 100_000 + b"]" * 100_000,  # beyond the JSON parser's recursion limit
        b'{"kind":"epoch_decision","fields":{"job_id":"j","x":' + b"[" * 200 + b"]" * 200 + b'},"blobs":[]}',
        b'{"kind":"epoch_decision","fields":' + b'{"a":' * 40 + b"1" + b"}" * 40 + b',"blobs":[]}',
    ],
    ids=["beyond-parser-limit", "nested-lists-in-fields", "nested-objects-in-fields"],
)
def test_deeply_nested_headers_are_protocol_errors(header):
    with pytest.raises(ProtocolError, match=f"nests deeper than {MAX_HEADER_DEPTH} levels"):
        decode_message(frame_with_header(header))


def test_nesting_up_to_the_cap_is_judged_by_the_message_model_instead():
    # The header object and 30 levels of "fields": 31, within the cap, so the depth check lets it
    # through and the message model refuses the unknown field, as for any other bad field.
    header = b'{"kind":"epoch_decision","fields":' + b'{"a":' * 30 + b"1" + b"}" * 30 + b',"blobs":[]}'

    with pytest.raises(ProtocolError, match="invalid epoch_decision message"):
        decode_message(frame_with_header(header))


@pytest.mark.parametrize(
    "header, problem",
    [
        (b'["kind", "fields", "blobs"]', "needs kind, fields and blobs"),
        (b'"just a string"', "needs kind, fields and blobs"),
        (b'{"kind":"epoch_decision","blobs":[]}', "needs kind, fields and blobs"),
        (b'{"kind":"epoch_decision","fields":{"epoch":1' + b"0" * 5000 + b'},"blobs":[]}', "header is not valid"),
        (b'\xff\xfe\x00\xd8', "header is not valid"),
    ],
    ids=["list", "string", "no-fields", "huge-integer", "not-utf8"],
)
def test_headers_of_the_wrong_shape_are_protocol_errors(header, problem):
    with pytest.raises(ProtocolError, match=problem):
        decode_message(frame_with_header(header))


def test_a_header_length_above_the_limit_is_refused_before_reading_it():
    frame = MAGIC + struct.pack(">I", HEADER_LIMIT + 1) + b"{}"

    with pytest.raises(ProtocolError, match=f"more than the {HEADER_LIMIT} accepted"):
        decode_message(frame)
