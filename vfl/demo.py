"""``vfl demo``: the bank + e-commerce job over three real local services.

1. Writes the demo data and three service configs to the work directory.
2. Starts party A (the shop), party B (the bank) and the arbiter as three
   separate ``vfl serve`` processes on loopback.
3. Submits ``job.json`` to the bank through the REST API, shows progress,
   prints the federated model against the bank-only baseline, and scores a
   few customers through federated prediction.
4. Stops the three services, also on Ctrl-C or failure.

Everything it writes stays in the work directory, so the same configs and
``job.json`` can be replayed by hand with ``vfl serve`` and curl.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pandas as pd

from vfl.demo_data import bank_ecommerce
from vfl.errors import TransportError
from vfl.orchestrate import Orchestrator
from vfl.progress import ProgressLine
from vfl.service.tls import make_certificates

SERVICES = ("arbiter", "party-a", "party-b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_demo_files(
    workdir: Path, *, population: int = 10_000, seed: int = 7, training: dict[str, Any] | None = None,
    key_bits: int = 2048, urls: dict[str, str] | None = None,
    tables: tuple[pd.DataFrame, pd.DataFrame, str, str] | None = None, tls: bool = True,
) -> dict[str, Any]:
    """Data, three configs and the job spec in ``workdir``; returns where things are.

    ``tables`` = (shop, bank, id column, label column) replaces the synthetic
    data. ``urls`` (service name → base URL) overrides the loopback ports, for
    tests that route requests to in-process apps.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if tables is None:
        shop, bank = bank_ecommerce(population=population, seed=seed)
        id_column, label_column = "customer_id", "default"
    else:
        shop, bank, id_column, label_column = tables
    shop.to_csv(workdir / "shop.csv", index=False)
    bank.to_csv(workdir / "bank.csv", index=False)
    token = secrets.token_urlsafe(24)
    (workdir / "token").write_text(token)
    (workdir / "token").chmod(0o600)
    ports = {name: free_port() for name in SERVICES}
    scheme = "https" if tls else "http"
    urls = urls or {name: f"{scheme}://127.0.0.1:{port}" for name, port in ports.items()}
    min_bits = min(key_bits, 2048)
    if tls:
        make_certificates(workdir / "certs", list(SERVICES))

    def peers(*names: str) -> str:
        role = {"party-a": "A", "party-b": "B", "arbiter": "C"}
        return "".join(f'\n[peers.{n}]\nrole = "{role[n]}"\nurl = "{urls[n]}"\n' for n in names)

    common = 'api_token_file = "token"\n' + ("" if tls else "insecure = true\n")
    limits = f"\n[limits]\nmin_key_bits = {min_bits}\n"

    def tls_section(name: str) -> str:
        if not tls:
            return ""
        return f'\n[tls]\nca = "certs/ca.pem"\ncert = "certs/{name}.pem"\nkey = "certs/{name}.key"\n'
    (workdir / "party-a.toml").write_text(
        f'[party]\nid = "party-a"\nrole = "A"\nlisten = "127.0.0.1:{ports["party-a"]}"\ndata_dir = "data/party-a"\n{common}'
        f'\n[datasets.behaviour]\npath = "shop.csv"\nid_column = "{id_column}"\n' + peers("party-b", "arbiter") + limits + tls_section("party-a")
    )
    (workdir / "party-b.toml").write_text(
        f'[party]\nid = "party-b"\nrole = "B"\nlisten = "127.0.0.1:{ports["party-b"]}"\ndata_dir = "data/party-b"\n{common}'
        f'\n[datasets.credit]\npath = "bank.csv"\nid_column = "{id_column}"\nlabel_column = "{label_column}"\n'
        + peers("party-a", "arbiter") + limits + tls_section("party-b")
    )
    (workdir / "arbiter.toml").write_text(
        f'[party]\nid = "arbiter"\nrole = "C"\nlisten = "127.0.0.1:{ports["arbiter"]}"\ndata_dir = "data/arbiter"\n{common}'
        + peers("party-a", "party-b") + limits + tls_section("arbiter")
    )
    job = {
        "party_a": {"peer": "party-a", "dataset": "behaviour"},
        "party_b": {"dataset": "credit"},
        "arbiter": {"peer": "arbiter"},
        "training": {"model": "logistic", "key_bits": key_bits, "validation_fraction": 0.2, "epochs": 30,
                     **(training or {})},
        "psi": {"key_bits": key_bits},
    }
    (workdir / "job.json").write_text(json.dumps(job, indent=2))
    ca = str(workdir / "certs" / "ca.pem") if tls else True
    return {"urls": urls, "token": token, "job": job, "id_column": id_column, "verify": ca}


