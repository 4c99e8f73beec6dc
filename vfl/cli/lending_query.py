"""``vfl lending-query``: ask every lender of the federation about applicants without revealing them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vfl.cli.arguments import add_connection_options, check_ca_file, read_ids_file
from vfl.cli.output import print_columns, print_json
from vfl.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("lending-query",
                            help="ask every lender of the federation whether it lends to applicants, "
                                 "without revealing them (POST /v1/lending-query at your service)")
    p.add_argument("--ids", nargs="+", default=[], metavar="ID", help="the applicants' IDs")
    p.add_argument("--ids-file", type=Path, default=None, help="more IDs, one per line")
    p.add_argument("--count", action="store_true",
                   help="answer only how many lenders hold each ID, not which (computed at your service)")
    p.add_argument("--lenders", default=None, help="comma-separated: ask only these of the configured lenders")
    p.add_argument("--json", action="store_true", help="print the service's whole answer as JSON")
    add_connection_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    ids = list(args.ids)
    if args.ids_file is not None:
        ids += read_ids_file(args.ids_file)
    if not ids:
        raise ConfigError("give the applicants' IDs with --ids ID [ID ...] or --ids-file")
    if not args.url or not args.url.startswith(("http://", "https://")):
        raise ConfigError("give your service's URL with --url https://bank.example:8702 (or set VFL_URL)")
    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token")
    check_ca_file(args.ca)
    lenders = [name.strip() for name in args.lenders.split(",") if name.strip()] if args.lenders else None
    with Orchestrator(args.url, args.token, verify=str(args.ca) if args.ca else True, timeout=300) as service:
        answer = service.lending_query(ids, "count" if args.count else "lenders", lenders)
    if args.json:
        print_json(answer)
        return 0
    rows = [("ID", "LENDERS" if args.count else "FOUND AT")]
    rows += [(str(item["id"]), str(item["count"]) if args.count else (", ".join(item["found_at"]) or "-"))
             for item in answer["results"]]
    print_columns(rows)
    print(f"asked {', '.join(answer['lenders'])} in {answer['seconds'] * 1000:.0f} ms", file=sys.stderr)
    return 0
