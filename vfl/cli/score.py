"""``vfl score``: score a file of IDs with a trained job at party B, in chunks and resumably (or as B's batch)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfl.cli.arguments import ca_hint, check_ca_file, default_ca
from vfl.errors import ConfigError, JobError
from vfl.report.progress import ProgressLine

if TYPE_CHECKING:  # imported by run(), so that `vfl --help` does not load httpx
    from vfl.orchestrate import Orchestrator


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("score", help="score a file of IDs with a trained job at party B, in chunks, resumably")
    p.add_argument("url", nargs="?", default=os.environ.get("VFL_URL"),
                   help="party B's base URL, e.g. https://bank.example:8702 (default: $VFL_URL)")
    p.add_argument("--job", required=True, help="the succeeded job whose model scores")
    p.add_argument("--input", required=True, type=Path, help="IDs to score: a .csv or .parquet file")
    p.add_argument("--out", required=True, type=Path, help="where the scores go: .csv or .parquet")
    p.add_argument("--token", default=os.environ.get("VFL_TOKEN"), help="bearer token (default: $VFL_TOKEN)")
    p.add_argument("--ca", type=Path, default=default_ca(),
                   help="the federation's ca.pem, to trust party B's https certificate (default: $VFL_CA)")
    p.add_argument("--id-column", default="id", help="the input's ID column (default: id)")
    p.add_argument("--chunk-rows", type=int, default=10_000, help="IDs per predict call (default 10000)")
    p.add_argument("--remote", action="store_true",
                   help="party B reads --input and writes --out on its own host, in its batch folders ([scoring] "
                        "batch_inputs and batch_outputs: paths relative to them), as a background batch; this "
                        "command follows its progress")
    p.add_argument("--interval", type=float, default=1.0, help="--remote: seconds between polls")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.orchestrate import Orchestrator

    if not args.token:
        raise ConfigError("give --token or set VFL_TOKEN: the service needs its bearer token")
    if not args.url:
        raise ConfigError("give party B's URL (vfl score https://bank.example:8702 ...) or set VFL_URL")
    if args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows {args.chunk_rows}: give a positive number of IDs per request")
    check_ca_file(args.ca)
    with ca_hint(args.url, args.ca), Orchestrator(args.url, args.token, verify=args.ca or True) as service:
        return (_score_remote if args.remote else _score_local)(args, service)


def _batch_line(status: dict[str, Any]) -> str:
    """A batch's progress on one line: state, chunks, rows done of the total, and the count of each status."""
    total = status.get("rows_total")
    done = status.get("rows_done", 0)
    share = f"{done}/{total} rows ({100 * done / total:.0f}%)" if total else f"{done} rows"
    counts = "  ".join(f"{k} {v}" for k, v in sorted((status.get("counts") or {}).items()))
    return f"{status.get('state', 'running')}: {status.get('chunks_done', 0)} chunks, {share}  {counts}".rstrip()


def _score_remote(args: argparse.Namespace, service: Orchestrator) -> int:
    """--remote: party B scores the file on its own host as a background batch; follow it until it ends."""
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


def _score_local(args: argparse.Namespace, service: Orchestrator) -> int:
    """Read --input in chunks, call B's predict per chunk, write --out; a re-run continues after the last chunk.

    Progress sits in ``<out>.progress.json`` (rewritten atomically after every chunk)
    and the output grows in ``<out>.<run>.partial`` (vfl.data.chunks), renamed to --out
    at the end. A run is the same run when the URL, job, input file (size and
    mtime), ID column and chunk size are; otherwise it starts over.
    """
    import asyncio

    from vfl.data import chunks
    from vfl.files import atomic_write_json, read_json

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
            with chunks.ResultWriter(args.out, saved["tag"]) as leftovers:  # another run's
                leftovers.discard()
    writer = chunks.ResultWriter(args.out, tag)
    total = source.rows_total
    line = ProgressLine()

    def checkpoint(done: chunks.Progress) -> None:
        atomic_write_json(sidecar, {"tag": tag, "identity": identity, "progress": done.to_dict()})
        line.show(f"{args.input.name}: {_batch_line({**done.to_dict(), 'state': 'scoring', 'rows_total': total})}")

    async def score(ids: list[str]) -> dict[str, Any]:
        return service.predict(args.job, ids)  # blocking is fine here: Ctrl-C lands between or inside calls

    with writer:
        try:
            asyncio.run(chunks.score_chunks(source, writer, progress, score, checkpoint=checkpoint))
        finally:
            line.close()
        writer.publish(progress.columns)
    sidecar.unlink(missing_ok=True)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(progress.counts.items()))
    print(f"{progress.rows_done} IDs scored into {args.out} ({counts or 'none'})")
    return 0
