"""``vfl models``: the model registry of a running service: list versions, and at party B promote, roll back, show,
delete."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vfl.cli.arguments import add_connection_options, ca_hint, check_ca_file
from vfl.cli.output import print_answer, print_columns, print_json
from vfl.errors import ConfigError, PeerRefused

if TYPE_CHECKING:  # imported by run(), so that `vfl --help` does not load httpx
    from vfl.orchestrate import Orchestrator


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("models", help="the model registry: list versions; at party B promote, roll back, show, "
                                           "delete",
                            description="A service's trained model versions (GET /v1/models), and at party B the "
                                        "names that serve them: promote a job under a name, roll a name back to the "
                                        "version it served before, show what a name serves, delete a version (a "
                                        "job) at every party. Every command takes "
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

    delete = models.add_parser("delete", help="party B: delete a finished job (a model version) at every party",
                               description="Delete a finished job at every party (DELETE /v1/jobs/JOB_ID), with its "
                                           "class trainings if it is a multi-class job. Refused while a model name "
                                           "serves the job: promote another version under that name or roll it back "
                                           "first. Give the job id, not a model name.")
    delete.add_argument("job_id", help="the job to delete (vfl models list shows them)")
    delete.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    for command in (listing, promote, rollback, show, delete):
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


def _delete(args: argparse.Namespace, service: Orchestrator) -> int:
    try:
        answer = service.delete(args.job_id)
    except PeerRefused as exc:
        raise _refusal_in_cli_words(exc, args.job_id, service) from exc
    line = f"deleted job {answer['job_id']} at {', '.join(answer.get('deleted') or [])}"
    left = [c for c in answer.get("class_trainings") or [] if c.get("status") != "deleted"]
    for training in answer.get("class_trainings") or []:
        line += f"\n  class training {training['job_id']}: {training.get('status')}"
        if training.get("status") != "deleted":
            line += f" ({training.get('detail') or training.get('pending')})"
    note = None
    if left:
        note = (f"vfl models delete: {len(left)} class training(s) of {answer['job_id']} not deleted yet; run "
                + "; ".join(f"vfl models delete {c['job_id']}" for c in left) + " again")
    print_answer(answer, line, as_json=args.json, note=note)
    return 1 if left else 0


def _served_names(service: Orchestrator) -> dict[str, Any]:
    """Party B's names and what each serves, or nothing when the registry cannot be read (the refusal stands)."""
    try:
        return dict(service.models().get("served") or {})
    except PeerRefused:
        return {}


def _refusal_in_cli_words(exc: PeerRefused, job_id: str, service: Orchestrator) -> PeerRefused:
    """The service's refusal, with the fix in vfl commands where the REST answer names REST routes."""
    if exc.error == "ModelServed":
        names = sorted(name for name, entry in _served_names(service).items() if entry.get("job_id") == job_id)
        if names:
            shown = ", ".join(repr(n) for n in names)
            return PeerRefused(f"DELETE /v1/jobs/{job_id}: job {job_id} is the version model {shown} serves; promote "
                               f"another version (vfl models promote {names[0]} JOB_ID) or roll back (vfl models "
                               f"rollback {names[0]}) first, then delete it", exc.status, exc.error)
    elif exc.error == "UnknownJobError":
        entry = _served_names(service).get(job_id)
        if entry is not None:
            return PeerRefused(f"{exc}; {job_id!r} is a model name, not a job: give the id of the version to delete "
                               f"(vfl models list shows them). The name serves job {entry['job_id']}, which cannot "
                               f"be deleted while served: promote another version (vfl models promote {job_id} "
                               f"JOB_ID) or roll back (vfl models rollback {job_id}) first", exc.status, exc.error)
    elif exc.status == 405:
        return PeerRefused(f"{exc}; delete at party B, which deletes the job at every party", exc.status, exc.error)
    return exc


#: what each ``vfl models ACTION`` does, given the parsed arguments and a connected client
ACTIONS: dict[str, Callable[[argparse.Namespace, Orchestrator], int]] = {
    "list": _list, "promote": _promote, "rollback": _rollback, "show": _show, "delete": _delete,
}
