"""The ``vfl`` command line: :func:`main` and its parser; each command lives in a module of its own.

    vfl simulate   run a whole federated job in one process (real encryption)
    vfl serve      run party A, party B or the arbiter as an HTTP service
    vfl demo       the bank + e-commerce job over local services (--feature-parties 2: also a telco)
    vfl certs      a small CA and one TLS certificate per party
    vfl jobs       submit, list, status, cancel, resume, predict, report, watch: jobs on a running service
    vfl models     the model registry: list versions; at party B promote, roll back, show a name
    vfl score      score a file of IDs at party B in chunks, resumably (locally, or --remote as a batch)
    vfl compare    the federated model against pooled-data baselines on one split
    vfl ledger     verify or show a copy of the federation's co-signed, hash-chained job ledger
    vfl lending-query  ask the federation's lenders about applicants without revealing them

Every command exits 0 on success, 2 on a usage or input error (with a message
naming the problem and the fix on stderr), and 1 on any other failure.

Each command module has ``register(commands)``, which adds its subcommand (and
its actions) and sets ``run`` to the function that carries it out. What a
command runs (numpy, httpx, the service) is imported inside that function, so
``vfl --help`` and a mistyped flag answer at once. :mod:`vfl.cli.arguments` and
:mod:`vfl.cli.output` hold the flags and the printing that commands share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vfl import __version__
from vfl.cli import certs, compare, demo, jobs, ledger, lending_query, models, score, serve, simulate
from vfl.errors import ConfigError, DataError, PeerRefused, VFLError

#: the command modules, in the order ``vfl --help`` lists their commands
COMMANDS = (simulate, serve, demo, certs, jobs, models, score, lending_query, compare, ledger)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vfl", description="Vertical federated learning with Paillier encryption")
    parser.add_argument("--version", action="version", version=f"vfl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``vfl`` command; its exit code (see above) is the return value."""
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        return args.run(args)
    except (ConfigError, DataError) as exc:
        print(f"vfl {command}: {exc}", file=sys.stderr)
        return 2
    except PeerRefused as exc:
        # The service the command talks to said no: not a crash, and not a "peer" from the user's point of view.
        status = f" ({exc.status})" if exc.status is not None else ""
        print(f"vfl {command}: refused{status}: {exc}", file=sys.stderr)
        return 1
    except VFLError as exc:
        print(f"vfl {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vfl {command}: interrupted", file=sys.stderr)
        return 130
