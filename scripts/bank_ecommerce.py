#!/usr/bin/env python3
"""The bank + e-commerce joint model, against three running vfl services.

A bank (party B) holds income, credit and repayment features and the loan
default label; an e-commerce firm (party A) holds shopping behaviour. Their
customer lists overlap only partly. This script is what their data team would
run from a scheduler once the three services are up.

Step 1, once: write the data and the three service configs::

    python scripts/bank_ecommerce.py prepare --dir bank-ecommerce
    # --data default_credit uses FATE's default_credit pair from ../shared instead
    # of the synthetic data in vfl/demo_data.py (each side keeps a random 85%,
    # so the customer lists overlap only partly)

Step 2, on three hosts (or three terminals)::

    vfl serve --config bank-ecommerce/arbiter.toml
    vfl serve --config bank-ecommerce/party-a.toml
    vfl serve --config bank-ecommerce/party-b.toml

Step 3: train, compare with a bank-only model on the same rows, and score::

    python scripts/bank_ecommerce.py run --bank http://127.0.0.1:PORT \\
        --shop http://127.0.0.1:PORT --arbiter http://127.0.0.1:PORT \\
        --token "$(cat bank-ecommerce/party-b/token)" --job bank-ecommerce/job.json

Each service has its own token and its own folder (bank-ecommerce/party-a/,
party-b/, arbiter/: certificate, key, token, data); the script orchestrates
the bank, so it uses the bank's token.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vfl.demo import print_summary, summarise, write_demo_files
from vfl.errors import VFLError
from vfl.orchestrate import Orchestrator
from vfl.progress import ProgressLine

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fate"


def default_credit_tables(seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """FATE's default_credit pair: the guest file is the bank, the host file the shop."""
    bank_file, shop_file = SHARED / "default_credit_hetero_guest.csv", SHARED / "default_credit_hetero_host.csv"
    if not (bank_file.is_file() and shop_file.is_file()):
        raise SystemExit(f"FATE's default_credit pair is not under {SHARED}; use --data synthetic")
    rng = np.random.default_rng(seed)
    bank, shop = pd.read_csv(bank_file), pd.read_csv(shop_file)
    bank = bank[rng.random(len(bank)) < 0.85]
    shop = shop[rng.random(len(shop)) < 0.85]
    return shop, bank, "id", "y"


def prepare(args: argparse.Namespace) -> None:
    tables = default_credit_tables() if args.data == "default_credit" else None
    setup = write_demo_files(args.dir, population=args.customers, key_bits=args.key_bits, tables=tables)
    print(f"wrote data, configs and job.json to {args.dir}")
    for name, url in setup["urls"].items():
        print(f"  vfl serve --config {args.dir / (name + '.toml')}    # {url}")


def run(args: argparse.Namespace) -> None:
    for name, url in (("shop", args.shop), ("arbiter", args.arbiter), ("bank", args.bank)):
        if url:
            with Orchestrator(url, args.token) as service:
                health = service.health()
                print(f"{name}: {health['party']} (role {health['role']}) is up", file=sys.stderr)
    spec = json.loads(args.job.read_text())
    with Orchestrator(args.bank, args.token) as bank:
        job = bank.submit(spec)
        print(f"submitted {job['job_id']}", file=sys.stderr)
        final = bank.wait(job["job_id"], progress=ProgressLine().job)
        ids = args.score or []
        predictions = bank.predict(job["job_id"], ids) if ids else {"predictions": []}
    print_summary(summarise(final, predictions))
    fed = final["metrics"].get("validation", final["metrics"]["train"])
    base = final["baseline"]["metrics"].get("validation", final["baseline"]["metrics"]["train"])
    key = "auc" if "auc" in fed else "r2"
    print(f"\nvalue of federation: {key} {fed[key]:.4f} jointly vs {base[key]:.4f} for the bank alone "
          f"({fed[key] - base[key]:+.4f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write data, three service configs and job.json")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--data", choices=["synthetic", "default_credit"], default="synthetic")
    p.add_argument("--customers", type=int, default=10_000, help="synthetic population size")
    p.add_argument("--key-bits", type=int, default=2048)
    p.set_defaults(func=prepare)
    r = sub.add_parser("run", help="train on three running services and compare with the bank alone")
    r.add_argument("--bank", required=True, help="party B's URL")
    r.add_argument("--shop", help="party A's URL (only for a health check)")
    r.add_argument("--arbiter", help="the arbiter's URL (only for a health check)")
    r.add_argument("--token", required=True)
    r.add_argument("--job", type=Path, required=True, help="the job spec, e.g. the job.json that prepare wrote")
    r.add_argument("--score", nargs="*", help="customer IDs to score with the trained model")
    r.set_defaults(func=run)
    args = parser.parse_args()
    try:
        args.func(args)
    except VFLError as exc:
        print(f"bank_ecommerce: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
