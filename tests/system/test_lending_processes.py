"""Multi-lender queries between real `vfl serve` processes over mTLS: the demo, the CLI, a lender's crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.helpers import serve
from vfl.demo.services import wait_healthy
from vfl.demo.lending import (
    QUERIER,
    borrowers_of,
    client_for,
    pick_applicants,
    running_lending_services,
    wait_published,
    write_lending_files,
)


def test_vfl_demo_lending_writes_answers_and_truth(tmp_path):
    out = tmp_path / "result.json"

    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "demo", "--lending", "--workdir", str(tmp_path / "work"), "--out", str(out),
         "--key-bits", "1024"],
        capture_output=True, text=True, timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result) == {"queries", "budget_refused"} and result["budget_refused"] is True
    assert all(set(q) == {"id", "found_at", "truth"} for q in result["queries"])
    assert [len(q["truth"]) for q in result["queries"]] == [2, 0]  # found at two lenders, then at none
    assert all(q["found_at"] == q["truth"] for q in result["queries"])
    assert "found at no lender" in done.stdout and "refused (429)" in done.stdout
    work = tmp_path / "work"
    for name in ("lender-1", "lender-2", "lender-3"):
        assert not any(q["id"] in (work / "data" / name / "lending" / "audit.log").read_text()
                       for q in result["queries"])


def test_cli_query_over_mtls_and_a_lender_killed_and_restarted(tmp_path):
    setup = write_lending_files(tmp_path, population=1000, borrowers=300, key_bits=1024, lending={"budget_per_day": 50})
    held = borrowers_of(setup["borrowers"])
    two, none = pick_applicants(held, setup["population"])
    cli = [sys.executable, "-m", "vfl.cli", "lending-query", "--url", setup["urls"][QUERIER],
           "--token", setup["tokens"][QUERIER], "--ca", str(setup["verify"])]

    with running_lending_services(tmp_path, setup["names"]) as processes:
        published = wait_published(setup, processes, tmp_path)
        table = subprocess.run(cli + ["--ids", two, none], capture_output=True, text=True, timeout=60)
        counted = subprocess.run(cli + ["--ids", two, "--count", "--json"], capture_output=True, text=True, timeout=60)
        unknown = subprocess.run(cli + ["--ids", two, "--lenders", "lender-7"], capture_output=True, text=True,
                                 timeout=60)
        # A lender dies without warning and comes back: same key, same tag set, same budget spent.
        os.kill(processes["lender-2"].pid, signal.SIGKILL)
        processes["lender-2"].wait()
        processes["lender-2"] = serve(tmp_path, "lender-2")
        wait_healthy({"lender-2": setup["urls"]["lender-2"]}, setup["tokens"]["lender-2"], processes, tmp_path,
                     verify=setup["verify"])
        with client_for(setup, "lender-2") as lender:
            state = lender.get("/v1/lending").json()["lender"]
        again = subprocess.run(cli + ["--ids", two, "--json"], capture_output=True, text=True, timeout=60)

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "FOUND", "AT"]
    truth = [n for n in setup["lenders"] if two in held[n]]
    assert lines[1].split(None, 1) == [two, ", ".join(truth)] and lines[2].split() == [none, "-"]
    assert json.loads(counted.stdout)["results"] == [{"id": two, "count": 2}]
    assert unknown.returncode == 1 and "unknown lender 'lender-7'" in unknown.stderr
    assert state["tag_set"]["key_id"] == published["lender-2"]["key_id"]
    assert state["queriers"][QUERIER]["used"] == 3  # two, none, then two again (count): kept across the crash
    assert json.loads(again.stdout)["results"][0]["found_at"] == truth
