"""Flags and checks that several vfl commands share: the service connection, output files, ID files."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vfl.errors import ConfigError, TransportError


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """--url, --token and --ca, for every command that talks to a running service."""
    parser.add_argument("--url", default=os.environ.get("VFL_URL"),
                        help="the service's base URL, e.g. https://bank.example:8702 (default: $VFL_URL)")
    parser.add_argument("--token", default=os.environ.get("VFL_TOKEN"),
                        help="the service's bearer token (default: $VFL_TOKEN)")
    parser.add_argument("--ca", type=Path, default=default_ca(),
                        help="the federation's ca.pem, to trust the service's https certificate (default: $VFL_CA; "
                             "without it, the system's CAs)")


def check_ca_file(ca: Path | None) -> None:
    """Refuse a --ca that names no file, before any request fails on it less clearly."""
    if ca is not None and not Path(ca).is_file():
        raise ConfigError(f"--ca {ca}: no such file; give the federation's ca.pem")


def default_ca() -> Path | None:
    """$VFL_CA as a path, or None: the --ca default of every command that talks to a service."""
    return Path(os.environ["VFL_CA"]) if os.environ.get("VFL_CA") else None


@contextmanager
def ca_hint(url: str, ca: Path | None) -> Iterator[None]:
    """Add "give it with --ca ca.pem" to a TLS failure against the federation's own CA, when no --ca was given."""
    try:
        yield
    except TransportError as exc:
        if url.startswith("https://") and ca is None and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise TransportError(f"{exc} (the service's certificate is signed by the federation's own CA: "
                                 "give it with --ca ca.pem or set VFL_CA)") from exc
        raise


def check_output_file(flag: str, path: Path | None) -> None:
    """Refuse, before any work, an output path whose folder does not exist (rather than create it silently)."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give a file name in it, e.g. {path / 'result.json'}")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {path.parent} does not exist; create it first "
                          f"(mkdir -p {path.parent}) or give another path")


def read_ids_file(path: Path) -> list[str]:
    """The IDs of an --ids-file, one per line; blank lines are skipped."""
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"--ids-file {path}: cannot read it ({exc.strerror or exc})") from exc
