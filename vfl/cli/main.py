"""The ``vfl`` command line.

    vfl simulate   run a whole federated job in one process (real encryption)
    vfl serve      run party A, party B or the arbiter as an HTTP service
    vfl demo       the bank + e-commerce job over local services (--feature-parties 2: also a telco)
    vfl certs      a small CA and one TLS certificate per party
    vfl jobs       submit, list, status, cancel, resume, predict, report, watch: jobs on a running service
    vfl score      score a file of IDs at party B in chunks, resumably (locally, or --remote as a batch)
    vfl compare    the federated model against pooled-data baselines on one split
    vfl ledger     verify or show a copy of the federation's co-signed, hash-chained job ledger
    vfl lending-query  ask the federation's lenders about applicants without revealing them

Every command exits 0 on success, 2 on a usage or input error (with a message
naming the problem and the fix on stderr), and 1 on any other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vfl.ml.config import TrainingConfig
from vfl.errors import ConfigError, DataError, VFLError


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run the feature parties, party B and the arbiter in one process")
    p.add_argument("--model", choices=["logistic", "linear"], default=None, help="default: logistic")
    p.add_argument("--party-a", required=True, metavar="A.csv", action="append",
                   help="a feature party's CSV (features only); give it once per feature party, in order")
    p.add_argument("--party-b", required=True, metavar="B.csv", help="party B's CSV (features and label)")
    p.add_argument("--id-column", required=True, action="append",
                   help="ID column: once for all files, or once more per --party-a file (B's first, then each "
                        "feature party's in order) where the names differ")
    p.add_argument("--label-column", default="y", help="label column in party B's file (default: y)")
    p.add_argument("--key-bits", type=int, default=None, help="Paillier and PSI key size (default 2048)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: all)")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--optimizer", choices=["newton", "adam", "sgd"], default=None)
    p.add_argument("--l2", type=float, default=None)
    p.add_argument("--validation-fraction", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="crypto tasks at once (default: all cores, or the Ray cluster's CPUs)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the crypto runs: this machine's cores (local), or a Ray cluster (needs vfl[ray])")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster head (host:port from `ray start --head`); default: a new local one")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file with training settings, or a job spec (its 'training' section is used)")
    p.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    p.add_argument("--report", type=Path, default=None, help="also write an HTML report with figures here")
    p.add_argument("--contributions", action="store_true",
                   help="also train every coalition of feature parties (with party B) on the same rows and report "
                        "each feature party's Shapley value and leave-one-out figure (AUC or R²)")
    p.add_argument("--contribution-permutations", type=int, default=None, metavar="M",
                   help="--contributions: estimate by M sampled orders instead of exactly (the default above 4 "
                        "feature parties, with 20 orders)")
    p.add_argument("--ledger", type=Path, default=None, metavar="DIR",
                   help="append the job to the hash-chained ledger in DIR, signed by every party with keys made "
                        "for the occasion (kept in DIR/keys); check it with `vfl ledger verify DIR`")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=_run_simulate)


def _training_config(args: argparse.Namespace) -> TrainingConfig:
    settings: dict = {}
    if args.config is not None:
        try:
            settings = json.loads(args.config.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.config}: cannot read the training config ({exc})") from exc
        if not isinstance(settings, dict):
            raise ConfigError(f"{args.config}: expected a JSON object")
        if "training" in settings:  # a job spec, such as the job.json that vfl demo writes
            settings = dict(settings["training"])
    flags = {
        "model": args.model, "key_bits": args.key_bits, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "optimizer": args.optimizer, "l2": args.l2,
        "validation_fraction": args.validation_fraction, "seed": args.seed,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    return TrainingConfig.parse(settings)


#: Below these, `vfl simulate` warns that the model and its training metrics mean little.
FEW_TRAINING_ROWS = 50
ROWS_PER_PARAMETER = 10


def _writable_file(flag: str, path: Path | None) -> None:
    """Refuse, before any work, an output path whose folder does not exist (rather than create it silently)."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give a file name in it, e.g. {path / 'result.json'}")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {path.parent} does not exist; create it first "
                          f"(mkdir -p {path.parent}) or give another path")


