#!/usr/bin/env python3
"""The bank + e-commerce joint model, against three running vfl services.

A bank (party B) holds income, credit and repayment features and the loan
default label; an e-commerce firm (party A) holds shopping behaviour. Their
customer lists overlap only partly. This script is what their data team would
run from a scheduler once the three services are up.

Step 1, once: write the data and the three service configs::

    python scripts/bank_ecommerce.py prepare --dir bank-ecommerce
    # --data default_credit uses FATE's default_credit pair from ../shared instead
    # of the synthetic data in vfl/demo/data.py (each side keeps a random 85%,
    # so the customer lists overlap only partly)

Step 2, on three hosts (or three terminals)::

    vfl serve --config bank-ecommerce/arbiter.toml
    vfl serve --config bank-ecommerce/party-a.toml
    vfl serve --config bank-ecommerce/party-b.toml

Step 3: train, compare with a bank-only model on the same rows, and score.
As the bank's operator, from the bank's config (its URL, the federation's CA,
its token) and the job.json next to it::

    python scripts/bank_ecommerce.py run --config-dir bank-ecommerce

or with everything given explicitly (the services speak https with the
federation's own CA, so --ca is needed)::

    python scripts/bank_ecommerce.py run --bank https://127.0.0.1:PORT --ca bank-ecommerce/party-b/ca.pem \\
        --token "$(cat bank-ecommerce/party-b/token)" --job bank-ecommerce/job.json

Each service has its own token and its own folder (bank-ecommerce/party-a/,
party-b/, arbiter/: certificate, key, token, data); the script orchestrates
the bank, so it uses the bank's token.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from vfl.demo.services import print_summary, summarise, write_demo_files
from vfl.errors import ConfigError, TransportError, VFLError
from vfl.orchestrate import Orchestrator
from vfl.service.config import ServiceConfig, load_config
from vfl.report.progress import ProgressLine

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
    training = {} if args.epochs is None else {"epochs": args.epochs}
    setup = write_demo_files(args.dir, population=args.customers, key_bits=args.key_bits, tables=tables,
                             training=training)
    print(f"wrote data, configs and job.json to {args.dir}")
    for name, url in setup["urls"].items():
        print(f"  vfl serve --config {args.dir / (name + '.toml')}    # {url}")
    print(f"then: python {sys.argv[0]} run --config-dir {args.dir}")


def bank_config(folder: Path) -> Path:
    """Party B's config in ``folder``: party-b.toml as prepare writes it, else the one .toml with role B."""
    if (folder / "party-b.toml").is_file():
        return folder / "party-b.toml"
    found = []
    for path in sorted(folder.glob("*.toml")):
        try:
            role = tomllib.loads(path.read_text()).get("party", {}).get("role")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if role == "B":
            found.append(path)
    if len(found) != 1:
        what = "no service config with role B" if not found else f"{len(found)} configs with role B"
        raise ConfigError(f"--config-dir {folder}: {what}; give the bank's file with --bank-config")
    return found[0]


def own_url(config: ServiceConfig) -> str:
    """Where a client on the bank's host reaches the bank: its listen address (a wildcard means this host)."""
    host = config.party.host
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    scheme = "http" if config.tls is None else "https"
    return f"{scheme}://{host}:{config.party.port}"


def connection(args: argparse.Namespace) -> dict:
    """The bank's URL, the CA, the bank's token, the job spec and the peers to check: flags over --config-dir."""
    found: dict = {"peers": {}}
    if args.config_dir is not None or args.bank_config is not None:
        path = args.bank_config or bank_config(args.config_dir)
        config = load_config(path)
        if config.kind != "label":
            raise ConfigError(f"{path} is party {config.party.role}'s config; run orchestrates party B, the bank")
        found.update(bank=own_url(config), token=config.token(),
                     ca=config.tls.ca if config.tls is not None else None,
                     peers={pid: peer.url for pid, peer in config.peers.items()})
        job = path.parent / "job.json"
        if job.is_file():
            found["job"] = job
    peers = dict(found["peers"])
    if args.shop:
        peers["shop"] = args.shop
    if args.arbiter:
        peers["arbiter"] = args.arbiter
    given = {"bank": args.bank, "token": args.token, "ca": args.ca, "job": args.job}
    settings = {**found, **{k: v for k, v in given.items() if v is not None}, "peers": peers}
    missing = [f"--{k}" for k in ("bank", "token", "job") if not settings.get(k)]
    if missing:
        raise ConfigError(f"give {', '.join(missing)}, or --config-dir with the folder prepare wrote")
    if settings.get("ca") is not None and not Path(settings["ca"]).is_file():
        raise ConfigError(f"--ca {settings['ca']}: no such file")
    return settings


def run(args: argparse.Namespace) -> None:
    settings = connection(args)
    verify = str(settings["ca"]) if settings.get("ca") else True
    token = settings["token"]
    try:
        for name, url in [*settings["peers"].items(), ("bank", settings["bank"])]:
            with Orchestrator(url, token, verify=verify) as service:
                health = service.health()
                print(f"{name}: {health['party']} (role {health['role']}) is up at {url}", file=sys.stderr)
    except TransportError as exc:
        if verify is True and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise TransportError(f"{exc}: give the federation's CA with --ca (or use --config-dir)") from exc
        raise
    try:
        spec = json.loads(Path(settings["job"]).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{settings['job']}: cannot read the job spec ({exc})") from exc
    with Orchestrator(settings["bank"], token, verify=verify) as bank:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write data, three service configs and job.json")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--data", choices=["synthetic", "default_credit"], default="synthetic")
    p.add_argument("--customers", type=int, default=10_000, help="synthetic population size")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=None, help="most training epochs in job.json (default 30)")
    p.set_defaults(func=prepare)
    r = sub.add_parser("run", help="train on three running services and compare with the bank alone",
                       description="Give --config-dir (the folder prepare or `vfl demo --prepare-only` wrote: "
                                   "the bank's URL, CA and token come from party-b.toml, the job from job.json), "
                                   "or --bank, --token, --job and, for https with the federation's own CA, --ca. "
                                   "Flags given explicitly override what --config-dir finds.")
    r.add_argument("--config-dir", type=Path, default=None,
                   help="read the bank's config (party-b.toml, or the one .toml with role B) and job.json here")
    r.add_argument("--bank-config", type=Path, default=None, help="the bank's service config, if not in --config-dir")
    r.add_argument("--bank", default=None, help="party B's URL, e.g. https://bank.example:8702")
    r.add_argument("--ca", type=Path, default=None, help="the federation's ca.pem (to trust the services' https)")
    r.add_argument("--shop", help="party A's URL (only for a health check)")
    r.add_argument("--arbiter", help="the arbiter's URL (only for a health check)")
    r.add_argument("--token", default=None, help="the bank's bearer token")
    r.add_argument("--job", type=Path, default=None, help="the job spec, e.g. the job.json that prepare wrote")
    r.add_argument("--score", nargs="*", help="customer IDs to score with the trained model")
    r.set_defaults(func=run)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        print(f"bank_ecommerce {args.command}: {exc}", file=sys.stderr)
        return 2
    except VFLError as exc:
        print(f"bank_ecommerce {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
