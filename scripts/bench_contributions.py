#!/usr/bin/env python3
"""Measure what each feature party adds, and what measuring it costs, on FATE's example data (k = 2 and 3).

    python scripts/bench_contributions.py [--data motor|breast|default_credit] [--key-bits 2048] [--epochs 30]
                                          [--workers 2] [--json out.json]
    python scripts/bench_contributions.py --services 5000 [--key-bits 2048]

Runs ``vfl.local.simulate(..., contributions=True)``: the job itself, then every
coalition of feature parties the exact Shapley values need (2^k − 2 more
trainings, each through the real protocol with real encryption, on the job's
aligned rows), and prints the contributions table and the times.

The data (from ``../shared/data/fate``, beside the clone):

* ``motor`` (linear regression of motor_speed, R²; 800 rows): party B is
  ``motor_hetero_guest.csv``. k = 2: FATE's own three-party split,
  ``motor_hetero_host_1.csv`` (ambient, coolant, u_d) and
  ``motor_hetero_host_2.csv`` (u_q, torque, i_d, i_q). k = 3: the same, with
  host_2's columns split over two parties (u_q, torque) and (i_d, i_q).
* ``breast`` (logistic regression, AUC; 569 rows): party B is
  ``breast_hetero_guest.csv``; the host's 20 columns are dealt out in turn
  over k parties (x0, x2, … to the first, x1, x3, … to the second, …).
* ``default_credit`` (logistic regression, AUC; 30,000 rows): the same with
  ``default_credit_hetero_guest.csv`` and the host's 10 columns.

Without the FATE data the script says so and exits with status 2.

``--services N`` measures the same at the services instead: four ``vfl serve``
processes over mTLS on this machine (``vfl demo --feature-parties 2``'s bank,
shop and telco with N synthetic customers), one job with ``"contributions":
true``; it reports the job's own time, the coalition trainings' (each a job of
its own through the services) and the ledger step's (views, signatures and
appends at all four parties).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from vfl.ml.config import TrainingConfig
from vfl.data.table import from_dataframe
from vfl.compute.pool import cpu_model
from vfl.report.contributions import text_table
from vfl.local.simulate import simulate

FATE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fate"


def motor(k: int):
    guest = pd.read_csv(FATE / "motor_hetero_guest.csv")
    host_1 = pd.read_csv(FATE / "motor_hetero_host_1.csv")
    host_2 = pd.read_csv(FATE / "motor_hetero_host_2.csv")
    if k == 2:
        parts = {"host_1": host_1, "host_2": host_2}
    else:
        parts = {"host_1": host_1, "host_2a": host_2[["idx", "u_q", "torque"]], "host_2b": host_2[["idx", "i_d", "i_q"]]}
    tables = [from_dataframe(frame, id_column="idx", source=name) for name, frame in parts.items()]
    bank = from_dataframe(guest, id_column="idx", label_column="motor_speed", model="linear", source="motor_guest")
    return tables, bank, "linear"


def breast(k: int):
    guest = pd.read_csv(FATE / "breast_hetero_guest.csv")
    host = pd.read_csv(FATE / "breast_hetero_host.csv")
    columns = [c for c in host.columns if c != "id"]
    tables = [from_dataframe(host[["id", *columns[h::k]]], id_column="id", source=f"host_part_{h + 1}")
              for h in range(k)]
    bank = from_dataframe(guest, id_column="id", label_column="y", model="logistic", source="breast_guest")
    return tables, bank, "logistic"


def default_credit(k: int):
    guest = pd.read_csv(FATE / "default_credit_hetero_guest.csv")
    host = pd.read_csv(FATE / "default_credit_hetero_host.csv")
    columns = [c for c in host.columns if c != "id"]
    tables = [from_dataframe(host[["id", *columns[h::k]]], id_column="id", source=f"host_part_{h + 1}")
              for h in range(k)]
    bank = from_dataframe(guest, id_column="id", label_column="y", model="logistic", source="default_credit_guest")
    return tables, bank, "logistic"


DATA = {"motor": (motor, ("motor_hetero_guest.csv", "motor_hetero_host_1.csv", "motor_hetero_host_2.csv")),
        "breast": (breast, ("breast_hetero_guest.csv", "breast_hetero_host.csv")),
        "default_credit": (default_credit, ("default_credit_hetero_guest.csv", "default_credit_hetero_host.csv"))}


def run(data: str, k: int, key_bits: int, epochs: int, workers: int | None) -> dict:
    load, _ = DATA[data]
    tables, bank, model = load(k)
    config = TrainingConfig(model=model, key_bits=key_bits, epochs=epochs, validation_fraction=0.2)
    started = time.perf_counter()
    result = simulate(tables, bank, config, workers=workers, contributions=True)
    total = time.perf_counter() - started
    c = result["contributions"]
    job = result["seconds"]
    return {"data": data, "k": k, "model": model, "key_bits": key_bits, "epochs": epochs,
            "rows": result["aligned_rows"], "validation_rows": result["validation_rows"],
            "epochs_run": result["epochs_run"], "job_seconds": round(job, 2),
            "contribution_seconds": round(c["seconds"] - result["timings"]["training"], 2),
            "total_seconds": round(total, 2), "trainings": c["trainings"], "contributions": c}


def services(population: int, key_bits: int, epochs: int) -> dict:
    import ssl
    import tempfile

    import httpx

    from vfl.demo.services import running_services, wait_healthy, write_demo_files

    workdir = Path(tempfile.mkdtemp(prefix="bench-contributions-"))
    setup = write_demo_files(workdir, population=population, key_bits=key_bits, feature_parties=2,
                             training={"epochs": epochs, "validation_fraction": 0.2})
    with running_services(workdir) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
        verify = ssl.create_default_context(cafile=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], timeout=120, verify=verify,
                          headers={"Authorization": f"Bearer {setup['token']}"}) as bank:
            started = time.perf_counter()
            job = bank.post("/v1/jobs", json={**setup["job"], "contributions": True}).json()["job_id"]
            while (status := bank.get(f"/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.5)
            wall = time.perf_counter() - started
    if status["state"] != "succeeded":
        raise SystemExit(f"the job {status['state']}: {status.get('error')}")
    timings = status["timings"]
    return {"services": 4, "population": population, "rows": status["n_rows"], "key_bits": key_bits,
            "epochs_run": status["epoch"], "wall_seconds": round(wall, 2), "timings": timings,
            "job_seconds": round(timings["total"] - timings.get("contributions", 0) - timings.get("ledger", 0), 2),
            "contributions": status["contributions"], "ledger": status["ledger"], "workdir": str(workdir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="motor")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--ks", default="2,3", help="feature-party counts to measure (default 2,3)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--services", type=int, default=None, metavar="N",
                        help="measure at four vfl serve processes instead, on N synthetic customers (k = 2)")
    args = parser.parse_args()
    if args.services is not None:
        measured = services(args.services, args.key_bits, args.epochs)
        c = measured["contributions"]
        print(f"services, k = 2 ({', '.join(p['party'] for p in c['parties'])}), {measured['rows']} rows, "
              f"{args.key_bits}-bit keys, {measured['epochs_run']} epochs:")
        print(text_table(c))
        t = measured["timings"]
        print(f"  the job: {measured['job_seconds']:.1f} s (alignment {t.get('alignment', 0):.1f} s, training "
              f"{t.get('training', 0):.1f} s); the {c['trainings']} coalition trainings: {t['contributions']:.1f} s; "
              f"the ledger entry (signed by {', '.join(measured['ledger']['signed_by'])}): {t['ledger']:.2f} s")
        for item in c["coalitions"]:
            print(f"    B + {' + '.join(item['parties'])} (job {item['job_id']}): {c['metric']} {item['value']:.4f} "
                  f"in {item['seconds']:.1f} s")
        if args.json is not None:
            args.json.write_text(json.dumps(measured, indent=2))
        return 0
    missing = [name for name in DATA[args.data][1] if not (FATE / name).is_file()]
    if missing:
        print(f"bench_contributions: FATE data {missing} not found under {FATE}; nothing measured", file=sys.stderr)
        return 2
    runs = []
    for k in (int(x) for x in args.ks.split(",")):
        measured = run(args.data, k, args.key_bits, args.epochs, args.workers)
        runs.append(measured)
        c = measured["contributions"]
        print(f"\n{args.data}, k = {k} feature parties, {measured['rows']} rows ({measured['validation_rows']} "
              f"validation), {args.key_bits}-bit keys, {measured['epochs_run']} epochs:")
        print(text_table(c))
        print(f"  the job: {measured['job_seconds']:.1f} s; the {measured['trainings']} coalition trainings: "
              f"{measured['contribution_seconds']:.1f} s "
              f"({measured['contribution_seconds'] / max(measured['job_seconds'], 1e-9):.1f}x the job)")
        for item in c["coalitions"]:
            print(f"    B + {' + '.join(item['parties'])}: {c['metric']} {item['value']:.4f} in {item['seconds']:.1f} s")
    machine = {"cpu": cpu_model(), "python": platform.python_version()}
    print(f"\n{machine['cpu']}, Python {machine['python']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
