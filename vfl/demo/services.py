"""``vfl demo``: the bank + e-commerce job over real local services (three; more with partners).

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

import numpy as np
import pandas as pd

from vfl.compute.childproc import ends_with_parent
from vfl.demo.data import PARTNERS, bank_ecommerce, bank_partners
from vfl.errors import ConfigError, JobError, TransportError
from vfl.orchestrate import Orchestrator
from vfl.report.progress import ProgressLine
from vfl.files import private_folder, write_private
from vfl.service.tls import CA_FOLDER, make_certificates

SERVICES = ("arbiter", "party-a", "party-b")


#: Each synthetic partner's dataset name in its service config.
DATASET_NAMES = {"shop": "behaviour", "telco": "usage", "utility": "payments"}


def feature_services(k: int, custom: bool = False) -> list[str]:
    """The feature parties' service names: "party-a" for one (the two-party demo); else each partner's name.

    With the synthetic data the partners are the shop, the telco and the utility
    (:func:`vfl.demo.data.bank_partners`); with the caller's own tables, partner-1 … partner-k.
    """
    if k == 1:
        return ["party-a"]
    return [f"partner-{h}" for h in range(1, k + 1)] if custom else list(PARTNERS[:k])


def services_in(workdir: Path) -> list[str]:
    """The services whose configs ``write_demo_files`` put in ``workdir``: arbiter, feature parties in job order, B."""
    job = json.loads((workdir / "job.json").read_text())
    refs = job.get("feature_parties") or [job["party_a"]]
    return ["arbiter", *(ref["peer"] for ref in refs), "party-b"]


def split_partners(shop: pd.DataFrame, id_column: str, k: int, seed: int) -> list[pd.DataFrame]:
    """Split a partner table into ``k`` partners: the columns dealt out in turn, the rows partly overlapping.

    The first partner keeps every row; each further one a seeded 85% of them, in its own order.
    """
    columns = [c for c in shop.columns if c != id_column]
    if len(columns) < k:
        raise ValueError(f"{len(columns)} feature columns cannot be split over {k} feature parties")
    rng = np.random.default_rng(seed)
    parts = []
    for h in range(k):
        part = shop[[id_column, *columns[h::k]]]
        if h:
            part = part[rng.random(len(part)) < 0.85].sample(frac=1.0, random_state=seed + h).reset_index(drop=True)
        parts.append(part)
    return parts


def free_port() -> int:
    """A loopback port that no other process is given before a service listens on it.

    Binding port 0 and closing leaves a window in which another process (say, a
    parallel test worker) is given the same port. So the port is connected to
    once and its side closed first: it stays in TIME_WAIT for about a minute, in
    which bind(0) and outgoing connections skip it, while a server that sets
    SO_REUSEADDR (uvicorn and PostgreSQL do) can still listen on it.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # this side closes first, so the TIME_WAIT is on `port`
            client.recv(1)  # wait for the close to arrive
        return port


