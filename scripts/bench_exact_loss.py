#!/usr/bin/env python3
"""What the exact log-loss costs against the Taylor loss, and what it buys, in one run.

    PYTHONPATH=. python scripts/bench_exact_loss.py [--data default_credit] [--key-bits 2048] [--epochs 2]
                        [--workers 2] [--json]

Both losses train the same FATE pair (``../shared/data/fate/<data>_hetero_{host,guest}.csv``)
through ``vfl.local.simulate`` with the same keys' size, epochs and workers, one after
the other (Taylor first). Printed per loss: seconds per epoch (the training time over
the epochs run; the arbiter's key generation is outside it), the arbiter's decryptions,
bytes on the wire, and the training AUC. The exact loss adds, per batch, one decryption
of the batch's scores and one or two encryptions per row at the arbiter.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from vfl.data.table import load_csv
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig
from vfl.ml.prep import PrepConfig

FATE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="default_credit")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host, guest = FATE / f"{args.data}_hetero_host.csv", FATE / f"{args.data}_hetero_guest.csv"
    if not host.exists():
        raise SystemExit(f"{host} is missing: put ../shared (with data/fate) beside the repository")
    id_column = "sid" if args.data in ("ionosphere_scale", "vehicle_scale") else "id"
    label = "label" if id_column == "sid" else "y"
    prep = PrepConfig(impute="mean")
    table_a = load_csv(host, id_column=id_column, prep=prep)
    table_b = load_csv(guest, id_column=id_column, label_column=label, model="logistic", prep=prep)
    rows = {}
    for loss in ("taylor", "exact"):
        config = TrainingConfig(model="logistic", key_bits=args.key_bits, epochs=args.epochs, tol=0, loss=loss)
        started = time.perf_counter()
        result = simulate(table_a, table_b, config, workers=args.workers)
        rows[loss] = {
            "seconds_per_epoch": round(result["timings"]["training"] / result["epochs_run"], 2),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "decryptions": result["decryptions"],
            "megabytes": round(result["bytes_exchanged"] / 1e6, 1),
            "train_auc": round(result["metrics"]["train"]["auc"], 4),
        }
    ratio = rows["exact"]["seconds_per_epoch"] / rows["taylor"]["seconds_per_epoch"]
    out = {"data": args.data, "key_bits": args.key_bits, "epochs": args.epochs, "workers": args.workers,
           "machine": platform.processor() or platform.machine(), "losses": rows, "exact_over_taylor": round(ratio, 2)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.data}, {args.key_bits}-bit keys, {args.epochs} epochs, {args.workers} workers")
    for loss, row in rows.items():
        print(f"  {loss:6s} {row['seconds_per_epoch']:7.2f} s/epoch  {row['decryptions']:8d} decryptions  "
              f"{row['megabytes']:7.1f} MB  train AUC {row['train_auc']:.4f}")
    print(f"  exact / taylor: {ratio:.2f}x per epoch")


if __name__ == "__main__":
    main()
