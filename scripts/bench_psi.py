#!/usr/bin/env python3
"""Benchmark the PSI, RSA blind signatures or ECDH over X25519: N × N IDs with a given overlap.

    python scripts/bench_psi.py --ids 10000 --overlap 0.3 --key-bits 2048 [--primes 3] [--workers W]
                                [--protocol rsa|ecdh|both] [--repeat R] [--bucket-ids B] [--stream]
                                [--engine local|ray] [--json]

``--protocol both`` runs RSA and ECDH in the same run, interleaved repeat by
repeat (so load from other programs hits both alike), and reports each one's
median and ECDH's speed-up over RSA.
    python scripts/bench_psi.py --ids 10000000 --hash-only [--bucket-ids B] [--json]

``--stream`` gives both roles their IDs as a generator (as a CSV, Parquet or
SQL source's ``iter_ids`` does) instead of a list: they spill them into
buckets on disk and hold one bucket at a time, which is what bounds memory.
``--hash-only`` runs party B's side of that path without the RSA work, for
sizes whose full run would take hours (see :func:`hash_only`), and reports
its peak RSS.

Runs the real protocol (both roles, every message through the wire codec) and
prints seconds, IDs per second (2N IDs processed), IDs per second per core,
bytes exchanged and peak memory. In the same run it times party A's signing
alone, one process, on sampled IDs (median of ``--micro-repeat`` rounds,
interleaved so that load from other programs hits every method alike):

- naive: plain pow(y, d, n), without CRT, the textbook way;
- 2-prime CRT and 3-prime CRT: ``psi.keys.sign_many``, as the protocol
  signs B's values (RFC 8017 RSASP1 with the CRT, each signature verified).

The naive rate, extrapolated to the same 2N signatures, gives the baseline of
``speedup_vs_naive`` (signing only: a lower bound on a naive protocol's time,
so the ratio compares like with like and errs against us).

Peak memory: ``peak_rss_mb`` is this process's (getrusage RUSAGE_SELF);
``peak_rss_children_mb`` is the largest single worker process's
(RUSAGE_CHILDREN, read after the pool has been shut down and its workers
reaped, since only waited-for children count).
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import platform
import resource
import statistics
import sys
import time

import gmpy2

from psi import run_psi
from psi.buckets import DEFAULT_BUCKET_IDS, PsiIds
from psi.hashing import fdh
from psi.keys import DEFAULT_PRIMES, generate_rsa_key, sign_many
from vfl.compute.pool import cpu_model, resolve_workers, shutdown_pools


def id_stream(start: int, count: int):
    """A re-readable stream of synthetic IDs (what a source's ``iter_ids`` gives), never a list."""
    def read():
        return (f"user-{i:09d}" for i in range(start, start + count))
    return read


def hash_only(n: int, overlap: float, bucket_ids: int, key_bits: int, chunk: int = 4096) -> dict[str, object]:
    """Party B's bucketed path without the RSA work: what B holds at once, bucket by bucket.

    B streams its IDs into buckets on disk; per bucket it reads them back,
    full-domain hashes them a chunk at a time (as it blinds them) and keeps a
    tag → index map; it receives A's tags of the bucket as a set (made here
    from A's spilled IDs, as they would arrive over the wire), saves the
    bucket's result to disk and frees it all; at the end it merges the
    results. A holds less: the same per-bucket map of its own tags, no set of
    B's. Tags are SHA-256 of the hash, as big as the real ones.
    """
    import hashlib
    import tempfile

    import numpy as np

    from psi.buckets import DiskBucketResults, PsiIds, bucket_count

    shared = int(round(n * overlap))
    key = generate_rsa_key(key_bits, min_bits=min(key_bits, 1024))
    salt, width, modulus = b"s" * 32, key.public.byte_width, key.public.n
    k = bucket_count(n, n, bucket_ids)

    def tags_of(ids: list[str]) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(ids), chunk):
            out.extend(hashlib.sha256(int(fdh(x, salt, modulus)).to_bytes(width, "big")).digest()
                       for x in ids[start : start + chunk])
        return out

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vfl-bench-psi-") as folder:
        own = PsiIds(id_stream(n - shared, n), source="B", normalized=True, spill_dir=f"{folder}/b")
        peer = PsiIds(id_stream(0, n), source="A", normalized=True, spill_dir=f"{folder}/a")
        buckets, peer_buckets = own.buckets(k), peer.buckets(k)
        spilled = time.perf_counter() - started
        results = DiskBucketResults(f"{folder}/results")
        results.open({"bench": True})
        for bucket in range(k):
            rows, ids = buckets.read(bucket)
            tag_rows = {t: i for i, t in enumerate(tags_of(ids))}
            peer_tags = set(tags_of(peer_buckets.read(bucket)[1]))
            found = sorted((i for t, i in tag_rows.items() if t in peer_tags), key=ids.__getitem__)
            results.save(bucket, [ids[i] for i in found], rows[found] if found else np.empty(0, np.int64))
            del rows, ids, tag_rows, peer_tags, found
        merged = results.merged_rows(k)
        own.close()
        peer.close()
    if len(merged) != shared:
        raise SystemExit(f"wrong intersection: {len(merged)} != {shared}")
    return {"mode": "hash-only, party B's path", "ids_per_side": n, "buckets": k, "bucket_ids": bucket_ids,
            "intersection": shared, "spill_seconds": round(spilled, 1),
            "seconds": round(time.perf_counter() - started, 1)}


