"""``vfl demo``: the bank + e-commerce job over three real local services.

1. Writes the demo data and three service configs to the work directory.
2. Starts party A (the shop), party B (the bank) and the arbiter as three
   separate ``vfl serve`` processes on loopback.
3. Submits ``job.json`` to the bank through the REST API, shows progress,
   prints the federated model against the bank-only baseline, and scores a
   few customers through federated prediction.
4. Stops the three services, also on Ctrl-C or failure.

Everything it writes stays in the work directory, so the same configs and
``job.json`` can be replayed by hand with ``vfl serve`` and curl. Each
service's secrets (TLS key, token) and data sit in its own folder, and the CA
key apart from all three (see :func:`write_demo_files`).
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

from vfl.childproc import ends_with_parent
from vfl.demo_data import bank_ecommerce
from vfl.errors import TransportError
from vfl.orchestrate import Orchestrator
from vfl.progress import ProgressLine
from vfl.service.tls import CA_FOLDER, make_certificates, private_folder, write_private

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

    Laid out as three organisations would hold it, so the demo does not teach
    sharing secrets::

        party-a.toml party-b.toml arbiter.toml job.json   configs (their paths are relative to workdir)
        ca/ca.pem ca/ca.key                               the CA; no service needs its key
        party-a/  token shop.csv party-a.pem party-a.key ca.pem
        party-b/  token bank.csv party-b.pem party-b.key ca.pem
        arbiter/  token          arbiter.pem arbiter.key ca.pem
        data/<service>/                                   each service's job store (its data_dir)
        <service>.log                                     each service's log, when run_demo starts them

    Each service has its own bearer token; tokens and keys are 0600 and the
    folders 0700. ``tables`` = (shop, bank, id column, label column) replaces
    the synthetic data. ``urls`` (service name → base URL) overrides the
    loopback ports, for tests that route requests to in-process apps.

    Returns ``urls``, ``tokens`` (per service), ``token`` (party B's: the
    orchestrator talks to B), ``verify`` (party B's copy of the CA certificate,
    or True without TLS), ``job``, ``id_column``, ``folders`` (per service),
    ``data`` (each party's CSV) and ``ca_key``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    folders = {name: private_folder(workdir / name) for name in SERVICES}
    if tables is None:
        shop, bank = bank_ecommerce(population=population, seed=seed)
        id_column, label_column = "customer_id", "default"
    else:
        shop, bank, id_column, label_column = tables
    data = {"party-a": folders["party-a"] / "shop.csv", "party-b": folders["party-b"] / "bank.csv"}
    shop.to_csv(data["party-a"], index=False)
    bank.to_csv(data["party-b"], index=False)
    # One token per service: whoever holds one can orchestrate that service, and only that one.
    tokens = {name: secrets.token_urlsafe(24) for name in SERVICES}
    for name, token in tokens.items():
        write_private(folders[name] / "token", token.encode())
    ports = {name: free_port() for name in SERVICES}
    scheme = "https" if tls else "http"
    urls = urls or {name: f"{scheme}://127.0.0.1:{port}" for name, port in ports.items()}
    min_bits = min(key_bits, 2048)
    if tls:
        make_certificates(workdir, list(SERVICES))  # workdir/ca/ and each service's own folder

    def peers(*names: str) -> str:
        role = {"party-a": "A", "party-b": "B", "arbiter": "C"}
        return "".join(f'\n[peers.{n}]\nrole = "{role[n]}"\nurl = "{urls[n]}"\n' for n in names)

    def party(name: str, role: str) -> str:
        return (f'[party]\nid = "{name}"\nrole = "{role}"\nlisten = "127.0.0.1:{ports[name]}"\n'
                f'data_dir = "data/{name}"\napi_token_file = "{name}/token"\n' + ("" if tls else "insecure = true\n"))

    limits = f"\n[limits]\nmin_key_bits = {min_bits}\n"

    def tls_section(name: str) -> str:
        if not tls:
            return ""
        return f'\n[tls]\nca = "{name}/ca.pem"\ncert = "{name}/{name}.pem"\nkey = "{name}/{name}.key"\n'

    (workdir / "party-a.toml").write_text(
        party("party-a", "A")
        + f'\n[datasets.behaviour]\npath = "party-a/shop.csv"\nid_column = "{id_column}"\n'
        + peers("party-b", "arbiter") + limits + tls_section("party-a")
    )
    (workdir / "party-b.toml").write_text(
        party("party-b", "B")
        + f'\n[datasets.credit]\npath = "party-b/bank.csv"\nid_column = "{id_column}"\nlabel_column = "{label_column}"\n'
        + peers("party-a", "arbiter") + limits + tls_section("party-b")
    )
    (workdir / "arbiter.toml").write_text(party("arbiter", "C") + peers("party-a", "party-b") + limits + tls_section("arbiter"))
    job = {
        "party_a": {"peer": "party-a", "dataset": "behaviour"},
        "party_b": {"dataset": "credit"},
        "arbiter": {"peer": "arbiter"},
        "training": {"model": "logistic", "key_bits": key_bits, "validation_fraction": 0.2, "epochs": 30,
                     **(training or {})},
        "psi": {"key_bits": key_bits},
    }
    (workdir / "job.json").write_text(json.dumps(job, indent=2))
    verify: str | bool = str(folders["party-b"] / "ca.pem") if tls else True
    return {"urls": urls, "token": tokens["party-b"], "tokens": tokens, "job": job, "id_column": id_column,
            "verify": verify, "folders": folders, "data": data,
            "ca_key": workdir / CA_FOLDER / "ca.key" if tls else None}


@contextmanager
def running_services(workdir: Path, *, startup_timeout: float = 60.0) -> Iterator[dict[str, subprocess.Popen]]:
    """Start the three services as separate processes; always stop them afterwards."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in SERVICES:
            log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "vfl.cli", "serve", "--config", str(workdir / f"{name}.toml")],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=ends_with_parent(),
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
            print(_layout(workdir), file=sys.stderr)
            return None
        with running_services(workdir) as processes:
            wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
            print("three services up: " + ", ".join(f"{n} {u}" for n, u in setup["urls"].items()), file=sys.stderr)
            with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
                job = bank.submit(setup["job"])
                final = bank.wait(job["job_id"], progress=ProgressLine().job)
                predictions = bank.predict(job["job_id"], _shared_ids(setup["data"], setup["id_column"], 3))
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


def _layout(workdir: Path) -> str:
    """How to use the prepared files by hand (printed by --prepare-only)."""
    return "\n".join([
        "  party-a/, party-b/, arbiter/  each service's own key, certificate, CA certificate, token and data;",
        "                                on three hosts, each would get its folder and its .toml only",
        "  ca/ca.key                     signs certificates; no service needs it: keep it offline",
        f"  vfl serve --config {workdir / 'party-a.toml'}   (likewise party-b.toml, arbiter.toml)",
        f"  orchestrate party B with its token: TOKEN=$(cat {workdir / 'party-b' / 'token'})",
    ])


def _shared_ids(data: dict[str, Path], id_column: str, count: int) -> list[str]:
    """A few customers both firms know (the demo wrote both files, so it may look)."""
    bank = pd.read_csv(data["party-b"], usecols=[id_column], dtype=str)[id_column]
    shop = set(pd.read_csv(data["party-a"], usecols=[id_column], dtype=str)[id_column])
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