def local_addresses(folders: dict[str, Path], services: list[str], *, tls: bool,
                    urls: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
    """Each local service's token (written 0600 in its folder), loopback port and URL."""
    tokens = {name: secrets.token_hex(24) for name in services}  # hex: never starts with "-", which a CLI would read as a flag
    for name, token in tokens.items():
        write_private(folders[name] / "token", token.encode())
    ports = {name: free_port() for name in services}
    scheme = "https" if tls else "http"
    return tokens, ports, urls or {name: f"{scheme}://127.0.0.1:{port}" for name, port in ports.items()}


def write_demo_files(
    workdir: Path, *, population: int = 10_000, seed: int = 7, training: dict[str, Any] | None = None,
    key_bits: int = 2048, urls: dict[str, str] | None = None,
    tables: tuple[pd.DataFrame, pd.DataFrame, str, str] | None = None, tls: bool = True,
    feature_parties: int = 1, scorecard: bool = False,
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

    ``feature_parties`` = k > 1 (up to 3) writes the bank and k partners of
    :func:`vfl.demo.data.bank_partners` instead: services ``shop``, ``telco``,
    ``utility``, each with its own folder, CSV and config, and a job spec that
    lists them under ``feature_parties``. With ``tables``, the shop table's
    columns are dealt out over partner-1 … partner-k (:func:`split_partners`).

    ``scorecard`` makes the job a credit scorecard (the job spec's ``scorecard``
    section, defaults) and lets every feature party share its reason codes.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    features = feature_services(feature_parties, custom=tables is not None)
    services = ["arbiter", *features, "party-b"]
    folders = {name: private_folder(workdir / name) for name in services}
    if tables is None and feature_parties == 1:
        shop, bank = bank_ecommerce(population=population, seed=seed)
        partners = [shop]
    elif tables is None:
        by_name, bank = bank_partners(feature_parties, population=population, seed=seed)
        partners = list(by_name.values())
    if tables is None:
        id_column, label_column = "customer_id", "default"
    else:
        shop, bank, id_column, label_column = tables
        partners = [shop] if feature_parties == 1 else split_partners(shop, id_column, feature_parties, seed)
    files = {name: "shop.csv" if feature_parties == 1 else f"{name}.csv" for name in features}
    datasets = {name: DATASET_NAMES.get(name, "behaviour") if feature_parties > 1 else "behaviour" for name in features}
    data = {name: folders[name] / files[name] for name in features} | {"party-b": folders["party-b"] / "bank.csv"}
    for name, table in zip(features, partners):
        table.to_csv(data[name], index=False)
    bank.to_csv(data["party-b"], index=False)
    # One token per service: whoever holds one can orchestrate that service, and only that one.
    tokens, ports, urls = local_addresses(folders, services, tls=tls, urls=urls)
    min_bits = min(key_bits, 2048)
    if tls:
        make_certificates(workdir, services, force=True)  # workdir/ca/ and each service's own folder (the demo's own)

    def peers(*names: str) -> str:
        role = {"party-b": "B", "arbiter": "C"} | {name: "A" for name in features}
        return "".join(f'\n[peers.{n}]\nrole = "{role[n]}"\nurl = "{urls[n]}"\n' for n in names)

    def party(name: str, role: str) -> str:
        return (f'[party]\nid = "{name}"\nrole = "{role}"\nlisten = "127.0.0.1:{ports[name]}"\n'
                f'data_dir = "data/{name}"\napi_token_file = "{name}/token"\n' + ("" if tls else "insecure = true\n"))

    limits = f"\n[limits]\nmin_key_bits = {min_bits}\n"

    def tls_section(name: str) -> str:
        if not tls:
            return ""
        return f'\n[tls]\nca = "{name}/ca.pem"\ncert = "{name}/{name}.pem"\nkey = "{name}/{name}.key"\n'

    for name, table in zip(features, partners):
        (workdir / f"{name}.toml").write_text(
            party(name, "A")
            + f'\n[datasets.{datasets[name]}]\npath = "{name}/{files[name]}"\nid_column = "{id_column}"\n'
            + peers("party-b", "arbiter") + limits + tls_section(name)
            + (_reason_codes(name, [c for c in table.columns if c != id_column]) if scorecard else "")
        )
    (workdir / "party-b.toml").write_text(
        party("party-b", "B")
        + f'\n[datasets.credit]\npath = "party-b/bank.csv"\nid_column = "{id_column}"\nlabel_column = "{label_column}"\n'
        + peers(*features, "arbiter") + limits + tls_section("party-b")
    )
    (workdir / "arbiter.toml").write_text(party("arbiter", "C") + peers(*features, "party-b") + limits + tls_section("arbiter"))
    refs = {"party_a": {"peer": "party-a", "dataset": "behaviour"}} if feature_parties == 1 else {
        "feature_parties": [{"peer": name, "dataset": datasets[name]} for name in features]}
    job = {
        **refs,
        "party_b": {"dataset": "credit"},
        "arbiter": {"peer": "arbiter"},
        "training": {"model": "logistic", "key_bits": key_bits, "validation_fraction": 0.2, "epochs": 30,
                     **(training or {})},
        "psi": {"key_bits": key_bits},
    } | ({"scorecard": {}} if scorecard else {})
    (workdir / "job.json").write_text(json.dumps(job, indent=2))
    verify: str | bool = str(folders["party-b"] / "ca.pem") if tls else True
    return {"urls": urls, "token": tokens["party-b"], "tokens": tokens, "job": job, "id_column": id_column,
            "verify": verify, "folders": folders, "data": data,
            "ca_key": workdir / CA_FOLDER / "ca.key" if tls else None}


def _reason_codes(name: str, columns: list[str]) -> str:
    """A feature party's [scorecard] section for the demo: it shares reasons, with a text for each code."""
    texts = "".join(f'{column} = "{column.replace("_", " ")} (at {name})"\n' for column in columns)
    return f"\n[scorecard]\nshare_reasons = true\n\n[scorecard.codes]\n{texts}"


@contextmanager
def running_services(workdir: Path, names: list[str] | None = None) -> Iterator[dict[str, subprocess.Popen]]:
    """Start the services (those of ``names``, or every config in ``workdir``) as separate processes; always stop them."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in names if names is not None else services_in(workdir):
            with open(workdir / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
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


def services_stopped(processes: dict[str, subprocess.Popen], within: float = 2.0) -> bool:
    """Whether any of the services has ended (waiting up to ``within`` seconds for one to)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes.values()):
            return True
        time.sleep(0.05)
    return any(process.poll() is not None for process in processes.values())


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


def existing_demo_files(workdir: Path) -> list[str]:
    """What a demo already wrote in ``workdir`` and writing it again would replace: configs, the job spec, the
    CA, each service's folder (token, key, certificate, data) and the services' job stores (``data/``)."""
    if not workdir.is_dir():
        return []
    found = sorted(path.name for path in workdir.glob("*.toml")) + (["job.json"] if (workdir / "job.json").exists() else [])
    found += [f"{CA_FOLDER}/"] if (workdir / CA_FOLDER).exists() else []
    found += sorted(f"{path.parent.name}/" for path in workdir.glob("*/token"))
    found += ["data/"] if (workdir / "data").is_dir() else []
    return found


def refuse_to_replace(workdir: Path) -> None:
    """Refuse, as ``vfl certs`` does, to overwrite a demo folder that services may be running from."""
    found = existing_demo_files(workdir)
    if found:
        raise ConfigError(
            f"{workdir} already holds demo files that this would replace: {', '.join(found)}. Services started "
            "from them would stop matching (a new CA, new tokens and ports), and jobs would get no ledger entry. "
            "Stop those services first, then give --force to replace everything (data/ too: its jobs and ledgers "
            "belong to the old CA), or choose another --workdir")


def run_demo(workdir: Path | None, out: Path | None, *, population: int = 10_000, key_bits: int = 2048,
             training: dict[str, Any] | None = None, prepare_only: bool = False,
             report: Path | None = None, feature_parties: int = 1, scorecard: bool = False,
             force: bool = False) -> dict[str, Any] | None:
    """Write the files, start the services, train, compare, predict; always stop the services.

    With several feature parties the demo also trains the bank with each single
    partner (one job per partner, on the same services and the same customers),
    so the printout shows what each partner adds.

    A ``workdir`` that already holds demo files is refused (:func:`refuse_to_replace`) unless ``force``, which
    replaces them and deletes the old services' job stores (``data/``).
    """
    temporary = workdir is None and not prepare_only
    if workdir is not None and not force:
        refuse_to_replace(workdir)
    workdir = Path(tempfile.mkdtemp(prefix="vfl-demo-")) if workdir is None else workdir.resolve()
    if force and (workdir / "data").is_dir():
        shutil.rmtree(workdir / "data")  # jobs and ledgers signed under the CA being replaced
    try:
        setup = write_demo_files(workdir, population=population, key_bits=key_bits, training=training,
                                 feature_parties=feature_parties, scorecard=scorecard)
        print(f"demo files in {workdir}", file=sys.stderr)
        if prepare_only:
            print(_layout(workdir), file=sys.stderr)
            return None
        with running_services(workdir) as processes:
            wait_healthy(setup["urls"], setup["token"], processes, workdir, verify=setup["verify"])
            print(f"{len(processes)} services up: " + ", ".join(f"{n} {u}" for n, u in setup["urls"].items()),
                  file=sys.stderr)
            try:
                with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=setup["verify"]) as bank:
                    job = bank.submit(setup["job"])
                    final = bank.wait(job["job_id"], progress=ProgressLine().job)
                    predictions = bank.predict(job["job_id"], _shared_ids(setup["data"], setup["id_column"], 3))
                    page = bank.report(job["job_id"]) if report is not None else None
                    single = {}
                    for ref in setup["job"]["feature_parties"] if feature_parties > 1 else []:
                        print(f"\nthe bank with {ref['peer']} alone, for comparison:", file=sys.stderr)
                        alone = bank.submit({**setup["job"], "feature_parties": [ref]})
                        single[ref["peer"]] = bank.wait(alone["job_id"], progress=ProgressLine().job)
            except (TransportError, JobError) as exc:
                if services_stopped(processes):
                    # Ctrl-C reaches the services too (one process group): they stop at once, and the request
                    # in flight fails before this process sees its own KeyboardInterrupt. That is an interrupt.
                    raise KeyboardInterrupt from exc
                raise
        summary = summarise(final, predictions, single)
        print_summary(summary)
        if scorecard:
            print(scorecard_summary(final, predictions))
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
    services = services_in(workdir)
    folders = ", ".join(f"{name}/" for name in services)
    return "\n".join([
        f"  {folders}  each service's own key, certificate, CA certificate, token and data;",
        f"      on {len(services)} hosts, each would get its folder and its .toml only",
        "  ca/ca.key  signs certificates; no service needs it: keep it offline",
        f"  vfl serve --config {workdir / (services[1] + '.toml')}   (likewise "
        + ", ".join(f"{name}.toml" for name in services if name != services[1]) + ")",
        f"  orchestrate party B with its token: TOKEN=$(cat {workdir / 'party-b' / 'token'})",
    ])