def synthetic_ids(n: int, overlap: float) -> tuple[list[str], list[str], int]:
    shared = int(round(n * overlap))
    ids_a = [f"user-{i:09d}" for i in range(n)]
    ids_b = [f"user-{i:09d}" for i in range(n - shared, 2 * n - shared)]
    return ids_a, ids_b, shared


def signing_rates(key_bits: int, naive_sample: int, crt_sample: int, repeat: int) -> dict[str, float]:
    """Signatures per second on one core: naive pow(y, d, n), 2-prime and 3-prime CRT (medians)."""
    min_bits = min(key_bits, 1024)
    keys = {primes: generate_rsa_key(key_bits, min_bits=min_bits, primes=primes) for primes in (2, 3)}
    n = keys[2].public.n
    d = keys[2].private_exponent  # the same size for either key: about key_bits bits
    naive_values = [fdh(f"x{i}", b"s" * 32, n) for i in range(naive_sample)]
    crt_values = {p: [fdh(f"x{i}", b"s" * 32, k.public.n) for i in range(crt_sample)] for p, k in keys.items()}
    parts = {p: k.crt_parts() for p, k in keys.items()}

    def naive() -> float:
        started = time.perf_counter()
        for y in naive_values:
            gmpy2.powmod(y, d, n)
        return naive_sample / (time.perf_counter() - started)

    def crt(primes: int) -> float:
        started = time.perf_counter()
        sign_many(crt_values[primes], *parts[primes])
        return crt_sample / (time.perf_counter() - started)

    samples: dict[str, list[float]] = {"naive": [], "crt_2_primes": [], "crt_3_primes": []}
    for _ in range(repeat):
        samples["naive"].append(naive())
        samples["crt_2_primes"].append(crt(2))
        samples["crt_3_primes"].append(crt(3))
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest reaped child) peak resident set size in MB."""
    shutdown_pools()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:  # joins the exited workers
        time.sleep(0.05)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20
    return round(own, 1), round(children, 1)


def psi_with_primes(primes: int):
    """run_psi's keyword that sets party A's key primes, as far as run_psi supports it."""
    params = inspect.signature(run_psi).parameters
    if "primes" in params:
        return {"primes": primes}
    if primes == DEFAULT_PRIMES:  # run_psi's key holder makes a key with the default number of primes
        return {}
    raise SystemExit(f"--primes {primes}: run_psi does not accept primes= yet (it makes a "
                     f"{DEFAULT_PRIMES}-prime key); only --primes {DEFAULT_PRIMES} can be benchmarked")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=10_000, help="IDs on each side")
    parser.add_argument("--overlap", type=float, default=0.3)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--primes", type=int, choices=(2, 3), default=DEFAULT_PRIMES,
                        help="primes of party A's RSA key (default %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is reported")
    parser.add_argument("--naive-sample", type=int, default=300, help="IDs the naive baseline signs per round")
    parser.add_argument("--crt-sample", type=int, default=1000, help="IDs each CRT signer signs per round")
    parser.add_argument("--micro-repeat", type=int, default=5, help="rounds of the signing measurement (median)")
    parser.add_argument("--bucket-ids", type=int, default=DEFAULT_BUCKET_IDS,
                        help="most IDs per PSI bucket (default %(default)s)")
    parser.add_argument("--protocol", choices=("rsa", "ecdh", "both"), default="rsa",
                        help="the PSI to run; both: RSA and ECDH in the same run, interleaved (default %(default)s)")
    parser.add_argument("--stream", action="store_true", help="IDs from a generator, spilled to disk")
    parser.add_argument("--hash-only", action="store_true", help="the bucketed path without the RSA work")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="where the work runs: local worker processes, or a Ray head this script starts on "
                             "127.0.0.1 with --workers CPUs (as a party's own cluster runs it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.hash_only:
        report = hash_only(args.ids, args.overlap, args.bucket_ids, args.key_bits)
        report["peak_rss_mb"] = peak_rss_mb()[0]
        report["machine"] = {"cpu": cpu_model(), "python": platform.python_version()}
        print(json.dumps(report, indent=2) if args.json else
              f"hash-only path, {args.ids:,} IDs per side in {report['buckets']} buckets: "
              f"{report['seconds']} s, peak RSS {report['peak_rss_mb']} MB")
        return 0

    workers = resolve_workers(args.workers)
    engine, head = None, None
    if args.engine == "ray":
        from vfl.compute.engine import make_engine
        from vfl.compute.ray_head import LocalRayHead

        head = LocalRayHead(workers)
        head.start()
        engine = make_engine("ray", address=head.address)
    try:
        return run_protocols(args, workers, engine)
    finally:
        if head is not None:
            head.stop()


def run_protocols(args: argparse.Namespace, workers: int, engine: object | None) -> int:
    protocols = ["rsa", "ecdh"] if args.protocol == "both" else [args.protocol]
    extra = psi_with_primes(args.primes) if "rsa" in protocols else {}
    if args.stream:
        shared = int(round(args.ids * args.overlap))
        ids_a = ids_b = None
    else:
        ids_a, ids_b, shared = synthetic_ids(args.ids, args.overlap)
    runs: dict[str, list] = {p: [] for p in protocols}
    for _ in range(args.repeat):
        for protocol in protocols:  # interleaved, so load from other programs hits both alike
            if args.stream:
                ids_a = PsiIds(id_stream(0, args.ids), source="A", normalized=True, size=args.ids)
                ids_b = PsiIds(id_stream(args.ids - shared, args.ids), source="B", normalized=True, size=args.ids)
            result = run_psi(ids_a, ids_b, key_bits=args.key_bits, min_key_bits=min(args.key_bits, 1024),
                             workers=workers, engine=engine, bucket_ids=args.bucket_ids, protocol=protocol,
                             **(extra if protocol == "rsa" else {}))
            if args.stream:
                ids_a.close()
                ids_b.close()
            if result.intersection_size != shared:
                print(f"{protocol}: wrong intersection: {result.intersection_size} != {shared}", file=sys.stderr)
                return 1
            runs[protocol].append(result)
    rss_self, rss_children = peak_rss_mb()  # before the signing measurement, which runs in this process
    total_ids = 2 * args.ids
    reports = {}
    for protocol, done in runs.items():
        seconds = statistics.median(r.seconds for r in done)
        reports[protocol] = {
            "protocol": protocol,
            "seconds": round(seconds, 3),
            "seconds_all_runs": [round(r.seconds, 3) for r in done],
            "ids_per_s": round(total_ids / seconds, 1),
            "ids_per_s_per_core": round(total_ids / seconds / workers, 1),
            # one side's IDs per second per core: both sides share the same workers in this one process
            "ids_per_s_per_core_per_side": round(args.ids / seconds / workers, 1),
            "bytes": done[0].bytes_a_to_b + done[0].bytes_b_to_a,
            "intersection": done[0].intersection_size,
            "buckets": done[0].buckets,
        }
    report: dict[str, object] = {
        "ids_per_side": args.ids,
        "overlap": args.overlap,
        "key_bits": args.key_bits,
        "primes": args.primes,
        "workers": workers,
        "runs": args.repeat,
        "streamed": args.stream,
        "engine": args.engine,
        "peak_rss_mb": rss_self,
        "peak_rss_children_mb": rss_children,
    }
    if len(protocols) == 1:
        report |= {k: v for k, v in reports[protocols[0]].items()}
    else:
        report["protocols"] = reports
        report["ecdh_speedup_vs_rsa"] = round(reports["rsa"]["seconds"] / reports["ecdh"]["seconds"], 2)
    if "ecdh" in protocols:
        from psi import ec
        report["libsodium"] = ec.libsodium_version()
    if "rsa" in protocols:
        rates = signing_rates(args.key_bits, args.naive_sample, args.crt_sample, args.micro_repeat)
        naive_rate = rates["naive"]
        naive_seconds = total_ids / naive_rate  # signing only: a lower bound for the naive protocol
        report["naive"] = {
            "method": "pow(y, d, n) without CRT in one process, signing only",
            "sampled_ids": args.naive_sample,
            "rounds": args.micro_repeat,
            "extrapolated_seconds": round(naive_seconds, 3),
            "signatures_per_s": round(naive_rate, 1),
        }
        report["speedup_vs_naive"] = round(naive_seconds / reports["rsa"]["seconds"], 2)
        report["signatures_per_s_per_core"] = {
            "method": f"one process, median of {args.micro_repeat} interleaved rounds; "
                      f"naive on {args.naive_sample} IDs, CRT (sign_many, verified) on {args.crt_sample}",
            **{name: round(rate, 1) for name, rate in rates.items()},
            "crt_2_vs_naive": round(rates["crt_2_primes"] / naive_rate, 2),
            "crt_3_vs_naive": round(rates["crt_3_primes"] / naive_rate, 2),
            "crt_3_vs_crt_2": round(rates["crt_3_primes"] / rates["crt_2_primes"], 2),
        }
    report["machine"] = {"cores": workers, "cpu": cpu_model(), "python": platform.python_version(),
                         "gmpy2": gmpy2.version()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"PSI {args.ids:,} × {args.ids:,} IDs, {args.overlap:.0%} overlap, {workers} workers "
          f"({report['machine']['cpu']})")
    for protocol in protocols:
        r = reports[protocol]
        what = (f"RSA {args.key_bits}-bit {args.primes}-prime" if protocol == "rsa"
                else f"ECDH X25519 (libsodium {report['libsodium']})")
        print(f"  {what}")
        print(f"    time            {r['seconds']:10.2f} s   (median of {len(runs[protocol])})")
        print(f"    IDs/s           {r['ids_per_s']:10,.0f}   ({r['ids_per_s_per_core']:,.0f} per core, "
              f"{r['ids_per_s_per_core_per_side']:,.0f} per core per side)")
        print(f"    bytes           {r['bytes']:10,d}")
        print(f"    intersection    {r['intersection']:10,d}")
    if len(protocols) > 1:
        print(f"  ECDH vs RSA       {report['ecdh_speedup_vs_rsa']:10.2f} × faster")
    print(f"  peak RSS          {rss_self:10,.1f} MB (this process), {rss_children:,.1f} MB (largest worker)")
    if "rsa" in protocols:
        micro = report["signatures_per_s_per_core"]
        print(f"  RSA naive baseline {report['naive']['extrapolated_seconds']:9.2f} s   (no CRT, one process; "
              f"signing only, extrapolated from {args.naive_sample} IDs)")
        print(f"  RSA speed-up      {report['speedup_vs_naive']:10.1f} × naive")
        print(f"  signatures/s per core ({args.key_bits} bits, median of {args.micro_repeat}):")
        print(f"    naive         {micro['naive']:10,.0f}")
        print(f"    2-prime CRT   {micro['crt_2_primes']:10,.0f}   ({micro['crt_2_vs_naive']:.2f} × naive)")
        print(f"    3-prime CRT   {micro['crt_3_primes']:10,.0f}   ({micro['crt_3_vs_naive']:.2f} × naive, "
              f"{micro['crt_3_vs_crt_2']:.2f} × 2-prime CRT)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
