"""``vfl serve``: run party A, party B or the arbiter as an HTTPS service, as its config file says."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("serve", help="run one service (role and everything else come from the config file)")
    p.add_argument("--config", type=Path, required=True, help="the service's TOML config")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="info (default): each job's story; debug adds every peer request")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="json: one object per line (time, level, logger, message, job_id) for log shippers")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.service.server import serve

    serve(args.config, log_level=args.log_level, log_format=args.log_format)
    return 0
