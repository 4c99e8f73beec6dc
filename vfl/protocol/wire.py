"""The binary frame every protocol message travels in.

::

    b"VFL1" | u32 header length | header (UTF-8 JSON) | blob 0 | blob 1 | ...

The header holds the message kind and every field; each ``bytes`` field
(packed ciphertexts, masked values, key parts) is replaced by
``{"$blob": i}`` and its raw bytes follow the header in order, with their
lengths listed in the header. Ciphertexts therefore cost exactly their
fixed width (512 bytes at 2048 bits), never a decimal or base64 string.

Decoding checks the magic, the lengths and the kind, and validates the fields
with the message's pydantic model; anything malformed raises
:class:`~vfl.errors.ProtocolError` naming what is wrong.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from pydantic import ValidationError

from vfl.errors import ProtocolError
from vfl.protocol.messages import MESSAGE_TYPES, Message

MAGIC = b"VFL1"
MEDIA_TYPE = "application/vnd.vfl.message"
_HEADER_LIMIT = 64 * 1024 * 1024


def encode_message(message: Message) -> bytes:
    blobs: list[bytes] = []

    def lift(value: Any) -> Any:
        if isinstance(value, bytes):
            blobs.append(value)
            return {"$blob": len(blobs) - 1}
        if isinstance(value, dict):
            return {k: lift(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lift(v) for v in value]
        return value

    fields = lift(message.model_dump(mode="python"))
    header = json.dumps(
        {"kind": message.KIND, "fields": fields, "blobs": [len(b) for b in blobs]}, separators=(",", ":")
    ).encode()
    return b"".join([MAGIC, struct.pack(">I", len(header)), header, *blobs])


def decode_message(data: bytes, expected: type[Message] | None = None) -> Message:
    if len(data) < 8 or data[:4] != MAGIC:
        raise ProtocolError("not a vfl message frame (bad magic); the peer speaks another protocol or version")
    (header_len,) = struct.unpack(">I", data[4:8])
    if header_len > _HEADER_LIMIT or 8 + header_len > len(data):
        raise ProtocolError("message frame is truncated (header longer than the body)")
    try:
        header = json.loads(data[8 : 8 + header_len])
        kind, fields, lengths = header["kind"], header["fields"], header["blobs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"message header is not valid: {exc}") from exc
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    if expected is not None and cls is not expected:
        raise ProtocolError(f"expected a {expected.KIND} message, got {kind}")
    if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
        raise ProtocolError("message header lists invalid blob lengths")
    offset = 8 + header_len
    if offset + sum(lengths) != len(data):
        raise ProtocolError(
            f"message body has {len(data) - offset} bytes after the header, the header declares {sum(lengths)}; "
            "it was truncated or padded"
        )
    blobs = []
    for n in lengths:
        blobs.append(data[offset : offset + n])
        offset += n

    def lower(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$blob"}:
                i = value["$blob"]
                if not isinstance(i, int) or not 0 <= i < len(blobs):
                    raise ProtocolError("message refers to a blob it does not carry")
                return blobs[i]
            return {k: lower(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    try:
        return cls.model_validate(lower(fields))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or kind}: {e['msg']}" for e in exc.errors())
        raise ProtocolError(f"invalid {kind} message: {problems}") from exc