@contextmanager
def running_services(workdir: Path, *, startup_timeout: float = 60.0) -> Iterator[dict[str, subprocess.Popen]]:
    """Start the three services as separate processes; always stop them afterwards."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in SERVICES:
            log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "vfl.cli", "serve", "--config", str(workdir / f"{name}.toml")],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            )
        yield processes
    finally:
        stop_services(processes)


def stop_services(processes: dict[str, subprocess.Popen], grace: float = 10.0) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(urls: dict[str, str], token: str, processes: dict[str, subprocess.Popen], workdir: Path,
                 timeout: float = 60.0, verify: Any = True) -> None:
    deadline = time.monotonic() + timeout
    for name, url in urls.items():
        with Orchestrator(url, token, timeout=5, verify=verify) as client:
            while True:
                if processes[name].poll() is not None:
                    log = (workdir / f"{name}.log").read_text()[-2000:]
                    raise TransportError(f"service {name} exited during start-up:\n{log}")
                try:
                    client.health()
                    break
                except TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)


def run_demo(workdir: Path | None, out: Path | None, *, population: int = 10_000, key_bits: int = 2048,
             training: dict[str, Any] | None = None, prepare_only: bool = False,
             report: Path | None = None) -> dict[str, Any] | None:
    temporary = workdir is None and not prepare_only
    workdir = Path(tempfile.mkdtemp(prefix="vfl-demo-")) if workdir is None else workdir.resolve()
    try:
        setup = write_demo_files(workdir, population=population, key_bits=key_bits, training=training)
        print(f"demo files in {workdir}", file=sys.stderr)
        if prepare_only:
            return None
        with running_services(workdir) as processes:
            wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
            print("three services up: " + ", ".join(f"{n} {u}" for n, u in setup["urls"].items()), file=sys.stderr)
            with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
                job = bank.submit(setup["job"])
                final = bank.wait(job["job_id"], progress=ProgressLine().job)
                predictions = bank.predict(job["job_id"], _shared_ids(workdir, setup["id_column"], 3))
                page = bank.report(job["job_id"]) if report is not None else None
        summary = summarise(final, predictions)
        print_summary(summary)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(summary, indent=2))
            print(f"metrics written to {out}", file=sys.stderr)
        if report is not None and page is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(page)
            print(f"job report (open it in a browser) written to {report}", file=sys.stderr)
        return summary
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


def _shared_ids(workdir: Path, id_column: str, count: int) -> list[str]:
    """A few customers both firms know (the demo wrote both files, so it may look)."""
    bank = pd.read_csv(workdir / "bank.csv", usecols=[id_column], dtype=str)[id_column]
    shop = set(pd.read_csv(workdir / "shop.csv", usecols=[id_column], dtype=str)[id_column])
    return [i for i in bank if i in shop][:count]


def summarise(status: dict[str, Any], predictions: dict[str, Any]) -> dict[str, Any]:
    """The demo's result: federated and baseline metrics on the held-out rows."""
    split = "validation" if "validation" in (status.get("metrics") or {}) else "train"
    return {
        "job_id": status["job_id"],
        "split": split,
        "aligned_rows": (status.get("alignment") or {}).get("intersection"),
        "epochs_run": status.get("epoch"),
        "federated": {"metrics": status["metrics"][split], "all_splits": status["metrics"]},
        "baseline": {"metrics": status["baseline"]["metrics"][split], "all_splits": status["baseline"]["metrics"],
                     "description": status["baseline"]["description"]},
        "loss_history": status.get("loss_history"),
        "timings": status.get("timings"),
        "sample_predictions": predictions["predictions"],
    }


def print_summary(summary: dict[str, Any]) -> None:
    names = ["auc", "ks", "accuracy", "precision", "recall", "f1"]
    fed, base = summary["federated"]["metrics"], summary["baseline"]["metrics"]
    print(f"\nbank + e-commerce, {summary['aligned_rows']} shared customers, metrics on the {summary['split']} rows:")
    print(f"  {'metric':10s} {'federated':>10s} {'bank only':>10s}")
    for name in names:
        print(f"  {name:10s} {fed[name]:10.4f} {base[name]:10.4f}")
    for item in summary["sample_predictions"]:
        print(f"  P(default | {item['id']}) = {item['score']:.3f}")


