"""``vfl demo --lending``: three lenders and a querying bank, each a real ``vfl serve`` over mTLS.

1. Writes synthetic borrower lists (one CSV per lender), a CA, one
   certificate, token and config per service to the work directory.
2. Starts the querier ``bank`` and the lenders ``lender-1`` … ``lender-3``;
   each lender publishes the tag set of its borrowers.
3. Asks, through the bank's ``POST /v1/lending-query``, about an applicant
   who borrows at two lenders and one who borrows nowhere, then (count only)
   about the first again, then keeps asking until the lenders' daily budget
   for the bank (3 IDs in the demo) is spent and the query is refused (429).
4. Reads each lender's borrower file *after* the queries, to show the truth
   beside the answers, and stops the services.

:func:`write_lending_files` is also what the tests and ``scripts/bench_lending.py`` run on.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from vfl.demo.services import local_addresses, running_services, wait_healthy
from vfl.errors import TransportError
from vfl.files import private_folder
from vfl.service.tls import make_certificates

QUERIER = "bank"
ID_COLUMN = "customer_id"


def lender_names(count: int) -> list[str]:
    return [f"lender-{i}" for i in range(1, count + 1)]


def write_lending_files(
    workdir: Path, *, lenders: int = 3, population: int = 6000, borrowers: int = 1500, seed: int = 11,
    key_bits: int = 2048, tls: bool = True, urls: dict[str, str] | None = None,
    lending: dict[str, Any] | None = None, querier_lending: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Borrower files, certificates, tokens and configs for a querier and ``lenders`` lenders in ``workdir``.

    Each lender's borrowers are ``borrowers`` IDs drawn from a population of
    ``population`` (``C000001`` …), so some applicants borrow at several
    lenders and most at none. ``lending`` adds keys to every lender's
    ``[lending]`` table (say ``budget_per_day``), ``querier_lending`` to the
    querier's. Returns ``names``, ``lenders``, ``urls``, ``tokens``,
    ``verify`` (the CA file, or True without TLS), ``folders`` and ``borrowers``
    (each lender's CSV).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    names = lender_names(lenders)
    services = [QUERIER, *names]
    folders = {name: private_folder(workdir / name) for name in services}
    rng = np.random.default_rng(seed)
    people = np.array([f"C{i:06d}" for i in range(1, population + 1)])
    files = {}
    for name in names:
        chosen = rng.choice(people, size=min(borrowers, population), replace=False)
        frame = pd.DataFrame({ID_COLUMN: chosen, "amount": rng.integers(1, 50, size=len(chosen)) * 1000})
        files[name] = folders[name] / "borrowers.csv"
        frame.to_csv(files[name], index=False)
    tokens, ports, urls = local_addresses(folders, services, tls=tls, urls=urls)
    if tls:
        make_certificates(workdir, services, force=True)

    def toml_value(value: Any) -> str:
        return json.dumps(value) if not isinstance(value, bool) else str(value).lower()

    def section(values: dict[str, Any]) -> str:
        return "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())

    def config(name: str, peers: list[str], lending_keys: dict[str, Any]) -> str:
        text = (f'[party]\nid = "{name}"\nrole = "B"\nlisten = "127.0.0.1:{ports[name]}"\n'
                f'data_dir = "data/{name}"\napi_token_file = "{name}/token"\n' + ("" if tls else "insecure = true\n"))
        text += "".join(f'\n[peers.{p}]\nrole = "B"\nurl = "{urls[p]}"\n' for p in peers)
        text += f"\n[limits]\nmin_key_bits = {min(key_bits, 2048)}\n"
        text += "\n[lending]\n" + section(lending_keys)
        if tls:
            text += f'\n[tls]\nca = "{name}/ca.pem"\ncert = "{name}/{name}.pem"\nkey = "{name}/{name}.key"\n'
        return text

    for name in names:
        keys = {"enabled": True, "borrowers_file": f"{name}/borrowers.csv", "id_column": ID_COLUMN,
                "key_bits": key_bits, "allowed_queriers": [QUERIER], **(lending or {})}
        (workdir / f"{name}.toml").write_text(config(name, [QUERIER], keys))
    (workdir / f"{QUERIER}.toml").write_text(config(QUERIER, names, {"lenders": names, **(querier_lending or {})}))
    verify: str | bool = str(folders[QUERIER] / "ca.pem") if tls else True
    return {"names": services, "lenders": names, "urls": urls, "tokens": tokens, "verify": verify,
            "folders": folders, "borrowers": files, "population": [str(p) for p in people]}


def borrowers_of(files: dict[str, Path]) -> dict[str, set[str]]:
    """Each lender's borrower IDs, read from its file (the demo's truth)."""
    return {name: set(pd.read_csv(path, usecols=[ID_COLUMN], dtype=str)[ID_COLUMN]) for name, path in files.items()}


def truth(applicant: str, held: dict[str, set[str]]) -> list[str]:
    return [name for name, ids in held.items() if applicant in ids]


def running_lending_services(workdir: Path, names: list[str]) -> AbstractContextManager[dict[str, subprocess.Popen]]:
    """Each service of ``names`` as a ``vfl serve`` process; always stopped at the end."""
    return running_services(workdir, names)


def client_for(setup: dict[str, Any], name: str, timeout: float = 120.0) -> httpx.Client:
    """An orchestration client of service ``name`` (its own token, the federation's CA)."""
    verify = setup["verify"]
    context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
    return httpx.Client(base_url=setup["urls"][name], timeout=timeout, verify=context,
                        headers={"Authorization": f"Bearer {setup['tokens'][name]}"})


def wait_published(setup: dict[str, Any], processes: dict[str, subprocess.Popen], workdir: Path,
                   timeout: float = 300.0) -> dict[str, dict[str, Any]]:
    """Wait until every lender has a tag set; returns each one's summary."""
    wait_healthy(setup["urls"], setup["tokens"][QUERIER], processes, workdir, verify=setup["verify"])
    deadline = time.monotonic() + timeout
    published = {}
    for name in setup["lenders"]:
        with client_for(setup, name) as lender:
            while True:
                state = lender.get("/v1/lending").json()["lender"]
                if state and state["tag_set"] is not None:
                    published[name] = state["tag_set"]
                    break
                if processes[name].poll() is not None:
                    raise TransportError(f"lender {name} exited:\n{(workdir / f'{name}.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TransportError(f"lender {name} published no tag set within {timeout:g} s")
                time.sleep(0.2)
    return published


def pick_applicants(held: dict[str, set[str]], population: list[str]) -> tuple[str, str]:
    """An applicant who borrows at exactly two lenders, and one who borrows nowhere."""
    two = next(x for x in population if sum(x in ids for ids in held.values()) == 2)
    none = next(x for x in population if not any(x in ids for ids in held.values()))
    return two, none


def run_lending_demo(workdir: Path | None, out: Path | None, *, key_bits: int = 2048,
                     population: int = 6000, borrowers: int = 1500) -> dict[str, Any]:
    """Write, start, ask, refuse, compare with the files; always stop the services."""
    temporary = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="vfl-lending-")) if workdir is None else workdir.resolve()
    try:
        setup = write_lending_files(workdir, key_bits=key_bits, population=population, borrowers=borrowers,
                                    lending={"budget_per_day": 3})
        print(f"lending demo files in {workdir}", file=sys.stderr)
        # Chosen from the files before the services start; the truth is read again after the queries.
        applicants = pick_applicants(borrowers_of(setup["borrowers"]), setup["population"])
        with running_lending_services(workdir, setup["names"]) as processes:
            published = wait_published(setup, processes, workdir)
            print(f"querier {QUERIER} and {len(published)} lenders up over mTLS; tag sets: "
                  + ", ".join(f"{n} {s['size']} borrowers (key {s['key_id']})" for n, s in published.items()),
                  file=sys.stderr)
            queries, refusal = [], None
            with client_for(setup, QUERIER) as bank:
                for applicant in applicants:
                    answer = _ask(bank, [applicant], "lenders")
                    found = answer["results"][0]["found_at"]
                    queries.append({"id": applicant, "found_at": found})
                    print(f"applicant {applicant}: " + (f"found at {', '.join(found)}" if found else
                                                         "found at no lender") + f" ({answer['seconds'] * 1000:.0f} ms)")
                counted = _ask(bank, [applicants[0]], "count")["results"][0]["count"]
                print(f"applicant {applicants[0]}, count only: {counted} lenders (which ones stays at the bank's "
                      "service)")
                for _ in range(10):  # the lenders' budget for the bank is 3 IDs a day: the next one is refused
                    response = bank.post("/v1/lending-query", json={"ids": [applicants[1]]})
                    if response.status_code == 429:
                        refusal = response.json()["detail"]
                        break
                    response.raise_for_status()
        if refusal is not None:
            first, *others = refusal.removeprefix("the query was refused: ").split("; lender ")
            print(f"next query refused (429): {first}" + (f" (and likewise at {len(others)} more)" if others else ""))
        held = borrowers_of(setup["borrowers"])  # after the queries, from the lenders' own files
        result = {"queries": [{**q, "truth": truth(q["id"], held)} for q in queries],
                  "budget_refused": refusal is not None}
        for q in result["queries"]:
            mark = "matches" if sorted(q["found_at"]) == sorted(q["truth"]) else "DIFFERS FROM"
            print(f"  {q['id']}: answer {q['found_at']} {mark} the borrower files {q['truth']}")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            print(f"result written to {out}", file=sys.stderr)
        return result
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


def _ask(client: httpx.Client, ids: list[str], answer: str) -> dict[str, Any]:
    response = client.post("/v1/lending-query", json={"ids": ids, "answer": answer})
    if response.status_code >= 400:
        raise TransportError(f"lending query -> {response.status_code}: {response.text[:500]}")
    return response.json()