def _check_key_bits(config: TrainingConfig, args: argparse.Namespace) -> None:
    from vfl.local.simulate import SIMULATION_MIN_KEY_BITS

    if config.key_bits < SIMULATION_MIN_KEY_BITS:
        given = f"--key-bits {config.key_bits}" if args.key_bits is not None else f"key_bits {config.key_bits} in {args.config}"
        raise ConfigError(f"{given} is too small: vfl simulate needs keys of at least "
                          f"{SIMULATION_MIN_KEY_BITS} bits (services, by default, of 2048); give --key-bits "
                          f"{SIMULATION_MIN_KEY_BITS} or more")


def _parameter_count(result: dict) -> int:
    """Weights of every party plus B's intercept: what the training rows have to pin down."""
    part_b = result["model_parts"]["party_b"]
    count = sum(int(f["features"]) for f in result["feature_parties"]) + len(part_b["weights"])
    return count + (1 if part_b.get("intercept") is not None and result["config"].get("fit_intercept", True) else 0)


def _training_warnings(result: dict) -> list[str]:
    rows, parameters = int(result["train_rows"]), _parameter_count(result)
    if rows >= max(FEW_TRAINING_ROWS, ROWS_PER_PARAMETER * parameters):
        return []
    held = result.get("validation_rows") or 0
    advice = (f"lower --validation-fraction ({held} of the {result['aligned_rows']} aligned rows are held out) "
              "or add rows") if held else "add rows"
    return [f"trained on only {rows} rows for {parameters} parameters (advised: at least {FEW_TRAINING_ROWS} rows "
            f"and {ROWS_PER_PARAMETER} per parameter, here {max(FEW_TRAINING_ROWS, ROWS_PER_PARAMETER * parameters)}); "
            f"the model and its metrics mean little: {advice}"]


