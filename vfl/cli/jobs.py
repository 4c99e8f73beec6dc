"""``vfl jobs``: submit, list, follow, cancel, resume and use jobs on a running service, through its REST API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfl.cli.arguments import add_connection_options, ca_hint, check_ca_file, read_ids_file
from vfl.cli.output import print_answer, print_columns, print_json
from vfl.errors import ConfigError, JobError, PeerRefused
from vfl.report.contributions import text_table
from vfl.report.progress import ProgressLine, timing_text, waiting_text

if TYPE_CHECKING:  # imported by run(), so that `vfl --help` does not load httpx
    from vfl.orchestrate import Orchestrator


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("jobs", help="submit, list, follow, cancel, resume and use jobs on a running service",
                            description="Orchestrate jobs through a service's REST API (party B for submit, resume, "
                                        "predict and report; list, status and cancel work at every service). Every "
                                        "command takes --url, --token and --ca, or $VFL_URL, $VFL_TOKEN and $VFL_CA.")
    jobs = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    submit = jobs.add_parser("submit", help="submit a job spec to party B; prints the job id")
    submit.add_argument("spec", type=Path, help="the job spec (JSON), e.g. the job.json vfl demo --prepare-only writes")
    submit.add_argument("--job-id", default=None, help="use this job id instead of the spec's (or a new one)")
    submit.add_argument("--idempotency-key", default=None, metavar="KEY",
                        help="sent as the Idempotency-Key header, so that a submit retried with the same key "
                             "is recognised rather than started twice")
    submit.add_argument("--watch", action="store_true", help="then follow the job until it ends, as `vfl jobs watch`")
    submit.add_argument("--interval", type=float, default=1.0, help="--watch: seconds between polls")
    submit.add_argument("--json", action="store_true", help="print the service's whole answer as JSON")

    listing = jobs.add_parser("list", help="every job the service knows: id, state, stage, epoch")
    listing.add_argument("--json", action="store_true", help="print the whole records as JSON")

    status = jobs.add_parser("status", help="one job's state, stage, epoch, loss, metrics and error")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print the whole record as JSON")

    for name, text in (("cancel", "cancel a job at every party"),
                       ("resume", "party B: continue a running or failed job from its last common checkpoint")):
        action = jobs.add_parser(name, help=text)
        action.add_argument("job_id")
        action.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    predict = jobs.add_parser("predict", help="party B: federated scores for IDs with a trained job")
    predict.add_argument("job_id")
    predict.add_argument("ids", nargs="*", metavar="ID", help="customer IDs to score")
    predict.add_argument("--ids-file", type=Path, default=None,
                         help="more IDs, one per line (for thousands of IDs use `vfl score`)")
    predict.add_argument("--features", type=Path, default=None,
                         help="JSON file {ID: {column: value}}: party B's own features for applicants it has "
                              "not stored")
    predict.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    report = jobs.add_parser("report", help="party B: save a finished job's HTML report")
    report.add_argument("job_id")
    report.add_argument("--out", type=Path, required=True, help="where to write the HTML ('-': standard output)")

    document = jobs.add_parser("model-document",
                               help="party B: write a scorecard job's model document (SR 11-7 shape) from its record")
    document.add_argument("job_id")
    document.add_argument("--out", type=Path, required=True,
                          help="where to write it: Markdown, or HTML when the name ends in .html ('-': standard "
                               "output, Markdown)")
    add_connection_options(document)

    stability = jobs.add_parser(
        "stability", help="a served scorecard job's stability at this party: the score's PSI (party B) and each of "
                          "its own characteristics' CSI, with the 0.1/0.25 bands",
        description="A scorecard job's stability at the service asked, on the applicants it has served (predictions "
                    "and batches; the job's own evaluation is not serving): party B's score PSI against the "
                    "training score bands, and each of that party's own characteristics' CSI. Each party reports "
                    "only its own characteristics: ask each feature party for its CSI. Status: stable below 0.1, "
                    "watch from 0.1, alarm from 0.25.")
    stability.add_argument("job_id")
    stability.add_argument("--json", action="store_true", help="print the service's answer as JSON")
    add_connection_options(stability)

    watch = jobs.add_parser("watch", help="show a job's progress live until it ends",
                            usage="vfl jobs watch [--url URL] [--token TOKEN] [--ca CA] [--interval S] [URL] JOB_ID")
    watch.add_argument("target", nargs="+", metavar="JOB_ID",
                       help="the job id; the older form `vfl jobs watch URL JOB_ID` also works")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    for command in (submit, listing, status, *(jobs.choices[n] for n in ("cancel", "resume")), predict, report, watch):
        add_connection_options(command)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    if args.action == "watch":
        if len(args.target) > 2:
            raise ConfigError(f"vfl jobs watch takes one job id (or URL JOB_ID), not {len(args.target)} arguments")
        if len(args.target) == 2:
            args.url = args.target[0]
        args.job_id = args.target[-1]
    if not args.url:
        raise ConfigError("give the service's URL with --url (e.g. --url https://bank.example:8702) or set VFL_URL")
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {args.url!r}: give a base URL starting with https:// (or http://)")
    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token "
                          "(for the demo layout, the file party-b/token)")
    check_ca_file(args.ca)
    action = ACTIONS[args.action]
    with ca_hint(args.url, args.ca), Orchestrator(args.url, args.token,
                                                  verify=str(args.ca) if args.ca else True) as service:
        return action(args, service)


def _submit(args: argparse.Namespace, service: Orchestrator) -> int:
    spec = _read_spec(args.spec)
    if args.job_id:
        spec["job_id"] = args.job_id
    answer, replayed = service.submit_or_replay(spec, idempotency_key=args.idempotency_key)
    state = answer.get("state", "pending")
    note = (f"already submitted under this key: {answer['job_id']} ({state}) at {service.url}" if replayed
            else f"submitted job {answer['job_id']} ({state}) at {service.url}")
    print_answer(answer, answer["job_id"], as_json=args.json, note=note)
    if args.watch:
        args.job_id = answer["job_id"]
        return _watch(args, service, show_metrics=not args.json)
    return 0


def _read_spec(path: Path) -> dict[str, Any]:
    """A job spec from a JSON file, or from standard input for ``-``."""
    try:
        spec = json.loads(sys.stdin.read() if str(path) == "-" else path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job spec ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: the job spec is not valid JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a job spec is a JSON object, not {type(spec).__name__}")
    return spec


def _list(args: argparse.Namespace, service: Orchestrator) -> int:
    jobs = sorted(service.jobs(), key=lambda j: j.get("created_at") or 0)
    if args.json:
        print_json(jobs)
        return 0
    if not jobs:
        print(f"no jobs at {service.url}", file=sys.stderr)
        return 0
    rows = [("JOB", "STATE", "STAGE", "EPOCH", "CREATED")]
    rows += [(j["job_id"], j.get("state", ""), j.get("stage", ""), f"{j.get('epoch', 0)}/{j.get('max_epochs') or '?'}",
              _when(j.get("created_at"))) for j in jobs]
    print_columns(rows)
    return 0


def _when(seconds: object) -> str:
    """A timestamp as local "YYYY-MM-DD HH:MM", or "" when there is none."""
    if not isinstance(seconds, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _status(args: argparse.Namespace, service: Orchestrator) -> int:
    record = service.status(args.job_id)
    if args.json:
        print_json(record)
        return 0
    stopped = f", stopped: {record['stop_reason']}" if record.get("stop_reason") else ""
    lines = [("job", record["job_id"]), ("state", f"{record['state']} ({record.get('stage')}){stopped}"),
             ("epoch", f"{record.get('epoch', 0)}/{record.get('max_epochs') or '?'}")]
    progress = record.get("progress") or {}
    if progress.get("text"):
        lines.append(("progress", f"{100 * float(progress.get('fraction') or 0):.0f}%: {progress['text']}"))
    # At once, not after peer_timeout: the peers this service's calls are retrying now.
    lines += [("waiting", waiting_text(w)) for w in record.get("waiting_for") or []]
    if record.get("loss_history"):
        lines.append(("loss", f"{record['loss_history'][-1]:.6f}"))
    if (record.get("alignment") or {}).get("intersection") is not None:
        lines.append(("aligned", f"{record['alignment']['intersection']} rows"))
    for split, values in (record.get("metrics") or {}).items():
        if isinstance(values, dict):
            lines.append((split, _metric_line(values)))
            # A multi-class (one-vs-rest) job: each class's AUC (against the rest), precision and recall.
            lines += [(f"  class {name}", _metric_line(per)) for name, per in (values.get("per_class") or {}).items()
                      if isinstance(per, dict)]
    if record.get("multiclass"):
        lines.append(("classes", f"one-vs-rest over {len(record['multiclass'].get('classes') or [])} classes, trained "
                                 f"by {', '.join(record['multiclass'].get('jobs') or [])}"))
    ledger = record.get("ledger") or {}
    if ledger.get("entry") is not None:
        verified = "every signature verified" if ledger.get("signatures_verified") else "signatures NOT all verified"
        lines.append(("ledger", f"entry {ledger['entry']} ({str(ledger.get('digest'))[:16]}…), signed by "
                                f"{', '.join(ledger.get('signed_by') or [])}: {verified}"))
    elif ledger:
        lines.append(("ledger", f"no entry: {ledger.get('reason') or '; '.join(ledger.get('problems') or [])}"))
    # Where the time went, at every party (party B lists the others' once the job has ended).
    lines += [(f"time {entry.get('role')}", f"{entry.get('party')}: {timing_text(entry)}")
              for entry in record.get("party_timings") or []]
    if record.get("error"):
        lines.append(("error", record["error"]))
    lines += [("warning", text) for text in record.get("warnings") or []]  # the data: ID formats, label leakage
    for label, value in lines:
        print(f"{label:11s}{value}")
    if record.get("contributions"):
        print(text_table(record["contributions"]))
    return 0


def _metric_line(metrics: dict[str, Any]) -> str:
    """A split's metrics on one line: "auc 0.8803  ks 0.6484 ..."."""
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _cancel(args: argparse.Namespace, service: Orchestrator) -> int:
    record = service.cancel(args.job_id)
    print_answer(record, f"job {record['job_id']}: {record['state']}", as_json=args.json)
    return 0


