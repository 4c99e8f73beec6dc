#!/usr/bin/env python3
"""Benchmark the unbalanced ECDH PSI (psi/unbalanced.py): a large set encrypted once offline, small queries online.

    PYTHONPATH=. python scripts/bench_psi_unbalanced.py --large 1000000 --small 10000 [--overlap 0.5]
                        [--repeat 3] [--workers W] [--balanced] [--json]

Measured, both sides in this one process sharing ``--workers`` worker processes
(as ``scripts/bench_psi.py`` runs them), every message through the wire codec:

- offline: the large side's pass over its set (hash, multiply, tag; 16 bytes
  per ID kept), and the transfer of its sorted tags to the small side (bytes);
- online, ``--repeat`` queries with fresh blinding scalars (median): the small
  side blinds and sends its IDs, the large side answers, the small side
  unblinds and looks its tags up, the matches go back; seconds and bytes;
- with ``--balanced``, the balanced ECDH PSI (``psi.run_psi(protocol="ecdh")``)
  on the same two sets, once, in the same run: what every query would cost
  without the offline set.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

from psi import run_psi
from psi.unbalanced import LargeSet, LargeSide, OfflineKey, SmallSide, run_unbalanced, transfer_offline
from vfl.compute.engine import as_engine
from vfl.compute.pool import cpu_model, resolve_workers, shutdown_pools


def make_sets(large: int, small: int, overlap: float) -> tuple[list[str], list[str]]:
    """The large set c0..c{large-1}; the small set: ``overlap`` of it from the large set, the rest new."""
    common = int(small * overlap)
    step = max(1, large // max(common, 1))
    ids_large = [f"c{i:09d}" for i in range(large)]
    ids_small = [f"c{i:09d}" for i in range(0, step * common, step)][:common]
    ids_small += [f"n{i:09d}" for i in range(small - len(ids_small))]
    return ids_large, ids_small


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--overlap", type=float, default=0.5, help="share of the small set in the large one")
    parser.add_argument("--repeat", type=int, default=3, help="online queries; the median is reported")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--balanced", action="store_true", help="also run the balanced ECDH PSI on the same sets")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workers = resolve_workers(args.workers)
    engine = as_engine(workers)
    ids_large, ids_small = make_sets(args.large, args.small, args.overlap)
    expected = int(args.small * args.overlap)

    started = time.perf_counter()
    key = OfflineKey.new("large->small")
    table = LargeSet.build(ids_large, key, engine)
    offline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    peer, offline_bytes = transfer_offline(table, "bench", own_size=len(ids_small))
    transfer_seconds = time.perf_counter() - started

    online: list[float] = []
    online_bytes = 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = run_unbalanced(LargeSide("bench", key, table, engine), SmallSide("bench", ids_small, peer, engine),
                                ids_large=ids_large)
        online.append(time.perf_counter() - started)
        online_bytes = result.online_bytes
        if result.intersection_size != expected:
            raise SystemExit(f"wrong intersection: {result.intersection_size} != {expected}")

    report: dict[str, object] = {
        "large": args.large, "small": args.small, "intersection": expected, "workers": workers,
        "cpu": cpu_model(), "python": platform.python_version(),
        "offline_seconds": round(offline_seconds, 2), "offline_ids_per_s_per_core":
            round(args.large / offline_seconds / workers), "offline_transfer_seconds": round(transfer_seconds, 2),
        "offline_bytes": offline_bytes, "online_seconds_median": round(statistics.median(online), 3),
        "online_seconds": [round(s, 3) for s in online], "online_bytes": online_bytes,
    }
    if args.balanced:
        started = time.perf_counter()
        balanced = run_psi(ids_large, ids_small, engine=engine, protocol="ecdh")
        report["balanced_ecdh_seconds"] = round(time.perf_counter() - started, 2)
        report["balanced_ecdh_bytes"] = balanced.bytes_a_to_b + balanced.bytes_b_to_a
        report["online_speedup_vs_balanced"] = round(report["balanced_ecdh_seconds"] / statistics.median(online), 1)
        if balanced.intersection_size != expected:
            raise SystemExit(f"balanced: wrong intersection {balanced.intersection_size}")
    shutdown_pools()
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            print(f"{name:32s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
