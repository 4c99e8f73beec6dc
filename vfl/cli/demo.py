"""``vfl demo``: the bank and e-commerce joint model over local services, or the multi-lender demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vfl.cli.arguments import check_output_file
from vfl.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo",
                            help="the bank + e-commerce joint model over local services (one process per party)")
    p.add_argument("--workdir", type=Path, default=None, help="keep configs, data, logs and job.json here")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    p.add_argument("--report", type=Path, default=None, help="save party B's HTML job report here")
    p.add_argument("--customers", type=int, default=10_000, help="size of the synthetic population")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--feature-parties", type=int, default=1, choices=(1, 2, 3),
                   help="1: the bank and the shop (default); 2: also a telecom operator; 3: also an energy "
                        "utility. With more than one, the bank is also trained with each partner alone")
    p.add_argument("--scorecard", action="store_true",
                   help="build a credit scorecard instead of a plain model: prints the bank's points table, the "
                        "partner's total range and one applicant's reasons")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the data, configs, job.json and each party's folder (certificate, key, token, "
                        "data) to --workdir, to run the services by hand")
    p.add_argument("--force", action="store_true",
                   help="replace the demo files already in --workdir (CA, keys, tokens, configs, data) and delete "
                        "its data/ folder; by default that is refused, since services may be running from them")
    p.add_argument("--lending", action="store_true",
                   help="instead: three lenders and a querying bank; ask whether applicants borrow elsewhere "
                        "without revealing them, until the daily budget is spent (--out: the answers and the truth)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.demo.services import run_demo

    if args.lending:
        from vfl.demo.lending import run_lending_demo

        if args.prepare_only or args.report is not None or args.feature_parties != 1 or args.scorecard or args.force:
            raise ConfigError("--lending takes --workdir, --out and --key-bits only")
        check_output_file("--out", args.out)
        result = run_lending_demo(args.workdir, args.out, key_bits=args.key_bits)
        # exit 1 when a querier's answer differs from the truth the demo knows
        return 0 if all(sorted(q["found_at"]) == sorted(q["truth"]) for q in result["queries"]) else 1
    training = {} if args.epochs is None else {"epochs": args.epochs}
    if args.prepare_only and args.workdir is None:
        raise ConfigError("--prepare-only needs --workdir, where the files are kept")
    try:
        run_demo(args.workdir, args.out, population=args.customers, key_bits=args.key_bits, training=training,
                 prepare_only=args.prepare_only, report=args.report, feature_parties=args.feature_parties,
                 scorecard=args.scorecard, force=args.force)
    except KeyboardInterrupt:
        # run_demo has stopped the services by now (running_services always does), so say so.
        print("\nvfl demo: interrupted; services stopped", file=sys.stderr)
        return 130
    return 0
