"""How the vfl commands print: a service's answer as JSON on request, otherwise a line or aligned columns."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def print_json(value: object) -> None:
    """The whole value, indented: what ``--json`` prints."""
    print(json.dumps(value, indent=2))


def print_answer(answer: object, line: str, *, as_json: bool, note: str | None = None) -> None:
    """A service's answer: all of it as JSON (--json), or one line for people, then ``note`` on stderr.

    The note goes to stderr so that stdout holds only the line a script may capture.
    """
    if as_json:
        print_json(answer)
        return
    print(line)
    if note is not None:
        print(note, file=sys.stderr)


def print_columns(rows: Sequence[Sequence[object]]) -> None:
    """Rows (the header first) as left-aligned columns two spaces apart, without trailing spaces."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip())