def _run_simulate(args: argparse.Namespace) -> int:
    from vfl.report.progress import ProgressLine
    from vfl.local.simulate import simulate_csv

    _writable_file("--out", args.out)
    _writable_file("--report", args.report)
    config = _training_config(args)
    _check_key_bits(config, args)
    columns = args.id_column
    if len(columns) not in (1, 1 + len(args.party_a)):
        raise ConfigError(f"--id-column was given {len(columns)} times for {len(args.party_a)} --party-a files: give "
                          f"it once, or {1 + len(args.party_a)} times (B's column, then each feature party's)")
    columns_a = columns[1:] if len(columns) > 1 else None
    if args.contribution_permutations is not None and (not args.contributions or args.contribution_permutations < 2):
        raise ConfigError("--contribution-permutations M goes with --contributions, and M must be at least 2")
    if args.ledger is not None and not args.ledger.parent.is_dir():
        raise ConfigError(f"--ledger {args.ledger}: the folder {args.ledger.parent} does not exist")
    progress = ProgressLine()

    def on_coalition(done: int, total: int, parties: list[str]) -> None:
        if not args.quiet:
            progress.close()
            print(f"contributions: coalition {done + 1}/{total}: B + {' + '.join(parties)}", file=sys.stderr)

    extra = {}
    if args.ledger is not None:
        import secrets

        extra = {"ledger": args.ledger, "job_id": "sim-" + secrets.token_hex(6)}
    try:
        result = simulate_csv(
            args.party_a, args.party_b, id_column=columns[0], label_column=args.label_column, config=config,
            id_column_a=columns_a, workers=args.workers, engine=args.engine, address=args.address,
            progress=None if args.quiet else progress.epoch, contributions=args.contributions,
            contribution_permutations=args.contribution_permutations, on_coalition=on_coalition, **extra,
        )
    finally:
        progress.close()
    warnings = _training_warnings(result)
    if warnings:
        result["warnings"] = warnings
    args.out.write_text(json.dumps(result, indent=2))
    if args.report is not None:
        from vfl.report.figures import figures_for
        from vfl.report.html import render
        from vfl.report.summary import summary_from_simulation

        names = " + ".join(Path(f).name for f in args.party_a)
        summary = summary_from_simulation(result, f"{Path(args.party_b).name} + {names}")
        args.report.write_text(render(summary, figures_for(summary)))
        print(f"report written to {args.report}")
    for warning in warnings:
        print(f"vfl simulate: warning: {warning}", file=sys.stderr)
    print(f"{result['aligned_rows']} aligned rows, {result['epochs_run']} epochs ({result['stop_reason']}), "
          f"{result['seconds']:.1f}s")
    rows = {"train": result["train_rows"], "validation": result["validation_rows"]}
    for split, values in result["metrics"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
        print(f"  {split} metrics ({rows.get(split, '?')} rows): {shown}")
    if result.get("contributions"):
        from vfl.report.contributions import text_table

        print(text_table(result["contributions"]))
    if result.get("ledger"):
        ledger = result["ledger"]
        print(f"ledger: entry {ledger['entry']} appended to {ledger['folder']} ({ledger['digest'][:16]}…), "
              f"signed by {', '.join(ledger['signed_by'])}")
    print(f"result written to {args.out}")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run one service (role and everything else come from the config file)")
    p.add_argument("--config", type=Path, required=True, help="the service's TOML config")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="info (default): each job's story; debug adds every peer request")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="json: one object per line (time, level, logger, message, job_id) for log shippers")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from vfl.service.server import serve

    serve(args.config, log_level=args.log_level, log_format=args.log_format)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the bank + e-commerce joint model over local services (one process per party)")
    p.add_argument("--workdir", type=Path, default=None, help="keep configs, data, logs and job.json here")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    p.add_argument("--report", type=Path, default=None, help="save party B's HTML job report here")
    p.add_argument("--customers", type=int, default=10_000, help="size of the synthetic population")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--feature-parties", type=int, default=1, choices=(1, 2, 3),
                   help="1: the bank and the shop (default); 2: also a telecom operator; 3: also an energy "
                        "utility. With more than one, the bank is also trained with each partner alone")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the data, configs, job.json and each party's folder (certificate, key, token, "
                        "data) to --workdir, to run the services by hand")
    p.add_argument("--lending", action="store_true",
                   help="instead: three lenders and a querying bank; ask whether applicants borrow elsewhere "
                        "without revealing them, until the daily budget is spent (--out: the answers and the truth)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from vfl.demo.services import run_demo

    if args.lending:
        from vfl.demo.lending import run_lending_demo

        if args.prepare_only or args.report is not None or args.feature_parties != 1:
            raise ConfigError("--lending takes --workdir, --out and --key-bits only")
        _writable_file("--out", args.out)
        result = run_lending_demo(args.workdir, args.out, key_bits=args.key_bits)
        return 0 if all(sorted(q["found_at"]) == sorted(q["truth"]) for q in result["queries"]) else 1
    training = {} if args.epochs is None else {"epochs": args.epochs}
    if args.prepare_only and args.workdir is None:
        raise ConfigError("--prepare-only needs --workdir, where the files are kept")
    run_demo(args.workdir, args.out, population=args.customers, key_bits=args.key_bits, training=training,
             prepare_only=args.prepare_only, report=args.report, feature_parties=args.feature_parties)
    return 0


def _add_certs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help="make a CA and a certificate per party for mutual TLS")
    p.add_argument("--out", type=Path, required=True,
                   help="writes OUT/ca/ (the CA's certificate and key) and OUT/<party>/ (one folder per party)")
    p.add_argument("--parties", required=True, help="comma-separated party ids, e.g. party-a,party-b,arbiter")
    p.add_argument("--host", action="append", default=[], metavar="PARTY=HOST[,HOST]",
                   help="names the party's certificate is valid for (default localhost,127.0.0.1)")
    p.add_argument("--force", action="store_true",
                   help="replace a CA, certificates and keys already in OUT (by default that is refused)")
    p.set_defaults(run=_run_certs)


def _run_certs(args: argparse.Namespace) -> int:
    from vfl.service.tls import CA_FOLDER, make_certificates

    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    hosts: dict[str, list[str]] = {}
    for item in args.host:
        party, sep, names = item.partition("=")
        if not sep or party not in parties:
            raise ConfigError(f"--host {item!r}: use PARTY=HOST[,HOST] with a party from --parties")
        hosts[party] = [h for h in names.split(",") if h]
    made = make_certificates(args.out, parties, hosts, force=args.force)
    ca = args.out / CA_FOLDER
    print(f"CA: {ca / 'ca.pem'} and its key {ca / 'ca.key'}, which signs certificates: keep it offline, "
          "and give it to no party")
    for party, files in made.items():
        print(f"{party}: {files['cert'].parent}/ holds its certificate, its key (mode 0600) and ca.pem; "
              "hand that folder to that party only")
    return 0