def _resume(args: argparse.Namespace, service: Orchestrator) -> int:
    record = service.resume(args.job_id)
    print_answer(record, f"job {record['job_id']}: resuming ({record['state']}, epoch {record.get('epoch', 0)})",
                 as_json=args.json)
    return 0


def _predict(args: argparse.Namespace, service: Orchestrator) -> int:
    ids = list(args.ids)
    if args.ids_file is not None:
        ids += read_ids_file(args.ids_file)
    features = None
    if args.features is not None:
        try:
            features = json.loads(args.features.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--features {args.features}: cannot read it as JSON ({exc})") from exc
        if not isinstance(features, dict):
            raise ConfigError(f"--features {args.features}: expected a JSON object {{ID: {{column: value}}}}")
        ids += [i for i in features if i not in ids]
    if not ids:
        raise ConfigError("give the IDs to score (vfl jobs predict JOB ID ...), --ids-file or --features")
    answer = service.predict(args.job_id, ids, features)
    if args.json:
        print_json(answer)
        return 0
    rows = [("ID", "SCORE", "LABEL", "STATUS")]
    for item in answer["predictions"]:
        score = "" if item.get("score") is None else f"{item['score']:.4f}"
        label = "" if item.get("label") is None else str(item["label"])
        rows.append((str(item["id"]), score, label, str(item.get("status", ""))))
    print_columns(rows)
    return 0


def _write_out(args: argparse.Namespace, text: str, what: str) -> int:
    """``--out FILE`` (its folder must exist) or ``-`` for standard output."""
    if str(args.out) == "-":
        sys.stdout.write(text)
        return 0
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    args.out.write_text(text)
    print(f"{what} for job {args.job_id} written to {args.out}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace, service: Orchestrator) -> int:
    return _write_out(args, service.report(args.job_id), "report")


def _model_document(args: argparse.Namespace, service: Orchestrator) -> int:
    """Party B: a scorecard job's model document, made here from the job's record (and its stability, if served)."""
    from vfl.report.model_document import model_document
    from vfl.report.summary import summary_from_record

    record = service.status(args.job_id)
    card = record.get("scorecard")
    if not card:
        raise ConfigError(f"job {args.job_id} has no scorecard section (state {record.get('state')}): a model "
                          "document is written for a scorecard job, from party B's record once it has succeeded")
    if not card.get("stability"):
        try:  # the score's PSI, once the job has served; a job that has not has none
            record["scorecard"] = {**card, "stability": service.stability(args.job_id)}
        except PeerRefused:
            pass
    html = str(args.out).lower().endswith((".html", ".htm"))
    text = model_document(summary_from_record(record), form="html" if html else "markdown")
    return _write_out(args, text, "model document")


def _stability(args: argparse.Namespace, service: Orchestrator) -> int:
    """A scorecard job's PSI (party B) and its own characteristics' CSI at the service asked, with their status."""
    answer = service.stability(args.job_id)
    if args.json:
        print_json(answer)
        return 0
    bands = answer.get("bands") or {"watch": 0.1, "alarm": 0.25}
    watch, alarm = bands.get("watch", 0.1), bands.get("alarm", 0.25)
    print(f"job {answer.get('job_id', args.job_id)} at {answer.get('party', service.url)}: stability on served rows "
          f"(stable < {watch:g} <= watch < {alarm:g} <= alarm)")
    score = answer.get("score")
    if score is not None:
        if score.get("rows"):
            print(f"score PSI {float(score['psi']):.4f} {str(score['status']).upper()} over {score['rows']} served "
                  "scores, against the training score bands")
        else:
            print("score PSI: no score served yet")
    entries = answer.get("characteristics") or []
    if entries:
        rows = [("CHARACTERISTIC", "PARTY", "CSI", "STATUS", "ROWS")]
        rows += [(str(e.get("characteristic")), str(e.get("party", answer.get("party", ""))),
                  f"{float(e['csi']):.4f}" if e.get("rows") else "-",
                  str(e.get("status")).upper() if e.get("rows") else "no rows served", str(e.get("rows", 0)))
                 for e in entries]
        print_columns(rows)
    alarms = [e.get("characteristic") for e in entries if e.get("rows") and e.get("status") == "alarm"]
    if score and score.get("rows") and score.get("status") == "alarm":
        alarms.insert(0, "score")
    if alarms:
        print(f"alarm (>= {alarm:g}): {', '.join(str(a) for a in alarms)}")
    return 0


def _watch(args: argparse.Namespace, service: Orchestrator, show_metrics: bool = True) -> int:
    """Follow the job on one progress line until it ends; then its metrics (validation, else training)."""
    try:
        final = service.wait(args.job_id, progress=ProgressLine().job, interval=args.interval)
    except JobError as exc:
        print(f"vfl jobs {args.action}: {exc}", file=sys.stderr)
        return 1
    metrics = final.get("metrics") or {}
    split = "validation" if metrics.get("validation") else "train"
    if show_metrics and metrics.get(split):
        print(f"{split}: {_metric_line(metrics[split])}")
    return 0


#: what each ``vfl jobs ACTION`` does, given the parsed arguments and a connected client
ACTIONS: dict[str, Callable[[argparse.Namespace, Orchestrator], int]] = {
    "submit": _submit, "list": _list, "status": _status, "cancel": _cancel, "resume": _resume,
    "predict": _predict, "report": _report, "watch": _watch,
    "model-document": _model_document, "stability": _stability,
}
