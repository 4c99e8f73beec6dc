#!/usr/bin/env python3
"""How fast is encrypted training? Ours against a naive phe implementation, in one run.

    python scripts/bench.py [--json] [--key-bits 2048] [--rows 10000] [--workers W] [--engine local|ray] [--address H:P]
                            [--naive-sample 150] [--epochs 3] [--repeats 5]

Measures, on this machine, in the same run:

1. encryptions per second: ours (DJN fixed-base obfuscation on raw gmpy2
   integers) on one core and on all workers, against phe's ``encrypt``;
2. the encrypted product Xᵀ[[d]] (``--rows`` × 10 standard normal features at
   2^-16) in row-features per second: ours (grouped, signed-digit bucket
   multi-exponentiation) against a naive phe loop (``EncryptedNumber * float``
   summed, timed on 200 rows); with FATE's data present, also ours on real
   default_credit batches;
3. epochs of logistic regression on FATE's default_credit pair (30,000 rows,
   10 + 13 features, 2048-bit keys, batch size 5,000) through the real roles
   and the in-memory channel: the median seconds per epoch after a warm-up
   epoch, the CPU seconds it took over all processes, and where the time goes
   (encrypt, re-randomise, products, decrypt, wire encode, wire decode,
   other), the last from a separate run without background prefetch;
4. the same epoch done the naive way with phe objects (``encrypt``,
   ``ciphertext * float``, ``+``, ``obfuscate()`` to re-randomise, decimal
   strings in JSON on the wire), timed on ``--naive-sample`` rows and
   extrapolated to 30,000 (reported as sampled), and the ratio.

Rates are medians over ``--repeats`` runs. Every rate is measured in wall time;
per-core rates also in CPU time, which is what they would be on an idle
machine. The load average before and after is printed: when other programs
share the cores, wall times grow and the CPU-time figures are the fair ones.

Parts 3 and 4 need ../shared/data/fate beside the repository and are skipped
with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import phe

from vfl.ml.config import TrainingConfig
from vfl.crypto.keys import PrivateKey, PublicKey, generate_keypair
from vfl.crypto.matvec import encrypted_matvec_t, fixed_point_exponents
from vfl.crypto.obfuscation import make_obfuscators
from vfl.crypto.vector import Encryptor
from vfl.compute.engine import ENGINES, Engine, make_engine
from vfl.compute.pool import available_cores, cpu_model, pool_cpu_seconds

FATE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fate"
FEATURE_FRAC_BITS = 16  # TrainingConfig's default, used by the product benchmark
VALUE_FRAC_BITS = 32
BATCH_SIZE = 5000
PRODUCT_COLUMNS = 10
NAIVE_PRODUCT_ROWS = 200


# -- measuring ------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_rate(count: int, fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) rates in items per second of ``fn`` doing ``count`` items."""
    runs = [timed(fn) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    return count / wall, count / cpu


def all_cpu() -> float:
    """CPU seconds of this process plus every pool worker so far."""
    return time.process_time() + (pool_cpu_seconds() or 0.0)


# -- 1. encryption --------------------------------------------------------------------------


def bench_encryption(public: PublicKey, engine: Engine, repeats: int, phe_sample: int = 40) -> dict[str, Any]:
    values = np.random.default_rng(0).normal(size=8000)
    one = Encryptor(public, "djn", engine=1)
    one.encrypt(values[:10], VALUE_FRAC_BITS)  # builds this process's fixed-base table once
    per_core, per_core_cpu = median_rate(2000, lambda: one.encrypt(values[:2000], VALUE_FRAC_BITS), repeats)

    many = Encryptor(public, "djn", engine=engine)
    many.encrypt(values[:2000], VALUE_FRAC_BITS)  # starts the pool and builds each worker's table
    all_workers, _ = median_rate(8000, lambda: many.encrypt(values, VALUE_FRAC_BITS), max(1, repeats // 2))

    strict = Encryptor(public, "strict", engine=1)
    strict_rate, strict_cpu = median_rate(20, lambda: strict.encrypt(values[:20], VALUE_FRAC_BITS), 3)

    phe_key = public.phe_key
    sample = [float(v) for v in values[:phe_sample]]
    phe_rate, phe_cpu = median_rate(phe_sample, lambda: [phe_key.encrypt(v) for v in sample], 3)
    return {
        "ours_per_core": round(per_core),
        "ours_per_core_cpu_time": round(per_core_cpu),
        "ours_all_workers": round(all_workers),
        "ours_strict_per_core": round(strict_rate, 1),
        "phe_per_core": round(phe_rate, 1),
        "phe_per_core_cpu_time": round(phe_cpu, 1),
        "phe_sample": phe_sample,
        "speedup_per_core": round(per_core / phe_rate, 1),
        "speedup_per_core_cpu_time": round(per_core_cpu / phe_cpu, 1),
    }


# -- 2. the encrypted product ---------------------------------------------------------------


def naive_phe_product_seconds(public: PublicKey, cts: list, X: np.ndarray) -> float:
    """Seconds for Σ_i [[d_i]] * x_ij with phe objects, every column, on these rows."""
    phe_key = public.phe_key
    enc = [phe.EncryptedNumber(phe_key, int(c), -VALUE_FRAC_BITS) for c in cts]
    started = time.perf_counter()
    for j in range(X.shape[1]):
        total = enc[0] * float(X[0, j])
        for i in range(1, len(enc)):
            total = total + enc[i] * float(X[i, j])
    return time.perf_counter() - started


def bench_product(public: PublicKey, engine: Engine, rows: int, repeats: int) -> dict[str, Any]:
    X = np.random.default_rng(1).normal(size=(rows, PRODUCT_COLUMNS))
    cts = make_obfuscators(public, rows, "djn", engine)  # any units will do as ciphertexts
    exps = fixed_point_exponents(X, FEATURE_FRAC_BITS)
    nsq = public.nsquare
    cells = rows * PRODUCT_COLUMNS
    encrypted_matvec_t(cts[:3000], exps[:3000], nsq, engine=engine)  # warm the pool
    per_core, per_core_cpu = median_rate(cells, lambda: encrypted_matvec_t(cts, exps, nsq, engine=1), repeats)
    all_workers, _ = median_rate(cells, lambda: encrypted_matvec_t(cts, exps, nsq, engine=engine), repeats)

    sample = min(NAIVE_PRODUCT_ROWS, rows)
    naive_seconds = naive_phe_product_seconds(public, cts[:sample], X[:sample])
    phe_rate = sample * PRODUCT_COLUMNS / naive_seconds
    return {
        "shape": [rows, PRODUCT_COLUMNS],
        "feature_frac_bits": FEATURE_FRAC_BITS,
        "ours_per_core": round(per_core),
        "ours_per_core_cpu_time": round(per_core_cpu),
        "ours_all_workers": round(all_workers),
        "phe_per_core": round(phe_rate),
        "phe_sampled_rows": sample,
        "speedup_per_core": round(per_core / phe_rate, 1),
    }


def bench_product_default_credit(public: PublicKey, repeats: int) -> dict[str, Any]:
    """Ours, one core, on real 5,000-row batches of party A's and party B's standardised features."""
    a, b = load_default_credit()
    rows = np.random.default_rng(3).permutation(len(b))[:BATCH_SIZE]
    cts = make_obfuscators(public, BATCH_SIZE, "djn", 1)
    nsq = public.nsquare
    out: dict[str, Any] = {"batch_rows": BATCH_SIZE}
    for party, features in (("A", a.features), ("B", np.hstack([b.features, np.ones((len(b), 1))]))):
        scale = features.std(0)
        scale[scale == 0] = 1.0  # the intercept column stays at 1
        centre = np.where(features.std(0) == 0, 0.0, features.mean(0))
        exps = fixed_point_exponents(((features - centre) / scale)[rows], FEATURE_FRAC_BITS)
        rate, cpu_rate = median_rate(exps.size, lambda: encrypted_matvec_t(cts, exps, nsq, engine=1), repeats)
        out[f"party_{party}"] = {"columns": exps.shape[1], "ours_per_core": round(rate), "ours_per_core_cpu_time": round(cpu_rate)}
    return out


# -- 3. epochs through the real roles ---------------------------------------------------------


class Stopwatch:
    """Accumulates wall time per category by wrapping functions at run time.

    Calls nested inside a wrapped call count once, in the outer category.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, category: str) -> None:
        raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        original = getattr(owner, name)
        self._saved.append((owner, name, raw))

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[category] += time.perf_counter() - started
                self._depth -= 1

        # Class attributes (methods, classmethods) are replaced so that every
        # instance and every caller sees the timer; staticmethod keeps the
        # wrapper from binding ``self`` twice.
        setattr(owner, name, staticmethod(timed_call) if isinstance(raw, classmethod) else timed_call)

    def restore(self) -> None:
        for owner, name, raw in reversed(self._saved):
            setattr(owner, name, raw)
        self._saved.clear()


BREAKDOWN = ("encrypt", "rerandomise", "products", "decrypt", "wire_encode", "wire_decode")


@contextmanager
def instrumented() -> Iterator[Stopwatch]:
    import vfl.protocol.arbiter as arbiter
    import vfl.protocol.channel as channel
    import vfl.protocol.messages as messages
    import vfl.protocol.training_party as training_party
    from vfl.crypto import vector

    watch = Stopwatch()
    watch.wrap(vector.Encryptor, "encrypt", "encrypt")
    watch.wrap(vector.Encryptor, "encrypt_residues", "encrypt")  # the fresh masks
    watch.wrap(vector.Encryptor, "rerandomize", "rerandomise")
    watch.wrap(vector.EncryptedVector, "matvec_t", "products")  # also B's loss term (dot)
    watch.wrap(arbiter, "decrypt_residues", "decrypt")
    watch.wrap(training_party, "unmask", "decrypt")
    watch.wrap(vector.EncryptedVector, "to_bytes", "wire_encode")
    watch.wrap(messages.IntVector, "pack", "wire_encode")
    watch.wrap(channel, "encode_message", "wire_encode")
    watch.wrap(channel, "decode_message", "wire_decode")
    watch.wrap(vector.EncryptedVector, "from_bytes", "wire_decode")  # includes the unit checks
    watch.wrap(messages.IntVector, "unpack", "wire_decode")
    try:
        yield watch
    finally:
        watch.restore()


def load_default_credit():
    from vfl.data.table import load_csv

    a = load_csv(FATE / "default_credit_hetero_host.csv", id_column="id")
    b = load_csv(FATE / "default_credit_hetero_guest.csv", id_column="id", label_column="y", model="logistic")
    return a.take(a.rows_for(b.ids)), b  # the pair is already aligned by ID; PSI is benchmarked separately


def split_feature_parties(features: np.ndarray, names: list[str], k: int) -> list[tuple[np.ndarray, list[str]]]:
    """Party A's columns dealt over k feature parties, in order (B keeps its own columns)."""
    blocks = np.array_split(np.arange(features.shape[1]), k)
    return [(features[:, block], [names[i] for i in block]) for block in blocks]


def run_epochs(
    keypair: tuple[PublicKey, PrivateKey], engine: Engine | int, epochs: int, *, prefetch: bool, k: int = 1,
) -> dict[str, Any]:
    """Train ``epochs`` epochs with ``k`` feature parties; per epoch wall, CPU, breakdown and CPU per party."""
    from vfl.protocol.arbiter import Arbiter
    from vfl.protocol.channel import InMemoryChannel
    from vfl.protocol.messages import EpochDecision
    from vfl.protocol.feature_party import FeatureParty
    from vfl.protocol.label_party import LabelParty
    from vfl.protocol.roster import Roster
    from vfl.ml.schedule import gradient_lengths

    a, b = load_default_credit()
    bits = keypair[0].bits
    config = TrainingConfig(key_bits=bits, epochs=epochs, batch_size=BATCH_SIZE, tol=0)
    floor = min(bits, 2048)  # --key-bits 1024 is allowed for quick runs of this script
    roster = Roster.default(k)
    parts = split_feature_parties(a.features, a.feature_names, k)
    lengths = gradient_lengths({p: x.shape[1] for p, (x, _) in zip(roster.features, parts)}, b.features.shape[1], config)
    roles: dict[str, Any] = {
        p: FeatureParty("bench", config, x, roster=roster, party=p, engine=engine, min_key_bits=floor,
                        job_lengths=lengths)
        for p, (x, _) in zip(roster.features, parts)
    }
    roles["B"] = LabelParty("bench", config, b.features, b.labels, roster=roster, engine=engine, min_key_bits=floor,
                            job_lengths=lengths)
    roles["C"] = Arbiter("bench", config, len(b), gradient_lengths=lengths, keypair=keypair, min_key_bits=floor,
                         roster=roster)
    marks: list[tuple[float, float, dict[str, float], dict[str, float], int]] = []
    prefetch_method = Encryptor.prefetch
    if not prefetch:
        Encryptor.prefetch = lambda self, count: None  # type: ignore[method-assign]
    try:
        with instrumented() as watch:

            def on_deliver(envelope: Any) -> None:
                if isinstance(envelope.message, EpochDecision) and envelope.recipient == "B":
                    marks.append((time.perf_counter(), all_cpu(), dict(watch.seconds), dict(channel.cpu_by_role),
                                  channel.total_bytes))

            channel = InMemoryChannel(roles, on_deliver=on_deliver)
            marks.append((time.perf_counter(), all_cpu(), {}, {}, 0))
            channel.run([e for p in roster.features for e in roles[p].start()] + roles["B"].start())
    finally:
        Encryptor.prefetch = prefetch_method  # type: ignore[method-assign]
    per_epoch = []
    for (t0, c0, s0, r0, b0), (t1, c1, s1, r1, b1) in zip(marks, marks[1:]):
        parts_seconds = {key: s1.get(key, 0.0) - s0.get(key, 0.0) for key in BREAKDOWN}
        parts_seconds["other"] = (t1 - t0) - sum(parts_seconds.values())
        per_epoch.append({"seconds": t1 - t0, "cpu_seconds": c1 - c0, "breakdown": parts_seconds,
                          "cpu_by_party": {p: r1.get(p, 0.0) - r0.get(p, 0.0) for p in roles}, "bytes": b1 - b0})
    return {
        "rows": len(b),
        "features": [x.shape[1] for x, _ in parts] + [b.features.shape[1]],
        "epochs": per_epoch,
        "bytes_per_epoch": int(channel.total_bytes / max(1, len(per_epoch))),
    }


def bench_feature_parties(keypair: tuple[PublicKey, PrivateKey], counts: list[int]) -> dict[str, Any]:
    """Per party CPU seconds and bytes per epoch with k feature parties (A's 13 columns dealt over them).

    One worker, no worker processes: each role's handling time in this process
    is then its whole CPU time. One warm-up epoch, then one timed epoch.
    """
    out: dict[str, Any] = {}
    for k in counts:
        run = run_epochs(keypair, 1, 2, prefetch=False, k=k)
        epoch = run["epochs"][-1]
        out[str(k)] = {
            "features": run["features"],
            "cpu_seconds_by_party": {p: round(v, 2) for p, v in epoch["cpu_by_party"].items()},
            "bytes_per_epoch": epoch["bytes"],
            "seconds_per_epoch_one_core": round(epoch["seconds"], 2),
        }
    base = out[str(counts[0])]["cpu_seconds_by_party"]["B"]
    for k in counts:
        out[str(k)]["b_cpu_vs_first"] = round(out[str(k)]["cpu_seconds_by_party"]["B"] / base, 3)
    return out


def bench_epoch(keypair: tuple[PublicKey, PrivateKey], engine: Engine, epochs: int) -> dict[str, Any]:
    """A warm-up epoch, then ``epochs`` timed ones; the breakdown from a run without prefetch."""
    run = run_epochs(keypair, engine, epochs + 1, prefetch=True)
    warm, timed_epochs = run["epochs"][0], run["epochs"][1:]
    seconds = [e["seconds"] for e in timed_epochs]
    cpu = [e["cpu_seconds"] for e in timed_epochs]
    attributed = run_epochs(keypair, engine, 2, prefetch=False)["epochs"]
    median_index = int(np.argsort([e["seconds"] for e in attributed])[len(attributed) // 2])
    chosen = attributed[median_index]
    return {
        "rows": run["rows"],
        "features": run["features"],
        "batch_size": BATCH_SIZE,
        "seconds_per_epoch": round(statistics.median(seconds), 2),
        "seconds_each_epoch": [round(s, 2) for s in seconds],
        "first_epoch_seconds": round(warm["seconds"], 2),
        "cpu_seconds_per_epoch": round(statistics.median(cpu), 2),
        "cpu_bound_seconds_per_epoch": round(statistics.median(cpu) / engine.workers, 2),
        "breakdown_seconds": {k: round(v, 2) for k, v in chosen["breakdown"].items()},
        "breakdown_epoch_seconds": round(chosen["seconds"], 2),
        "bytes_per_epoch": run["bytes_per_epoch"],
    }


# -- 4. the same epoch, naively with phe -------------------------------------------------------


def bench_naive_epoch(keypair: tuple[PublicKey, PrivateKey], sample: int) -> dict[str, Any]:
    """The epoch's work with phe objects on ``sample`` rows, scaled to all rows.

    Per row: A encrypts u_A; [[u_A]] and [[d]] (twice, as our channel sends it
    to A and back to B) cross the wire as decimal strings in JSON; B computes
    [[d]] = ¼[[u_A]] + q and re-randomises it with ``obfuscate()``; B adds
    q·[[u_A]] into the loss; A and B add [[d]]·x into every gradient entry.
    Per batch (not scaled by rows): the masks (one phe encryption per
    gradient entry) and the arbiter's decryptions.
    """
    a, b = load_default_credit()
    public, private = keypair
    phe_pub, phe_priv = public.phe_key, private.phe_key
    rng = np.random.default_rng(2)
    rows = rng.choice(len(b), size=sample, replace=False)
    X_a = (a.features[rows] - a.features.mean(0)) / a.features.std(0)
    X_b = np.hstack([(b.features[rows] - b.features.mean(0)) / b.features.std(0), np.ones((sample, 1))])
    y = b.labels[rows]
    u_a = X_a @ rng.normal(size=X_a.shape[1]) * 0.1
    u_b = X_b @ rng.normal(size=X_b.shape[1]) * 0.1
    q = 0.25 * u_b + 0.5 - y
    per_row: dict[str, float] = {}

    started = time.perf_counter()
    enc_u_a = [phe_pub.encrypt(float(v)) for v in u_a]
    per_row["encrypt"] = time.perf_counter() - started

    def over_the_wire(values: list[phe.EncryptedNumber]) -> list[phe.EncryptedNumber]:
        frames = [json.dumps({"c": str(c.ciphertext(be_secure=False)), "e": c.exponent}) for c in values]
        return [phe.EncryptedNumber(phe_pub, int(d["c"]), d["e"]) for d in map(json.loads, frames)]

    started = time.perf_counter()
    enc_u_a = over_the_wire(enc_u_a)
    per_row["wire"] = (time.perf_counter() - started) * 3  # [[u_A]] to B, [[d]] to A and to B

    started = time.perf_counter()
    enc_d = [c * 0.25 + float(v) for c, v in zip(enc_u_a, q)]
    for c in enc_d:
        c.obfuscate()
    per_row["rerandomise"] = time.perf_counter() - started

    started = time.perf_counter()
    loss = enc_u_a[0] * float(q[0])
    for c, v in zip(enc_u_a[1:], q[1:]):
        loss = loss + c * float(v)
    gradients = []
    for X in (X_a, X_b):
        for j in range(X.shape[1]):
            total = enc_d[0] * float(X[0, j])
            for i in range(1, sample):
                total = total + enc_d[i] * float(X[i, j])
            gradients.append(total)
    per_row["products"] = time.perf_counter() - started

    started = time.perf_counter()
    masks = [phe_pub.encrypt(float(m)) for m in rng.normal(size=len(gradients))]
    for g, m in zip(gradients, masks):
        phe_priv.decrypt(g + m)
    phe_priv.decrypt(loss)
    per_batch = {"mask_and_decrypt": time.perf_counter() - started}

    batches = -(-len(b) // BATCH_SIZE)
    scaled = {k: v * len(b) / sample for k, v in per_row.items()}
    scaled.update({k: v * batches for k, v in per_batch.items()})
    return {
        "sampled_rows": sample,
        "extrapolated_to_rows": len(b),
        "seconds_per_epoch": round(sum(scaled.values()), 1),
        "breakdown_seconds": {k: round(v, 1) for k, v in scaled.items()},
    }


# -- report -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(args.engine, address=args.address, workers=args.workers)
    workers = engine.workers
    report: dict[str, Any] = {
        "machine": {
            "cores": available_cores(), "engine": engine.name, "workers": workers, "cpu": cpu_model(),
            "python": platform.python_version(), "gmpy2": gmpy2.version(), "gmp": gmpy2.mp_version(),
            "phe": phe.__version__, "load_average_before": load_average(),
        },
        "key_bits": args.key_bits,
    }
    keypair = generate_keypair(args.key_bits, min_bits=min(args.key_bits, 1024))
    report["encryption"] = bench_encryption(keypair[0], engine, args.repeats)
    report["product"] = bench_product(keypair[0], engine, args.rows, max(1, args.repeats // 2))
    if not (FATE / "default_credit_hetero_host.csv").is_file():
        report["epoch"] = f"skipped: FATE's default_credit pair is not under {FATE} (../shared is absent)"
    else:
        report["product_default_credit"] = bench_product_default_credit(keypair[0], max(1, args.repeats // 2))
        report["epoch"] = bench_epoch(keypair, engine, args.epochs)
        report["naive_epoch"] = bench_naive_epoch(keypair, args.naive_sample)
        ours, naive = report["epoch"]["seconds_per_epoch"], report["naive_epoch"]["seconds_per_epoch"]
        report["epoch_speedup"] = round(naive / ours, 1)
        # The naive code runs in one process; even spread perfectly over our cores:
        report["epoch_speedup_vs_naive_on_all_cores"] = round(naive / workers / ours, 1)
    if args.feature_parties and (FATE / "default_credit_hetero_host.csv").is_file():
        report["feature_parties"] = bench_feature_parties(keypair, args.feature_parties)
    report["machine"]["load_average_after"] = load_average()
    return report


def print_table(report: dict[str, Any]) -> None:
    m, e, p = report["machine"], report["encryption"], report["product"]
    print(f"{report['key_bits']}-bit keys, {m['workers']} workers on {m['cores']} cores, {m['cpu']}, "
          f"Python {m['python']}, gmpy2 {m['gmpy2']} ({m['gmp']}), phe {m['phe']}")
    print(f"load average before {m['load_average_before']}, after {m['load_average_after']} "
          "(above 0 means other programs shared the cores; see the CPU-time figures)")
    print(f"\n{'':46s}{'ours':>12s}{'phe':>12s}{'ratio':>9s}")
    row = "{:46s}{:>12s}{:>12s}{:>9s}"
    print(row.format("encryptions/s per core", f"{e['ours_per_core']:,}", f"{e['phe_per_core']:,.0f}", f"{e['speedup_per_core']}×"))
    print(row.format("  (CPU time)", f"{e['ours_per_core_cpu_time']:,}", f"{e['phe_per_core_cpu_time']:,.0f}",
                     f"{e['speedup_per_core_cpu_time']}×"))
    print(row.format(f"encryptions/s, {m['workers']} workers", f"{e['ours_all_workers']:,}", "", ""))
    print(row.format("encryptions/s per core, strict r^n mode", f"{e['ours_strict_per_core']:,.0f}", "", ""))
    shape = "×".join(f"{x:,}" for x in p["shape"])
    print(row.format(f"Xᵀ[[d]] row-features/s per core ({shape})", f"{p['ours_per_core']:,}", f"{p['phe_per_core']:,}",
                     f"{p['speedup_per_core']}×"))
    print(row.format("  (CPU time)", f"{p['ours_per_core_cpu_time']:,}", "", ""))
    print(row.format(f"Xᵀ[[d]] row-features/s, {m['workers']} workers", f"{p['ours_all_workers']:,}", "", ""))
    dc = report.get("product_default_credit")
    if dc:
        for party in ("A", "B"):
            d = dc[f"party_{party}"]
            print(row.format(f"  default_credit batch, party {party} ({dc['batch_rows']:,}×{d['columns']})",
                             f"{d['ours_per_core']:,}", "", ""))
    print(f"  (phe product timed on {p['phe_sampled_rows']} rows; rates at {p['feature_frac_bits']} fractional bits)")
    if not isinstance(report["epoch"], dict):
        print("\n" + report["epoch"])
        return
    for k, row_k in report.get("feature_parties", {}).items():
        print(f"k = {k} feature parties {row_k['features'][:-1]} + B {row_k['features'][-1]}: CPU s/epoch "
              + ", ".join(f"{p} {v}" for p, v in row_k["cpu_seconds_by_party"].items())
              + f"; B ×{row_k['b_cpu_vs_first']}; {row_k['bytes_per_epoch'] / 1e6:.1f} MB/epoch")
    ep, naive = report["epoch"], report["naive_epoch"]
    print(row.format("default_credit epoch, seconds", f"{ep['seconds_per_epoch']:.1f}", f"{naive['seconds_per_epoch']:.0f}",
                     f"{report['epoch_speedup']}×"))
    print(f"\nours: {ep['rows']:,} rows, {ep['features'][0]} + {ep['features'][1]} features, batch {ep['batch_size']:,}: "
          f"epochs {ep['seconds_each_epoch']} s (median {ep['seconds_per_epoch']} s; warm-up epoch {ep['first_epoch_seconds']} s "
          "starts the pool and builds tables)")
    print(f"  CPU over all processes {ep['cpu_seconds_per_epoch']} s per epoch, i.e. {ep['cpu_bound_seconds_per_epoch']} s "
          f"on {m['workers']} otherwise idle cores; {ep['bytes_per_epoch'] / 1e6:.1f} MB on the wire per epoch")
    print(f"  where an epoch goes (run without background prefetch, {ep['breakdown_epoch_seconds']} s): "
          + ", ".join(f"{k.replace('_', ' ')} {v:.2f}s" for k, v in ep["breakdown_seconds"].items()))
    print(f"naive phe: timed on {naive['sampled_rows']} rows, extrapolated to {naive['extrapolated_to_rows']:,}: "
          + ", ".join(f"{k.replace('_', ' ')} {v:.0f}s" for k, v in naive["breakdown_seconds"].items()))
    print(f"  naive runs in one process; even spread perfectly over {m['workers']} cores, ours is "
          f"{report['epoch_speedup_vs_naive_on_all_cores']}× faster")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the product benchmark (10 columns)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="where the parallel work runs: this machine's pool, or a Ray cluster (default local)")
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster's head (host:port); default a private local instance")
    parser.add_argument("--naive-sample", type=int, default=150, help="rows the naive phe epoch is timed on")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed after the warm-up one (median reported)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the encryption and product timings")
    parser.add_argument("--feature-parties", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        metavar="1,2,3", help="also measure CPU per party and bytes per epoch with k feature parties")
    parser.add_argument("--only-feature-parties", action="store_true",
                        help="skip parts 1-4; measure only --feature-parties")
    args = parser.parse_args()
    for name in ("rows", "naive_sample", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.key_bits < 1024 or args.key_bits % 2:
        parser.error("--key-bits must be even and at least 1024")
    if args.only_feature_parties:
        keypair = generate_keypair(args.key_bits, min_bits=min(args.key_bits, 1024))
        report = {"key_bits": args.key_bits, "feature_parties": bench_feature_parties(keypair, args.feature_parties or [1, 2, 3])}
        print(json.dumps(report, indent=2))
        return 0
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
