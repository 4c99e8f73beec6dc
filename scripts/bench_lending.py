#!/usr/bin/env python3
"""Benchmark multi-lender queries: query latency over mTLS, and tag-set publication throughput.

    python scripts/bench_lending.py [--queries 500] [--key-bits 2048] [--borrowers 2000] [--lenders 3]
                                    [--publish-ids 20000] [--workers W] [--json]

1. **Query latency.** Starts the querier and ``--lenders`` lenders as real
   ``vfl serve`` processes on loopback with mutual TLS (the layout of
   ``vfl demo --lending``), waits for their tag sets, then times
   ``--queries`` calls of ``POST /v1/lending-query`` with one ID each, as a
   client of the querier sees them (keep-alive HTTPS): the querier blinds the
   ID under every lender's key, asks all lenders at once over mTLS, each
   checks, charges the budget (written to disk), signs with its 3-prime CRT
   key and verifies, and the querier checks, unblinds and matches. The IDs
   cycle over the population, so about ``borrowers / population`` of them
   are found at each lender. The first query (which fetches the tag sets) is
   left out; p50, p90, p99 and the mean are reported, and the querier's own
   time for the fan-out (the ``seconds`` of its answer). For scale, the same
   number of blind-sign calls straight to one lender with the querier's
   certificate, one value each.
2. **Publication throughput.** :func:`vfl.lending.publish` on
   ``--publish-ids`` IDs in this process with ``--workers`` worker processes
   (default: all cores), for 3-prime and 2-prime keys: signatures per second,
   key generation included. The lenders' own publication times at start-up
   are reported beside it (they share the machine with the other services).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfl.demo.lending import (  # noqa: E402
    QUERIER,
    client_for,
    running_lending_services,
    wait_published,
    write_lending_files,
)
from vfl.compute.engine import as_engine  # noqa: E402
from vfl.lending import publish  # noqa: E402
from vfl.compute.pool import resolve_workers  # noqa: E402
from vfl.service.tls import client_ssl_context  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def query_latency(args: argparse.Namespace, workdir: Path) -> dict:
    setup = write_lending_files(workdir, lenders=args.lenders, population=args.population, borrowers=args.borrowers,
                                key_bits=args.key_bits,
                                lending={"budget_per_day": 10_000_000, "rate_per_minute": 1_000_000})
    with running_lending_services(workdir, setup["names"]) as processes:
        published = wait_published(setup, processes, workdir)
        with client_for(setup, QUERIER) as bank:
            ids = setup["population"]
            bank.post("/v1/lending-query", json={"ids": [ids[0]]}).raise_for_status()  # fetches the tag sets
            seconds, inside, found = [], [], 0
            for i in range(args.queries):
                started = time.perf_counter()
                response = bank.post("/v1/lending-query", json={"ids": [ids[(i + 1) % len(ids)]]})
                seconds.append(time.perf_counter() - started)
                response.raise_for_status()
                found += len(response.json()["results"][0]["found_at"])
                inside.append(response.json()["seconds"] * 1000)
        direct = blind_sign_latency(setup, args.queries)
        lenders = {}
        for name in setup["lenders"]:
            with client_for(setup, name) as lender:
                state = lender.get("/v1/lending").json()["lender"]
            lenders[name] = {"borrowers": state["tag_set"]["size"], "publish_seconds": state["publish_seconds"],
                             "signatures_per_second": state["tag_set"]["size"] / state["publish_seconds"]}
    ms = [s * 1000 for s in seconds]
    return {"lenders": args.lenders, "key_bits": args.key_bits, "queries": args.queries, "ids_per_query": 1,
            "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
            "mean_ms": statistics.fmean(ms), "max_ms": max(ms), "found_per_query": found / args.queries,
            "querier_p50_ms": percentile(inside, 50), "querier_p99_ms": percentile(inside, 99),
            "key_ids": {n: s["key_id"] for n, s in published.items()}, "lender_publication": lenders,
            "one_lender_blind_sign": direct}


def blind_sign_latency(setup: dict, count: int) -> dict:
    """One blind-sign call to one lender over mTLS with the querier's certificate (keep-alive), p50 and p99."""
    folder = setup["folders"][QUERIER]
    context = client_ssl_context(folder / "ca.pem", folder / f"{QUERIER}.pem", folder / f"{QUERIER}.key")
    lender = setup["lenders"][0]
    with httpx.Client(base_url=setup["urls"][lender], verify=context, timeout=60) as peer:
        tag_set = peer.get("/v1/peer/lending/tag-set").json()
        n = int(tag_set["n"], 16)
        ms = []
        for _ in range(count):
            value = format(secrets.randbelow(n - 2) + 2, "x")
            started = time.perf_counter()
            response = peer.post("/v1/peer/lending/blind-sign", json={"key_id": tag_set["key_id"], "values": [value]})
            ms.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {"lender": lender, "calls": count, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


def publication(args: argparse.Namespace) -> dict:
    ids = [f"C{i:08d}" for i in range(args.publish_ids)]
    engine = as_engine(resolve_workers(args.workers))
    out = {"ids": args.publish_ids, "workers": engine.workers, "key_bits": args.key_bits}
    publish(ids[:64], epoch=1, now=time.time(), rotate_every=86400, key_bits=1024, min_key_bits=1024,
            engine=engine)  # start the worker processes before timing
    for primes in (3, 2):
        started = time.perf_counter()
        _, tags = publish(ids, epoch=1, now=time.time(), rotate_every=86400, key_bits=args.key_bits,
                          min_key_bits=min(args.key_bits, 2048), primes=primes, engine=engine)
        seconds = time.perf_counter() - started
        assert tags.size == len(ids)
        out[f"primes_{primes}"] = {"seconds": seconds, "signatures_per_second": len(ids) / seconds}
    engine.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--lenders", type=int, default=3)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--borrowers", type=int, default=2000, help="borrowers per lender (query part)")
    parser.add_argument("--population", type=int, default=10_000)
    parser.add_argument("--publish-ids", type=int, default=20_000, help="IDs of the publication measurement")
    parser.add_argument("--workers", type=int, default=None, help="publication: worker processes (default all cores)")
    parser.add_argument("--skip-publication", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vfl-bench-lending-") as tmp:
        result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "processor": platform.processor() or platform.machine()},
                  "query": query_latency(args, Path(tmp))}
    if not args.skip_publication:
        result["publication"] = publication(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    q = result["query"]
    print(f"query, 1 ID against {q['lenders']} lenders over mTLS ({q['key_bits']}-bit keys, {q['queries']} queries): "
          f"p50 {q['p50_ms']:.1f} ms, p90 {q['p90_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms, mean {q['mean_ms']:.1f} ms")
    print(f"  of which inside the querier (fan-out to the lenders and back): p50 {q['querier_p50_ms']:.1f} ms, "
          f"p99 {q['querier_p99_ms']:.1f} ms")
    d = q["one_lender_blind_sign"]
    print(f"  one blind-sign call to {d['lender']} alone, over mTLS: p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms")
    for name, lender in q["lender_publication"].items():
        print(f"  {name}: published {lender['borrowers']} tags at start-up in {lender['publish_seconds']:.2f} s "
              f"({lender['signatures_per_second']:.0f} signatures/s, sharing the machine with the other services)")
    if "publication" in result:
        p = result["publication"]
        for primes in (3, 2):
            r = p[f"primes_{primes}"]
            print(f"publication, {p['ids']} IDs, {p['key_bits']}-bit {primes}-prime key, {p['workers']} workers: "
                  f"{r['seconds']:.2f} s, {r['signatures_per_second']:.0f} signatures/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
