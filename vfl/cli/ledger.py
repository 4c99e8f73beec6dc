"""``vfl ledger``: verify or show a copy of the federation's co-signed, hash-chained job ledger."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vfl.cli.output import print_json
from vfl.errors import ConfigError
from vfl.report.contributions import show_entry


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("ledger", help="verify or show a copy of the co-signed, hash-chained job ledger")
    actions = p.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="check the chain and every signature against the CA; exit 1 on any "
                                               "break, naming the entry and the field")
    verify.add_argument("dir", type=Path, help="a ledger copy: the folder holding ledger.jsonl (and ca.pem)")
    verify.add_argument("--ca", type=Path, default=None,
                        help="the federation's CA certificate (default: DIR/ca.pem, the copy kept beside the ledger)")
    verify.add_argument("--against", type=Path, action="append", default=[], metavar="OTHER_DIR",
                        help="another party's copy: report where the two disagree (a dropped last entry shows here)")
    verify.add_argument("--model", action="append", default=[], metavar="PARTY=model.json",
                        help="check that a party's model file is the one it signed for (its job's entry)")
    verify.set_defaults(run=run_verify)
    show = actions.add_parser("show", help="print the entries readably")
    show.add_argument("dir", type=Path, help="a ledger copy: the folder holding ledger.jsonl")
    show.add_argument("--json", action="store_true", help="print the entries as a JSON list")
    show.set_defaults(run=run_show)


def run_verify(args: argparse.Namespace) -> int:
    from vfl.incentives import chain

    entries, problems = chain.verify_folder(args.dir, args.ca)
    for other in args.against:
        theirs, their_problems = chain.verify_folder(other, args.ca)
        problems += [chain.Problem(p.entry, p.job_id, p.field, f"in {other}: {p.message}") for p in their_problems]
        problems += chain.copies_differ(entries, theirs, str(other))
    for item in args.model:
        party, sep, path = item.partition("=")
        if not sep or not party or not path:
            raise ConfigError(f"--model {item!r}: give PARTY=path/to/model.json")
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--model {path}: cannot read a model file ({exc})") from exc
        problems += chain.model_problems(entries, party, document, path)
    for problem in problems:
        print(problem)
    ca = args.ca or args.dir / chain.CA_FILE
    if problems:
        print(f"{args.dir}: {len(entries)} entries, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    signatures = sum(len(e.get("signatures") or []) for e in entries)
    print(f"{args.dir}: {len(entries)} entries, chain intact, {signatures} signatures verified against {ca}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from vfl.incentives import chain

    entries = chain.Ledger(args.dir).entries()
    if args.json:
        print_json(entries)
        return 0
    if not entries:
        print(f"{args.dir}: no entries")
    for entry in entries:
        print(show_entry(entry))
    return 0
