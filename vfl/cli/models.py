"""``vfl models``: the model registry of a running service: list versions, and at party B promote, roll back, show."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vfl.cli.arguments import add_connection_options, ca_hint, check_ca_file
from vfl.cli.output import print_answer, print_columns, print_json
from vfl.errors import ConfigError

if TYPE_CHECKING:  # imported by run(), so that `vfl --help` does not load httpx
    from vfl.orchestrate import Orchestrator


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("models", help="the model registry: list versions; at party B promote, roll back, show",
                            description="A service's trained model versions (GET /v1/models), and at party B the "
                                        "names that serve them: promote a job under a name, roll a name back to the "
                                        "version it served before, show what a name serves. Every command takes "
                                        "--url, --token and --ca, or $VFL_URL, $VFL_TOKEN and $VFL_CA.")
    models = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = models.add_parser("list", help="every model version at the service, and at party B the names served")
    listing.add_argument("--json", action="store_true", help="print the service's whole answer as JSON")

    promote = models.add_parser("promote", help="party B: serve a succeeded job under a name")
    promote.add_argument("name", help="the model name, e.g. credit-risk")
    promote.add_argument("job_id", help="the succeeded job to serve under it")
    promote.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    rollback = models.add_parser("rollback", help="party B: serve the version a name served before the current one")
    rollback.add_argument("name")
    rollback.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    show = models.add_parser("show", help="party B: the job a name serves, its history and that version")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    for command in (listing, promote, rollback, show):
        add_connection_options(command)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    if not args.url:
        raise ConfigError("give the service's URL with --url (e.g. --url https://bank.example:8702) or set VFL_URL")
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {args.url!r}: give a base URL starting with https:// (or http://)")
    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token "
                          "(for the demo layout, the file party-b/token)")
    check_ca_file(args.ca)
    with ca_hint(args.url, args.ca), Orchestrator(args.url, args.token,
                                                  verify=str(args.ca) if args.ca else True) as service:
        return ACTIONS[args.action](args, service)


def _history(answer: dict[str, Any]) -> str:
    earlier = answer.get("history") or []
    return f"; before it: {', '.join(earlier)}" if earlier else "; no earlier version"


def _list(args: argparse.Namespace, service: Orchestrator) -> int:
    answer = service.models()
    if args.json:
        print_json(answer)
        return 0
    versions = answer.get("models") or []
    if not versions:
        print(f"no trained model at {service.url} (a succeeded job has one)")
    else:
        rows = [("JOB", "MODEL", "DATASET", "TRAINED", "AUC", "NAMES")]
        for entry in versions:
            validation = ((entry.get("metrics") or {}).get("validation") or (entry.get("metrics") or {}).get("train")
                          or {})
            auc = validation.get("auc")
            rows.append((entry["job_id"], str(entry.get("model") or ("unreadable: " + str(entry.get("error")))),
                         str(entry.get("dataset") or ""), str(entry.get("trained_at") or ""),
                         f"{auc:.4f}" if isinstance(auc, float) else "", ", ".join(entry.get("names") or [])))
        print_columns(rows)
    served = answer.get("served")
    if served:
        print()
        rows = [("NAME", "SERVES", "EARLIER VERSIONS (oldest first)")]
        rows += [(name, entry["job_id"], ", ".join(entry.get("history") or []) or "-") for name, entry in served.items()]
        print_columns(rows)
    return 0


def _promote(args: argparse.Namespace, service: Orchestrator) -> int:
    answer = service.promote(args.name, args.job_id)
    print_answer(answer, f"model {answer['name']} now serves job {answer['job_id']}{_history(answer)}",
                 as_json=args.json)
    return 0


def _rollback(args: argparse.Namespace, service: Orchestrator) -> int:
    answer = service.rollback(args.name)
    print_answer(answer, f"model {answer['name']} rolled back: it serves job {answer['job_id']}{_history(answer)}",
                 as_json=args.json)
    return 0


def _show(args: argparse.Namespace, service: Orchestrator) -> int:
    answer = service.served_model(args.name)
    if args.json:
        print_json(answer)
        return 0
    version = answer.get("model") or {}
    print(f"model {answer['name']} serves job {answer['job_id']}{_history(answer)}")
    for label in ("model", "dataset", "trained_at", "vfl_version"):
        if version.get(label) is not None:
            print(f"{label:12s}{version[label]}")
    roster = version.get("roster") or {}
    if roster:
        print(f"{'parties':12s}label {roster.get('label')}, features {', '.join(roster.get('features') or [])}, "
              f"arbiter {roster.get('arbiter')}")
    return 0


#: what each ``vfl models ACTION`` does, given the parsed arguments and a connected client
ACTIONS: dict[str, Callable[[argparse.Namespace, Orchestrator], int]] = {
    "list": _list, "promote": _promote, "rollback": _rollback, "show": _show,
}
