"""Write a generated document, or check that the committed copy is current (the scripts that write docs share it)."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(out: Path, text: str, *, check: bool, command: str) -> int:
    """Write ``text`` to ``out``; with ``check``, compare instead and return 1 (with a diff) if it is stale."""
    if check:
        current = out.read_text() if out.is_file() else ""
        if current == text:
            print(f"{out} is up to date")
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(out),
                                                   "generated"))
        print(f"\n{out} is out of date: run {command}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None, *, doc: str, render: Callable[[], str], out: Path, command: str) -> int:
    """The command line every generator shares: ``--check`` compares, ``--out`` writes elsewhere."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"compare with {out.name}; exit 1 if it is stale")
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    return write_or_check(args.out, render(), check=args.check, command=command)
