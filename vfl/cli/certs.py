"""``vfl certs``: a small certificate authority and one TLS certificate per party, for mutual TLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from vfl.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("certs", help="make a CA and a certificate per party for mutual TLS")
    p.add_argument("--out", type=Path, required=True,
                   help="writes OUT/ca/ (the CA's certificate and key) and OUT/<party>/ (one folder per party)")
    p.add_argument("--parties", required=True, help="comma-separated party ids, e.g. party-a,party-b,arbiter")
    p.add_argument("--host", action="append", default=[], metavar="PARTY=HOST[,HOST]",
                   help="names the party's certificate is valid for (default localhost,127.0.0.1)")
    p.add_argument("--force", action="store_true",
                   help="replace a CA, certificates and keys already in OUT (by default that is refused)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