def _connection_options(p: argparse.ArgumentParser) -> None:
    """--url, --token and --ca, shared by every `vfl jobs` command."""
    p.add_argument("--url", default=os.environ.get("VFL_URL"),
                   help="the service's base URL, e.g. https://bank.example:8702 (default: $VFL_URL)")
    p.add_argument("--token", default=os.environ.get("VFL_TOKEN"),
                   help="the service's bearer token (default: $VFL_TOKEN)")
    p.add_argument("--ca", type=Path, default=os.environ.get("VFL_CA") or None,
                   help="the federation's ca.pem, to trust the service's https certificate (default: $VFL_CA; "
                        "without it, the system's CAs)")


def _add_jobs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="submit, list, follow, cancel, resume and use jobs on a running service",
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

    watch = jobs.add_parser("watch", help="show a job's progress live until it ends",
                            usage="vfl jobs watch [--url URL] [--token TOKEN] [--ca CA] [--interval S] [URL] JOB_ID")
    watch.add_argument("target", nargs="+", metavar="JOB_ID",
                       help="the job id; the older form `vfl jobs watch URL JOB_ID` also works")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    for command in (submit, listing, status, *(jobs.choices[n] for n in ("cancel", "resume")), predict, report, watch):
        _connection_options(command)
    p.set_defaults(run=_run_jobs)


def _run_jobs(args: argparse.Namespace) -> int:
    from vfl.errors import TransportError
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
    if args.ca is not None and not Path(args.ca).is_file():
        raise ConfigError(f"--ca {args.ca}: no such file; give the federation's ca.pem")
    action = _JOB_ACTIONS[args.action]
    try:
        with Orchestrator(args.url, args.token, verify=str(args.ca) if args.ca else True) as service:
            return action(args, service)
    except TransportError as exc:
        if args.url.startswith("https://") and args.ca is None and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise TransportError(f"{exc} (the service's certificate is signed by the federation's own CA: "
                                 "give it with --ca ca.pem)") from exc
        raise


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _read_spec(path: Path) -> dict:
    try:
        spec = json.loads(sys.stdin.read() if str(path) == "-" else path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job spec ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: the job spec is not valid JSON ({exc})") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a job spec is a JSON object, not {type(spec).__name__}")
    return spec


