#!/usr/bin/env python3
"""The local process pool against Ray, on the same cores, in one run.

    python scripts/bench_engines.py [--json] [--key-bits 2048] [--rows 10000] [--encryptions 8000]
                                    [--workers W] [--repeats 7] [--address HOST:PORT]

Measures, for both engines, the two loops that dominate an epoch, through the
code training uses:

* **products**: ``Xᵀ[[d]]`` over ``--rows`` × 10 standard normal features at
  2^-16 (``vfl.crypto.matvec.encrypted_matvec_t``, what
  ``EncryptedVector.matvec_t`` calls), in row-features per second;
* **encryptions**: ``Encryptor.encrypt`` of ``--encryptions`` values with an
  empty obfuscator stock, so the fresh DJN obfuscators are made on the
  engine's workers (``make_obfuscators``) and combined with the encoded
  values in this process, in encryptions per second;

and, for the scaling estimate in the README, the same work on one core
in-process and the round trip of one trivial task per worker on each engine
(what an engine adds to every parallel call). From these it estimates the
rates on 1, 2 and 4 Ray nodes like this one (see :func:`estimate`; marked as
an estimate in the output, with the one-node estimate beside the measured
figure as a check).

Every figure is the median of ``--repeats`` timed runs after a warm-up run
(which starts the pool or Ray's workers and builds each worker's fixed-base
table). The engines take turns within each repeat, alternating which goes
first, so load from other programs falls on both alike; the load average
before and after is printed.

Without ``--address`` the script starts its own one-node Ray head on this
machine with as many CPUs as the local pool has workers (127.0.0.1 only, in
its own process group) and stops it at the end. With ``--address`` it connects
to that cluster (give the service's token in RAY_AUTH_TOKEN or
RAY_AUTH_TOKEN_PATH, with RAY_AUTH_MODE=token), whose width may differ from
the local pool's.

The goal of issue 14: Ray at least 0.9× the local pool on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vfl.crypto.keys import PublicKey, generate_keypair
from vfl.crypto.matvec import deal_by_cost, encrypted_matvec_t, fixed_point_exponents, plan_column
from vfl.crypto.obfuscation import djn_obfuscators, table_stats
from vfl.crypto.encoding import encode
from vfl.crypto.vector import Encryptor, times_one_plus_mn
from vfl.compute.engine import Engine, LocalEngine, make_engine
from vfl.compute.pool import available_cores, cpu_model, resolve_workers

FEATURE_FRAC_BITS = 16  # TrainingConfig's default
VALUE_FRAC_BITS = 32
COLUMNS = 10


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Workload:
    """The same inputs for every engine: ciphertexts, features, values."""

    def __init__(self, public: PublicKey, rows: int, encryptions: int) -> None:
        rng = np.random.default_rng(1)
        self.public = public
        self.rows, self.encryptions = rows, encryptions
        self.cts = djn_obfuscators(public.n, public.hs, rows)  # units mod n²: as good as ciphertexts here
        self.exps = fixed_point_exponents(rng.normal(size=(rows, COLUMNS)), FEATURE_FRAC_BITS)
        self.values = rng.normal(size=encryptions)

    def product(self, engine: Engine | int) -> None:
        encrypted_matvec_t(self.cts, self.exps, self.public.nsquare, engine=engine)

    def encrypt(self, engine: Engine | int) -> None:
        # A new Encryptor has an empty stock: every obfuscator is made now, on the engine.
        Encryptor(self.public, "djn", engine=engine).encrypt(self.values, VALUE_FRAC_BITS)

    def task_round_trip(self, engine: Engine) -> None:
        engine.map(table_stats, [(i,) for i in range(max(2, engine.workers))])


def measure(work: Workload, engines: dict[str, Engine], repeats: int) -> dict[str, dict[str, float]]:
    """Median rates per engine; the engines take turns in every repeat."""
    timings: dict[str, dict[str, list[float]]] = {name: {"product": [], "encrypt": [], "task": []} for name in engines}
    for name, engine in engines.items():  # warm-up: workers started, tables built, functions registered
        work.product(engine)
        work.encrypt(engine)
        work.task_round_trip(engine)
    order = list(engines)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            engine = engines[name]
            timings[name]["product"].append(seconds(lambda: work.product(engine)))
            timings[name]["encrypt"].append(seconds(lambda: work.encrypt(engine)))
            timings[name]["task"].append(min(seconds(lambda: work.task_round_trip(engine)) for _ in range(5)))
    out = {}
    for name, t in timings.items():
        out[name] = {
            "product_per_s": round(work.rows * COLUMNS / statistics.median(t["product"])),
            "encrypt_per_s": round(work.encryptions / statistics.median(t["encrypt"])),
            "task_round_trip_ms": round(1000 * statistics.median(t["task"]), 2),
            "product_seconds": [round(x, 3) for x in t["product"]],
            "encrypt_seconds": [round(x, 3) for x in t["encrypt"]],
        }
    return out


def one_core(work: Workload, repeats: int) -> dict[str, float]:
    """The same work in this process: per-core rates, and the serial part of an encryption."""
    work.product(1)
    work.encrypt(1)
    product = statistics.median(seconds(lambda: work.product(1)) for _ in range(max(1, repeats // 2)))
    encrypt = statistics.median(seconds(lambda: work.encrypt(1)) for _ in range(max(1, repeats // 2)))
    public = work.public
    n, nsq = public.n, public.nsquare
    obfuscate = statistics.median(
        seconds(lambda: djn_obfuscators(n, public.hs, work.encryptions)) for _ in range(max(1, repeats // 2))
    )
    ready = djn_obfuscators(n, public.hs, work.encryptions)

    def serial() -> None:  # what Encryptor.encrypt does in the calling process, given the obfuscators
        encoded = encode(work.values, VALUE_FRAC_BITS, n)
        [times_one_plus_mn(r, m, n, nsq) for m, r in zip(encoded, ready)]

    return {
        "product_per_s": round(work.rows * COLUMNS / product),
        "encrypt_per_s": round(work.encryptions / encrypt),
        "obfuscators_per_s": round(work.encryptions / obfuscate),
        # encode + c·(1 + m·n) for every value: stays in the calling process whatever the engine
        "encrypt_serial_seconds": round(statistics.median(seconds(serial) for _ in range(max(1, repeats // 2))), 4),
    }


def estimate(work: Workload, report: dict[str, Any], cores_per_node: int, nodes: list[int],
             network_gbit: float) -> dict[str, Any]:
    """Rates on Ray clusters of ``nodes`` nodes with ``cores_per_node`` cores each: a model, not a measurement.

    Built only from figures measured in this run (one-core rates, the serial
    part of an encryption, Ray's task round trip) and an assumed network:

    * product: the columns are dealt to the W = nodes × cores workers by
      estimated cost (``deal_by_cost`` on the real column plans, as
      ``encrypted_matvec_t`` does), so a call takes the costliest worker's share
      of the one-core time, plus one task round trip, plus sending the packed
      ciphertexts to every other node over the head's link (one after another:
      the worst case);
    * encryption: the obfuscators are split evenly over W workers, plus the
      serial part in the calling process, plus one round trip, plus the
      obfuscators made on other nodes coming back over the network.

    The model assumes perfect use of every core; on a shared machine a
    node gets less. So the estimate reported is the *measured* one-node Ray
    rate times the model's speed-up over one node (``scaled_from_measured``);
    the model's own figures are kept as ``ideal``.
    """
    one, ray_ = report["one_core"], report["ray"]
    width = work.public.ciphertext_bytes
    link = network_gbit * 1e9 / 8  # bytes per second
    plans = [plan_column(col) for col in np.ascontiguousarray(work.exps.T)]
    total_cost = sum(p.cost for p in plans)
    product_one_core = work.rows * COLUMNS / one["product_per_s"]
    obfuscate_one_core = work.encryptions / one["obfuscators_per_s"]
    round_trip = ray_["task_round_trip_ms"] / 1000
    ideal: dict[int, tuple[float, float]] = {}
    for count in sorted({1, *nodes}):  # one node: the base the speed-ups are taken against
        w = count * cores_per_node
        groups = deal_by_cost([p.cost for p in plans], w)
        share = max(sum(plans[j].cost for j in g) for g in groups) / total_cost
        ship = (count - 1) * work.rows * width / link
        product = share * product_one_core + round_trip + ship
        back = work.encryptions * width * (count - 1) / count / link
        encrypt = obfuscate_one_core / w + one["encrypt_serial_seconds"] + round_trip + back
        ideal[count] = (work.rows * COLUMNS / product, work.encryptions / encrypt)
    base = ideal[1]
    out: dict[str, Any] = {"cores_per_node": cores_per_node, "network_gbit_per_s": network_gbit, "nodes": {}}
    for count in nodes:
        product, encrypt = ideal[count]
        out["nodes"][str(count)] = {
            "workers": count * cores_per_node,
            "scaled_from_measured": {"product_per_s": round(ray_["product_per_s"] * product / base[0]),
                                     "encrypt_per_s": round(ray_["encrypt_per_s"] * encrypt / base[1])},
            "ideal": {"product_per_s": round(product), "encrypt_per_s": round(encrypt)},
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    workers = resolve_workers(args.workers)
    report: dict[str, Any] = {
        "machine": {"cores": available_cores(), "cpu": cpu_model(), "python": platform.python_version(),
                    "load_average_before": load_average()},
        "key_bits": args.key_bits,
        "rows": args.rows, "columns": COLUMNS, "encryptions": args.encryptions, "repeats": args.repeats,
    }
    public, _ = generate_keypair(args.key_bits, min_bits=min(args.key_bits, 1024))
    work = Workload(public, args.rows, args.encryptions)
    head = None
    try:
        if args.address is None:
            from vfl.compute.ray_head import LocalRayHead

            head = LocalRayHead(workers)
            address = head.start()
        else:
            address = args.address
        import ray

        ray_engine = make_engine("ray", address=address)
        report["ray_cluster"] = {"address": "own local head" if head else address, "cpus": ray_engine.workers,
                                 "ray": ray.__version__}
        local = LocalEngine(workers)
        report["local_workers"] = workers
        measured = measure(work, {"local": local, "ray": ray_engine}, args.repeats)
        report["one_core"] = one_core(work, args.repeats)
    finally:
        if head is not None:
            head.stop()
    report.update(measured)
    report["ratio"] = {
        "product": round(measured["ray"]["product_per_s"] / measured["local"]["product_per_s"], 3),
        "encrypt": round(measured["ray"]["encrypt_per_s"] / measured["local"]["encrypt_per_s"], 3),
    }
    report["estimate"] = estimate(work, report, workers, [1, 2, 4], args.network_gbit)
    report["machine"]["load_average_after"] = load_average()
    return report


def print_table(report: dict[str, Any]) -> None:
    m, local, ray_, ratio, one = report["machine"], report["local"], report["ray"], report["ratio"], report["one_core"]
    print(f"{report['key_bits']}-bit keys; local pool {report['local_workers']} workers, Ray "
          f"{report['ray_cluster']['cpus']} CPUs ({report['ray_cluster']['address']}, Ray {report['ray_cluster']['ray']}); "
          f"{m['cores']} cores, {m['cpu']}, Python {m['python']}")
    print(f"load average before {m['load_average_before']}, after {m['load_average_after']}; "
          f"medians of {report['repeats']} runs, engines taking turns")
    row = "{:44s}{:>12s}{:>12s}{:>10s}{:>12s}"
    print()
    print(row.format("", "local", "ray", "ray/local", "one core"))
    print(row.format(f"Xᵀ[[d]] row-features/s ({report['rows']:,}×{report['columns']})", f"{local['product_per_s']:,}",
                     f"{ray_['product_per_s']:,}", f"{ratio['product']:.2f}", f"{one['product_per_s']:,}"))
    print(row.format(f"encryptions/s ({report['encryptions']:,}, fresh obfuscators)", f"{local['encrypt_per_s']:,}",
                     f"{ray_['encrypt_per_s']:,}", f"{ratio['encrypt']:.2f}", f"{one['encrypt_per_s']:,}"))
    print(row.format("one trivial task per worker, round trip ms", f"{local['task_round_trip_ms']}",
                     f"{ray_['task_round_trip_ms']}", "", ""))
    print(f"\none core: {one['obfuscators_per_s']:,} obfuscators/s; the part of an encryption that stays in the "
          f"calling process (encode, c·(1+mn)) takes {one['encrypt_serial_seconds']} s per {report['encryptions']:,}")
    est = report["estimate"]
    print(f"\nESTIMATE, not measured: Ray on 1, 2, 4 nodes of {est['cores_per_node']} cores, "
          f"{est['network_gbit_per_s']:g} Gbit/s links: the measured one-node Ray rate times the modelled speed-up")
    row = "{:8s}{:>9s}{:>26s}{:>16s}{:>34s}"
    print(row.format("nodes", "workers", "Xᵀ[[d]] row-features/s", "encryptions/s", "ideal model (product, encrypt)"))
    for count, e in est["nodes"].items():
        scaled, ideal = e["scaled_from_measured"], e["ideal"]
        print(row.format(count, str(e["workers"]), f"{scaled['product_per_s']:,}", f"{scaled['encrypt_per_s']:,}",
                         f"{ideal['product_per_s']:,}, {ideal['encrypt_per_s']:,}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=10_000, help=f"rows of the product (× {COLUMNS} columns)")
    parser.add_argument("--encryptions", type=int, default=8_000, help="values encrypted per timed run")
    parser.add_argument("--workers", type=int, default=None,
                        help="local pool workers and CPUs of the own Ray head (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (median reported)")
    parser.add_argument("--network-gbit", type=float, default=1.0,
                        help="link speed assumed by the multi-node estimate, Gbit/s (default 1)")
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster's head (host:port); default: start a local one and stop it")
    args = parser.parse_args()
    for name in ("rows", "encryptions", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.key_bits < 1024 or args.key_bits % 2:
        parser.error("--key-bits must be even and at least 1024")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