def _shared_ids(data: dict[str, Path], id_column: str, count: int) -> list[str]:
    """A few customers every firm knows (the demo wrote every file, so it may look)."""
    bank = pd.read_csv(data["party-b"], usecols=[id_column], dtype=str)[id_column]
    known = [set(pd.read_csv(path, usecols=[id_column], dtype=str)[id_column])
             for name, path in data.items() if name != "party-b"]
    return [i for i in bank if all(i in k for k in known)][:count]


def summarise(status: dict[str, Any], predictions: dict[str, Any],
              single: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The demo's result: federated and baseline metrics on the held-out rows.

    ``single`` holds, with several feature parties, the final status of the bank's
    job with each partner alone (by partner), shown as ``with_single_partner``.
    """
    split = "validation" if "validation" in (status.get("metrics") or {}) else "train"
    partners = [p["peer"] for p in (status.get("job_spec") or {}).get("feature_parties") or []] or list(single or {})
    summary = {
        "job_id": status["job_id"],
        "split": split,
        "feature_parties": partners,
        "aligned_rows": (status.get("alignment") or {}).get("intersection"),
        "epochs_run": status.get("epoch"),
        "federated": {"metrics": status["metrics"][split], "all_splits": status["metrics"]},
        "baseline": {"metrics": status["baseline"]["metrics"][split], "all_splits": status["baseline"]["metrics"],
                     "description": status["baseline"]["description"]},
        "loss_history": status.get("loss_history"),
        "timings": status.get("timings"),
        "sample_predictions": predictions["predictions"],
    }
    if single:
        summary["with_single_partner"] = {
            partner: {"job_id": s["job_id"], "state": s["state"], "aligned_rows": (s.get("alignment") or {}).get("intersection"),
                      "metrics": (s.get("metrics") or {}).get(split), "error": s.get("error")}
            for partner, s in single.items()
        }
    return summary


def scorecard_summary(status: dict[str, Any], predictions: dict[str, Any]) -> str:
    """A scorecard job's headline: B's points table, the partners' total range, one applicant's reasons."""
    from vfl.ml.scorecard.points import PointsTable

    card = status.get("scorecard") or {}
    score = card.get("score") or {}
    lines = [f"\nscorecard: base points {card.get('base_points')}; on the {score.get('split')} rows AUC "
             f"{score.get('auc', float('nan')):.4f}, KS {score.get('ks', float('nan')):.4f}, "
             f"Gini {score.get('gini', float('nan')):.4f}", "the bank's points table (kept by the bank):"]
    for party, table in (card.get("points") or {}).items():
        for row in PointsTable.from_dict(table).rows():
            lines.append(f"  {row['characteristic']:<22} {row['label']:<26} {row['points']:>6}")
    for partners, (low, high) in (card.get("partner_ranges") or {}).items():
        lines.append(f"{partners}'s points (each table kept by its owner): totals from {low} to {high}")
    scored = [p for p in predictions.get("predictions", []) if p.get("score") is not None]
    if scored:
        first = scored[0]
        reasons = "; ".join(f"{r['code']} ({r['text']})" for r in first.get("reasons") or []) or "none"
        lines.append(f"applicant {first['id']}: score {first['score']}, P(default) {first['probability']:.3f}, "
                     f"principal reasons: {reasons}")
    return "\n".join(lines)


def print_summary(summary: dict[str, Any]) -> None:
    names = ["auc", "ks", "accuracy", "precision", "recall", "f1", "log_loss", "brier"]
    single = summary.get("with_single_partner") or {}
    columns = {"federated": summary["federated"]["metrics"], "bank only": summary["baseline"]["metrics"]}
    columns |= {f"bank+{partner}": s["metrics"] for partner, s in single.items() if s["metrics"]}
    who = "bank + e-commerce" if not single else "bank + " + " + ".join(single)
    print(f"\n{who}, {summary['aligned_rows']} shared customers, metrics on the {summary['split']} rows:")
    width = max(10, *(len(c) for c in columns))
    print(f"  {'metric':10s} " + " ".join(f"{c:>{width}s}" for c in columns))
    for name in names:
        print(f"  {name:10s} " + " ".join(f"{m[name]:{width}.4f}" for m in columns.values()))
    for partner, s in single.items():
        if s["aligned_rows"] != summary["aligned_rows"]:
            print(f"  (bank+{partner} aligned {s['aligned_rows']} customers: its figures are on other rows)")
        if not s["metrics"]:
            print(f"  bank+{partner}: {s['state']}: {s['error']}")
    for item in summary["sample_predictions"]:
        probability = item["probability"] if "probability" in item else item["score"]  # a scorecard's score is points
        print(f"  P(default | {item['id']}) = {probability:.3f}")
