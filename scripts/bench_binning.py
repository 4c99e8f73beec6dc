#!/usr/bin/env python3
"""What federated binning costs, against one training epoch on the same data, in the same run.

    python scripts/bench_binning.py [--key-bits 2048] [--repeats 3] [--workers W] [--epochs 1]

On FATE's default_credit pair (30,000 aligned rows; the feature party's 10
columns x0..x9 are its characteristics; party B holds y), with the roles of
:mod:`vfl.protocol.binning` and every message put through the wire codec:

* B's key: generating its own Paillier key pair (and the modulus proof);
* B's encryption of y (one [[y]] for all feature parties);
* A's answer: fine bins, per-bin products of [[y]], masks under fresh strict encryptions;
* B's decryption of the masked counts, and its coarse classing, WOE and IV;
* A's merge of its fine bins.

Then one epoch of logistic regression with the existing four-step protocol on
the same pair (A's 10 + B's 13 columns, batch 5,000, through the real roles and
the in-memory channel, as ``scripts/bench.py`` runs it): the first epoch (which
starts the pool and builds tables) and the median of ``--epochs`` more. Binning
figures are medians over ``--repeats`` runs after one warm-up run. Prints one
JSON object with ``ratio_binning_to_epoch`` = binning seconds / epoch seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/bench.py: the data and the epoch

import bench

from vfl.compute.engine import ENGINES, make_engine
from vfl.compute.pool import available_cores, cpu_model
from vfl.crypto.keys import generate_keypair
from vfl.protocol import binning
from vfl.protocol.binning import BinningFeatureRole, BinningLabelRole
from vfl.protocol.wire import decode_message, encode_message


def binning_run(a: Any, b: Any, engine: Any, bits: int) -> dict[str, Any]:
    """One whole binning of the feature party's characteristics; seconds per step and bytes on the wire."""
    floor = min(bits, 2048)
    seconds: dict[str, float] = {}
    decrypt = binning.decrypt_residues

    def timed_decrypt(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return decrypt(*args, **kwargs)
        finally:
            seconds["b_decrypt"] = time.perf_counter() - started

    started = time.perf_counter()
    label = BinningLabelRole("bench", b.labels, None, engine=engine, key_bits=bits, min_key_bits=floor)
    _ = label.public_key  # B makes its key pair here
    seconds["b_keygen"] = time.perf_counter() - started

    started = time.perf_counter()
    request = label.request("A")
    seconds["b_encrypt_labels"] = time.perf_counter() - started

    started = time.perf_counter()
    frames = {"request": encode_message(request)}
    request = decode_message(frames["request"])
    seconds["wire"] = time.perf_counter() - started

    feature = BinningFeatureRole("bench", "A", a.features, a.feature_names, engine=engine, min_key_bits=floor)
    started = time.perf_counter()
    counts = feature.answer(request)
    seconds["a_answer"] = time.perf_counter() - started

    started = time.perf_counter()
    frames["counts"] = encode_message(counts)
    counts = decode_message(frames["counts"])
    seconds["wire"] += time.perf_counter() - started

    binning.decrypt_residues = timed_decrypt
    try:
        started = time.perf_counter()
        result = label.receive_counts(counts)
        receive = time.perf_counter() - started
    finally:
        binning.decrypt_residues = decrypt
    seconds["b_coarse_classing"] = receive - seconds["b_decrypt"]

    started = time.perf_counter()
    frames["result"] = encode_message(result)
    result = decode_message(frames["result"])
    seconds["wire"] += time.perf_counter() - started

    started = time.perf_counter()
    feature.apply(result)
    seconds["a_apply"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    ivs = label.information_values()["A"]
    return {
        "seconds": seconds,
        "bytes": {k: len(v) for k, v in frames.items()},
        "fine_bins": {name: f.count for name, f in feature.fine.items()},
        "iv": {name: round(v, 4) for name, v in ivs.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="binning runs timed after a warm-up (median)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs timed after the first (median)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--engine", choices=ENGINES, default="local")
    args = parser.parse_args()
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be at least 1")
    if args.key_bits < 1024 or args.key_bits % 2:
        parser.error("--key-bits must be even and at least 1024")
    if not (bench.FATE / "default_credit_hetero_host.csv").is_file():
        print(json.dumps({"skipped": f"FATE's default_credit pair is not under {bench.FATE}"}))
        return 0

    engine = make_engine(args.engine, workers=args.workers)
    a, b = bench.load_default_credit()
    report: dict[str, Any] = {
        "machine": {"cores": available_cores(), "engine": engine.name, "workers": engine.workers,
                    "cpu": cpu_model(), "python": platform.python_version(), "load_average_before": os.getloadavg()},
        "key_bits": args.key_bits,
        "rows": len(b.labels),
        "characteristics": len(a.feature_names),
    }

    warm = binning_run(a, b, engine, args.key_bits)  # starts the pool, builds B's DJN tables in the workers
    runs = [binning_run(a, b, engine, args.key_bits) for _ in range(args.repeats)]
    steps = runs[0]["seconds"].keys()
    median = {k: round(statistics.median(r["seconds"][k] for r in runs), 3) for k in steps}
    report["binning"] = {
        "median_seconds": median,
        "each_total_seconds": [round(r["seconds"]["total"], 3) for r in runs],
        "warm_up_total_seconds": round(warm["seconds"]["total"], 3),
        "bytes": runs[0]["bytes"],
        "fine_bins": runs[0]["fine_bins"],
        "iv": runs[0]["iv"],
    }

    keypair = generate_keypair(args.key_bits, min_bits=min(args.key_bits, 1024))
    epochs = bench.run_epochs(keypair, engine, 1 + args.epochs, prefetch=True)["epochs"]
    epoch_seconds = statistics.median(e["seconds"] for e in epochs[1:])
    report["epoch"] = {
        "seconds": round(epoch_seconds, 3),
        "first_epoch_seconds": round(epochs[0]["seconds"], 3),
        "each_seconds": [round(e["seconds"], 3) for e in epochs[1:]],
        "batch_size": bench.BATCH_SIZE,
    }
    report["ratio_binning_to_epoch"] = round(median["total"] / epoch_seconds, 3)
    report["ratio_binning_without_keygen_to_epoch"] = round((median["total"] - median["b_keygen"]) / epoch_seconds, 3)
    report["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
