#!/usr/bin/env python3
"""The generated parts of docs/rest-api.md: every route each role serves, and every `vfl` command's help.

    python scripts/api_reference_doc.py rest     # print the route table (Markdown)
    python scripts/api_reference_doc.py cli      # print every command's --help

`mkdocs build` runs scripts/docs_hooks.py, which puts these where docs/rest-api.md has the markers
``<!-- rest: generated -->`` and ``<!-- cli: generated -->``: the routes come from
``vfl.service.http.app.ROUTERS`` (what each role's app mounts) and the help from ``vfl.cli.build_parser``,
so the reference is this version's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REST_MARKER = "<!-- rest: generated -->"
CLI_MARKER = "<!-- cli: generated -->"
ROLE_NAMES = {"label": "B", "feature": "A", "arbiter": "C"}


def render_rest() -> str:
    from vfl.service.http.app import ROUTERS

    routes: dict[tuple[str, str], dict] = {}
    for kind, routers in ROUTERS.items():
        for router in routers:
            for route in router.routes:
                methods = sorted(getattr(route, "methods", None) or [])
                for method in methods:
                    if method == "HEAD":
                        continue
                    entry = routes.setdefault((route.path, method), {"roles": [], "summary": ""})
                    if ROLE_NAMES[kind] not in entry["roles"]:
                        entry["roles"].append(ROLE_NAMES[kind])
                    summary = getattr(route, "summary", None) or (route.endpoint.__doc__ or "").strip().split("\n")[0]
                    entry["summary"] = entry["summary"] or summary
    def order(key: tuple[str, str]) -> tuple:
        path, method = key
        return (path.startswith("/v1/peer/"), path.startswith("/ui"), path, method)

    lines = ["| method | path | served by | what |", "|---|---|---|---|"]
    for path, method in sorted(routes, key=order):
        entry = routes[(path, method)]
        roles = ", ".join(r for r in ("B", "A", "C") if r in entry["roles"])
        summary = entry["summary"].replace("|", "\\|") or "—"
        lines.append(f"| `{method}` | `{path}` | {roles} | {summary} |")
    return "\n".join(lines) + "\n"


def _help(parser: argparse.ArgumentParser) -> str:
    return parser.format_help().rstrip("\n")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render_cli() -> str:
    from vfl.cli import build_parser

    os.environ["COLUMNS"] = "110"  # the same wrapping on every machine
    parser = build_parser()
    out = ["### `vfl`", "", "```text", _help(parser), "```", ""]
    for name, command in _subparsers(parser).items():
        out += [f"### `vfl {name}`", "", "```text", _help(command), "```", ""]
        for action, sub in _subparsers(command).items():
            out += [f"#### `vfl {name} {action}`", "", "```text", _help(sub), "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("rest", "cli"))
    args = parser.parse_args(argv)
    sys.stdout.write(render_rest() if args.part == "rest" else render_cli())
    return 0


if __name__ == "__main__":
    sys.exit(main())
