#!/usr/bin/env python3
"""Benchmark the RSA blind-signature PSI: N × N IDs with a given overlap.

    python scripts/bench_psi.py --ids 10000 --overlap 0.3 --key-bits 2048 [--workers W] [--repeat R] [--json]

Runs the real protocol (both roles, every message through the wire codec) and
prints seconds, IDs per second (2N IDs processed), IDs per second per core,
and bytes exchanged. In the same run it times a straightforward
implementation of the key holder's work, plain pow(y, d, n) in one process
without CRT, on a sample of IDs, and extrapolates it to the same 2N
signatures (stated in the output), so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import gmpy2

from psi import run_psi
from psi.hashing import fdh
from psi.keys import generate_rsa_key
from vfl.parallel import resolve_workers


def synthetic_ids(n: int, overlap: float) -> tuple[list[str], list[str], int]:
    shared = int(round(n * overlap))
    ids_a = [f"user-{i:09d}" for i in range(n)]
    ids_b = [f"user-{i:09d}" for i in range(n - shared, 2 * n - shared)]
    return ids_a, ids_b, shared


def naive_signatures_per_second(key_bits: int, sample: int) -> float:
    """Plain y^d mod n, no CRT, one process: the textbook way."""
    key = generate_rsa_key(key_bits, min_bits=min(key_bits, 1024))
    n = key.public.n
    d = gmpy2.invert(key.public.e, (key.p - 1) * (key.q - 1))
    values = [fdh(f"x{i}", b"s" * 32, n) for i in range(sample)]
    started = time.perf_counter()
    for y in values:
        gmpy2.powmod(y, d, n)
    return sample / (time.perf_counter() - started)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=10_000, help="IDs on each side")
    parser.add_argument("--overlap", type=float, default=0.3)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is reported")
    parser.add_argument("--naive-sample", type=int, default=300, help="IDs the naive baseline signs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workers = resolve_workers(args.workers)
    ids_a, ids_b, shared = synthetic_ids(args.ids, args.overlap)
    runs = []
    for _ in range(args.repeat):
        result = run_psi(ids_a, ids_b, key_bits=args.key_bits, min_key_bits=min(args.key_bits, 1024), workers=workers)
        if result.intersection_size != shared:
            print(f"wrong intersection: {result.intersection_size} != {shared}", file=sys.stderr)
            return 1
        runs.append(result)
    seconds = statistics.median(r.seconds for r in runs)
    total_ids = 2 * args.ids
    naive_rate = naive_signatures_per_second(args.key_bits, args.naive_sample)
    naive_seconds = total_ids / naive_rate  # signing only: a lower bound for the naive protocol
    report = {
        "ids_per_side": args.ids,
        "overlap": args.overlap,
        "key_bits": args.key_bits,
        "workers": workers,
        "runs": len(runs),
        "seconds": round(seconds, 3),
        "seconds_all_runs": [round(r.seconds, 3) for r in runs],
        "ids_per_s": round(total_ids / seconds, 1),
        "ids_per_s_per_core": round(total_ids / seconds / workers, 1),
        "bytes": runs[0].bytes_a_to_b + runs[0].bytes_b_to_a,
        "intersection": runs[0].intersection_size,
        "naive": {
            "method": "pow(y, d, n) without CRT in one process, signing only",
            "sampled_ids": args.naive_sample,
            "extrapolated_seconds": round(naive_seconds, 3),
            "signatures_per_s": round(naive_rate, 1),
        },
        "speedup_vs_naive": round(naive_seconds / seconds, 2),
        "machine": {"cores": workers, "cpu": cpu_model(), "python": platform.python_version(),
                    "gmpy2": gmpy2.version()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"PSI {args.ids:,} × {args.ids:,} IDs, {args.overlap:.0%} overlap, {args.key_bits}-bit RSA, "
              f"{workers} workers ({report['machine']['cpu']})")
        print(f"  time            {seconds:10.2f} s   (median of {len(runs)})")
        print(f"  IDs/s           {report['ids_per_s']:10,.0f}   ({report['ids_per_s_per_core']:,.0f} per core)")
        print(f"  bytes           {report['bytes']:10,d}")
        print(f"  intersection    {report['intersection']:10,d}")
        print(f"  naive baseline  {naive_seconds:10.2f} s   (no CRT, one process; signing only, "
              f"extrapolated from {args.naive_sample} IDs)")
        print(f"  speed-up        {report['speedup_vs_naive']:10.1f} ×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