def _jobs_submit(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    spec = _read_spec(args.spec)
    if args.job_id:
        spec["job_id"] = args.job_id
    answer = service.submit(spec, idempotency_key=args.idempotency_key)
    if args.json:
        _print_json(answer)
    else:
        print(answer["job_id"])
        print(f"submitted job {answer['job_id']} ({answer.get('state', 'pending')}) at {service.url}", file=sys.stderr)
    if args.watch:
        args.job_id = answer["job_id"]
        return _watch(args, service, show_metrics=not args.json)
    return 0


def _when(seconds: object) -> str:
    import time

    if not isinstance(seconds, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _jobs_list(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    jobs = sorted(service.jobs(), key=lambda j: j.get("created_at") or 0)
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print(f"no jobs at {service.url}", file=sys.stderr)
        return 0
    rows = [("JOB", "STATE", "STAGE", "EPOCH", "CREATED")]
    rows += [(j["job_id"], j.get("state", ""), j.get("stage", ""), f"{j.get('epoch', 0)}/{j.get('max_epochs') or '?'}",
              _when(j.get("created_at"))) for j in jobs]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _metric_line(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _jobs_status(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    record = service.status(args.job_id)
    if args.json:
        _print_json(record)
        return 0
    stopped = f", stopped: {record['stop_reason']}" if record.get("stop_reason") else ""
    lines = [("job", record["job_id"]), ("state", f"{record['state']} ({record.get('stage')}){stopped}"),
             ("epoch", f"{record.get('epoch', 0)}/{record.get('max_epochs') or '?'}")]
    if record.get("loss_history"):
        lines.append(("loss", f"{record['loss_history'][-1]:.6f}"))
    if (record.get("alignment") or {}).get("intersection") is not None:
        lines.append(("aligned", f"{record['alignment']['intersection']} rows"))
    lines += [(split, _metric_line(values)) for split, values in (record.get("metrics") or {}).items()
              if isinstance(values, dict)]
    ledger = record.get("ledger") or {}
    if ledger.get("entry") is not None:
        verified = "every signature verified" if ledger.get("signatures_verified") else "signatures NOT all verified"
        lines.append(("ledger", f"entry {ledger['entry']} ({str(ledger.get('digest'))[:16]}…), signed by "
                                f"{', '.join(ledger.get('signed_by') or [])}: {verified}"))
    elif ledger:
        lines.append(("ledger", f"no entry: {ledger.get('reason') or '; '.join(ledger.get('problems') or [])}"))
    if record.get("error"):
        lines.append(("error", record["error"]))
    for label, value in lines:
        print(f"{label:11s}{value}")
    if record.get("contributions"):
        from vfl.report.contributions import text_table

        print(text_table(record["contributions"]))
    return 0


def _jobs_cancel(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    record = service.cancel(args.job_id)
    if args.json:
        _print_json(record)
    else:
        print(f"job {record['job_id']}: {record['state']}")
    return 0


def _jobs_resume(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    record = service.resume(args.job_id)
    if args.json:
        _print_json(record)
    else:
        print(f"job {record['job_id']}: resuming ({record['state']}, epoch {record.get('epoch', 0)})")
    return 0


def _jobs_predict(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    ids = list(args.ids)
    if args.ids_file is not None:
        try:
            ids += [line.strip() for line in args.ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"--ids-file {args.ids_file}: cannot read it ({exc.strerror or exc})") from exc
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
        _print_json(answer)
        return 0
    rows = [("ID", "SCORE", "LABEL", "STATUS")]
    for item in answer["predictions"]:
        score = "" if item.get("score") is None else f"{item['score']:.4f}"
        label = "" if item.get("label") is None else str(item["label"])
        rows.append((str(item["id"]), score, label, str(item.get("status", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _jobs_report(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    page = service.report(args.job_id)
    if str(args.out) == "-":
        sys.stdout.write(page)
        return 0
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    args.out.write_text(page)
    print(f"report for job {args.job_id} written to {args.out}", file=sys.stderr)
    return 0


def _jobs_watch(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    return _watch(args, service)


def _watch(args: argparse.Namespace, service, show_metrics: bool = True) -> int:  # noqa: ANN001 - an Orchestrator
    from vfl.errors import JobError
    from vfl.report.progress import ProgressLine

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


_JOB_ACTIONS = {"submit": _jobs_submit, "list": _jobs_list, "status": _jobs_status, "cancel": _jobs_cancel,
                "resume": _jobs_resume, "predict": _jobs_predict, "report": _jobs_report, "watch": _jobs_watch}


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a file of IDs with a trained job at party B, in chunks, resumably")
    p.add_argument("url", nargs="?", default=os.environ.get("VFL_URL"),
                   help="party B's base URL, e.g. https://bank.example:8702 (default: $VFL_URL)")
    p.add_argument("--job", required=True, help="the succeeded job whose model scores")
    p.add_argument("--input", required=True, type=Path, help="IDs to score: a .csv or .parquet file")
    p.add_argument("--out", required=True, type=Path, help="where the scores go: .csv or .parquet")
    p.add_argument("--token", default=os.environ.get("VFL_TOKEN"), help="bearer token (default: $VFL_TOKEN)")
    p.add_argument("--ca", type=Path, default=None, help="the federation's ca.pem, for https")
    p.add_argument("--id-column", default="id", help="the input's ID column (default: id)")
    p.add_argument("--chunk-rows", type=int, default=10_000, help="IDs per predict call (default 10000)")
    p.add_argument("--remote", action="store_true",
                   help="party B reads --input and writes --out on its own host (paths there, absolute) as a "
                        "background batch; this command follows its progress")
    p.add_argument("--interval", type=float, default=1.0, help="--remote: seconds between polls")
    p.set_defaults(run=_run_score)


def _batch_line(status: dict) -> str:
    total = status.get("rows_total")
    done = status.get("rows_done", 0)
    share = f"{done}/{total} rows ({100 * done / total:.0f}%)" if total else f"{done} rows"
    counts = "  ".join(f"{k} {v}" for k, v in sorted((status.get("counts") or {}).items()))
    return f"{status.get('state', 'running')}: {status.get('chunks_done', 0)} chunks, {share}  {counts}".rstrip()


def _run_score(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token")
    if not args.url:
        raise ConfigError("give party B's URL (vfl score https://bank.example:8702 ...) or set VFL_URL")
    if args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows {args.chunk_rows}: give a positive number of IDs per request")
    with Orchestrator(args.url, args.token, verify=args.ca or True) as service:
        return (_score_remote if args.remote else _score_local)(args, service)


def _score_remote(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    from vfl.errors import JobError
    from vfl.report.progress import ProgressLine

    request = {"input": {"path": str(args.input), "id_column": args.id_column}, "output": {"path": str(args.out)},
               "chunk_rows": args.chunk_rows}
    submitted = service.score_batch(args.job, request)
    line = ProgressLine()
    try:
        final = service.wait_batch(args.job, submitted["batch_id"], interval=args.interval,
                                   progress=lambda s: line.show(f"{s['batch_id']}: {_batch_line(s)}"))
    except JobError as exc:
        print(f"vfl score: {exc}", file=sys.stderr)
        return 1
    finally:
        line.close()
    print(f"{final['rows_done']} IDs scored into {final['output']} on party B's host (batch {final['batch_id']})")
    return 0


def _score_local(args: argparse.Namespace, service) -> int:  # noqa: ANN001 - an Orchestrator
    """Read --input in chunks, call B's predict per chunk, write --out; a re-run continues after the last chunk.

    Progress sits in ``<out>.progress.json`` (rewritten atomically after every chunk)
    and the output grows in ``<out>.<run>.partial`` (vfl.data.chunks), renamed to --out
    at the end. A run is the same run when the URL, job, input file (size and
    mtime), ID column and chunk size are; otherwise it starts over.
    """
    import asyncio

    from vfl.data import chunks
    from vfl.report.progress import ProgressLine
    from vfl.service.store import atomic_write_json, read_json

    source = chunks.FileIds(args.input, args.id_column, args.chunk_rows)
    chunks.check_output(args.out, [args.input])
    identity = {"url": service.url, "job": args.job, "input": str(args.input.resolve()), "id_column": args.id_column,
                "chunk_rows": args.chunk_rows, "file": chunks.file_identity(args.input)}
    tag = chunks.fingerprint(identity)
    sidecar = args.out.with_name(f"{args.out.name}.progress.json")
    progress = chunks.Progress()
    if sidecar.is_file():
        try:
            saved = read_json(sidecar)
        except Exception:  # noqa: BLE001 - an unreadable sidecar: start over rather than guess
            saved = None
        if isinstance(saved, dict) and saved.get("tag") == tag:
            progress = chunks.Progress.from_dict(saved.get("progress"))
            print(f"resuming after {progress.chunks_done} chunks ({progress.rows_done} IDs) already scored",
                  file=sys.stderr)
        elif isinstance(saved, dict) and isinstance(saved.get("tag"), str):
            chunks.ResultWriter(args.out, saved["tag"]).discard()  # another run's leftovers
    writer = chunks.ResultWriter(args.out, tag)
    total = source.rows_total
    line = ProgressLine()

    def checkpoint(done: chunks.Progress) -> None:
        atomic_write_json(sidecar, {"tag": tag, "identity": identity, "progress": done.to_dict()})
        line.show(f"{args.input.name}: {_batch_line({**done.to_dict(), 'state': 'scoring', 'rows_total': total})}")

    async def score(ids: list[str]) -> dict:
        return service.predict(args.job, ids)  # blocking is fine here: Ctrl-C lands between or inside calls

    try:
        asyncio.run(chunks.score_chunks(source, writer, progress, score, checkpoint=checkpoint))
    finally:
        line.close()
    writer.publish(progress.columns)
    sidecar.unlink(missing_ok=True)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(progress.counts.items()))
    print(f"{progress.rows_done} IDs scored into {args.out} ({counts or 'none'})")
    return 0


def _add_lending_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lending-query", help="ask every lender of the federation whether it lends to applicants, "
                                             "without revealing them (POST /v1/lending-query at your service)")
    p.add_argument("--ids", nargs="+", default=[], metavar="ID", help="the applicants' IDs")
    p.add_argument("--ids-file", type=Path, default=None, help="more IDs, one per line")
    p.add_argument("--count", action="store_true",
                   help="answer only how many lenders hold each ID, not which (computed at your service)")
    p.add_argument("--lenders", default=None, help="comma-separated: ask only these of the configured lenders")
    p.add_argument("--json", action="store_true", help="print the service's whole answer as JSON")
    _connection_options(p)
    p.set_defaults(run=_run_lending_query)


def _run_lending_query(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    ids = list(args.ids)
    if args.ids_file is not None:
        try:
            ids += [line.strip() for line in args.ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"--ids-file {args.ids_file}: cannot read it ({exc.strerror or exc})") from exc
    if not ids:
        raise ConfigError("give the applicants' IDs with --ids ID [ID ...] or --ids-file")
    if not args.url or not args.url.startswith(("http://", "https://")):
        raise ConfigError("give your service's URL with --url https://bank.example:8702 (or set VFL_URL)")
    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token")
    if args.ca is not None and not Path(args.ca).is_file():
        raise ConfigError(f"--ca {args.ca}: no such file; give the federation's ca.pem")
    lenders = [name.strip() for name in args.lenders.split(",") if name.strip()] if args.lenders else None
    with Orchestrator(args.url, args.token, verify=str(args.ca) if args.ca else True, timeout=300) as service:
        answer = service.lending_query(ids, "count" if args.count else "lenders", lenders)
    if args.json:
        _print_json(answer)
        return 0
    header = ("ID", "LENDERS" if args.count else "FOUND AT")
    rows = [header] + [(str(item["id"]), str(item["count"]) if args.count else (", ".join(item["found_at"]) or "-"))
                       for item in answer["results"]]
    width = max(len(r[0]) for r in rows)
    for row in rows:
        print(f"{row[0].ljust(width)}  {row[1]}")
    print(f"asked {', '.join(answer['lenders'])} in {answer['seconds'] * 1000:.0f} ms", file=sys.stderr)
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="federated vs pooled baselines (SVM, random forest, ...) and DP costs")
    p.add_argument("--party-a", required=True, metavar="A.csv")
    p.add_argument("--party-b", required=True, metavar="B.csv")
    p.add_argument("--id-column", required=True)
    p.add_argument("--label-column", default="y")
    p.add_argument("--model", choices=["logistic", "linear"], default="logistic")
    p.add_argument("--name", default=None, help="the dataset's name in the table")
    p.add_argument("--epsilons", default="1,3,10", help="ε values for the DP rows (empty: none)")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--key-bits", type=int, default=1024, help="accuracy does not depend on it; 2048 is slower")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write the full comparison as JSON here")
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from vfl.local.compare import compare, parse_epsilons
    from vfl.data.table import load_csv

    epsilons = parse_epsilons(args.epsilons)  # before the (slow) loading, so a typo fails at once
    table_a = load_csv(args.party_a, id_column=args.id_column)
    table_b = load_csv(args.party_b, id_column=args.id_column, label_column=args.label_column, model=args.model)
    training = {} if args.epochs is None else {"epochs": args.epochs}
    result = compare(table_a, table_b, model=args.model, dataset=args.name or Path(args.party_b).stem,
                     epsilons=epsilons, test_fraction=args.test_fraction, seed=args.seed, training=training,
                     key_bits=args.key_bits, workers=args.workers)
    table = result.markdown()
    print(f"{result.dataset}: {result.train_rows} training rows, {result.test_rows} test rows\n\n{table}")
    if args.out is not None:
        args.out.write_text(table + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def _add_ledger(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ledger", help="verify or show a copy of the co-signed, hash-chained job ledger")
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
    verify.set_defaults(run=_run_ledger_verify)
    show = actions.add_parser("show", help="print the entries readably")
    show.add_argument("dir", type=Path, help="a ledger copy: the folder holding ledger.jsonl")
    show.add_argument("--json", action="store_true", help="print the entries as a JSON list")
    show.set_defaults(run=_run_ledger_show)


def _run_ledger_verify(args: argparse.Namespace) -> int:
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


def _run_ledger_show(args: argparse.Namespace) -> int:
    from vfl.incentives import chain
    from vfl.report.contributions import show_entry

    entries = chain.Ledger(args.dir).entries()
    if args.json:
        _print_json(entries)
        return 0
    if not entries:
        print(f"{args.dir}: no entries")
    for entry in entries:
        print(show_entry(entry))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vfl import __version__

    parser = argparse.ArgumentParser(prog="vfl", description="Vertical federated learning with Paillier encryption")
    parser.add_argument("--version", action="version", version=f"vfl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_simulate(sub)
    _add_serve(sub)
    _add_demo(sub)
    _add_certs(sub)
    _add_jobs(sub)
    _add_score(sub)
    _add_lending_query(sub)
    _add_compare(sub)
    _add_ledger(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        return args.run(args)
    except (ConfigError, DataError) as exc:
        print(f"vfl {command}: {exc}", file=sys.stderr)
        return 2
    except VFLError as exc:
        print(f"vfl {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vfl {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
