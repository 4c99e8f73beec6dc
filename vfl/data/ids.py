"""The one rule for what counts as the same ID.

IDs are compared as exact text after stripping surrounding whitespace:

* a string is kept as written (``"007"`` stays ``"007"``);
* a Python or numpy integer becomes its decimal string (``7`` → ``"7"``);
* a float that holds a whole number becomes its integer string (``7.0`` → ``"7"``),
  because spreadsheets and pandas turn integer ID columns into floats;
* anything else (None, NaN, other floats, bytes that are not UTF-8, empty or
  whitespace-only strings) is an error naming the position and the fix.

So ``"007"`` and ``7`` are different IDs. If one party zero-pads and the other
does not, normalise the column before loading, e.g. ``df.id.str.zfill(3)``.
CSV files are read as text, so what is in the file is what is compared.

Duplicated IDs are an error too: alignment must map each person to one row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from numbers import Integral

from vfl.errors import DataError

#: The longest ID accepted anywhere (characters): longer ones are refused, not truncated.
MAX_ID_LENGTH = 256


def normalize_id(value: object, *, source: str, position: int) -> str:
    """One ID as its canonical string, or a :class:`DataError` saying why not."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: ID at row {position} is not valid UTF-8 text") from exc
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, bool):
        raise DataError(f"{source}: ID at row {position} is a boolean ({value}); IDs must be text or integers")
    elif isinstance(value, Integral):
        text = str(int(value))
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise DataError(f"{source}: ID at row {position} is missing (NaN); every row needs an ID")
        if not value.is_integer():
            raise DataError(
                f"{source}: ID at row {position} is the non-integer number {value!r}; "
                "store IDs as text or integers"
            )
        text = str(int(value))
    elif value is None:
        raise DataError(f"{source}: ID at row {position} is missing; every row needs an ID")
    else:
        raise DataError(f"{source}: ID at row {position} has unsupported type {type(value).__name__}")
    if not text:
        raise DataError(f"{source}: ID at row {position} is empty; every row needs an ID")
    if len(text) > MAX_ID_LENGTH:
        raise DataError(f"{source}: ID at row {position} has {len(text)} characters; IDs have at most "
                        f"{MAX_ID_LENGTH}")
    return text


def normalize_ids(values: Iterable[object], *, source: str) -> list[str]:
    """All IDs as canonical strings; empty, missing or duplicated IDs are errors."""
    ids = [normalize_id(v, source=source, position=i) for i, v in enumerate(values)]
    if not ids:
        raise DataError(f"{source}: no IDs; the table is empty")
    if len(set(ids)) != len(ids):
        counts = Counter(ids)
        dups = [(v, n) for v, n in counts.items() if n > 1]
        shown = ", ".join(f"{v!r} ×{n}" for v, n in dups[:5])
        raise DataError(
            f"{source}: {len(dups)} duplicated ID(s): {shown}; each ID must appear once. "
            "Drop or merge the duplicate rows"
        )
    return ids
