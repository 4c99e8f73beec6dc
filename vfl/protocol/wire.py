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
:class:`~vfl.errors.ProtocolError` naming what is wrong (a service answers
400). The header is capped at :data:`HEADER_LIMIT` bytes and
:data:`MAX_HEADER_DEPTH` levels of nesting: a real header nests four deep,
and a frame of ``[[[[...`` would otherwise exhaust the recursion limit of the
JSON parser and of the code after it.
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
#: Largest header accepted. Headers carry ID lists and partial scores as JSON (up to a million
#: entries, some 20 MB); blobs travel after the header and do not count.
HEADER_LIMIT = 64 * 1024 * 1024
#: Deepest nesting of lists and objects accepted in a header (real ones nest at most four deep).
MAX_HEADER_DEPTH = 32


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
    if header_len > HEADER_LIMIT:
        raise ProtocolError(f"message header declares {header_len} bytes, more than the {HEADER_LIMIT} accepted")
    if 8 + header_len > len(data):
        raise ProtocolError("message frame is truncated (header longer than the body)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except RecursionError as exc:  # nested deeper than the parser's recursion limit
        raise ProtocolError(f"message header nests deeper than {MAX_HEADER_DEPTH} levels") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise ProtocolError(f"message header is not valid: {exc}") from exc
    if _depth_exceeds(header, MAX_HEADER_DEPTH):
        raise ProtocolError(f"message header nests deeper than {MAX_HEADER_DEPTH} levels")
    try:
        kind, fields, lengths = header["kind"], header["fields"], header["blobs"]
    except (KeyError, TypeError, IndexError) as exc:
        raise ProtocolError(f"message header is not valid: it needs kind, fields and blobs ({exc!r})") from exc
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


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep.

    Iterative, so that checking a hostile header cannot itself run out of stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
