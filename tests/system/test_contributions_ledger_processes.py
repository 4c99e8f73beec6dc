"""Contributions and the co-signed ledger with four `vfl serve` processes over mTLS (the in-process tests are in
tests/cluster/test_contributions_ledger.py)."""

from __future__ import annotations

import ssl
import time

import httpx

from tests.cluster.test_contributions_ledger import SERVICES, TRAINING
from tests.helpers import get
from vfl.cli import main
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.incentives import chain


def test_four_vfl_serve_processes_over_mtls_measure_contributions_and_co_sign_with_their_tls_keys(tmp_path, capsys):
    """The same as real processes: each service signs with its TLS key; `vfl ledger verify` checks each copy."""
    setup = write_demo_files(tmp_path, population=500, key_bits=1024, training=TRAINING, feature_parties=2)
    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        verify = ssl.create_default_context(cafile=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], timeout=60, verify=verify,
                          headers={"Authorization": f"Bearer {setup['token']}"}) as bank:
            answer = bank.post("/v1/jobs", json={**setup["job"], "job_id": "tls-job", "contributions": True})
            assert answer.status_code == 201, answer.text
            while (status := get(bank, "/v1/jobs/tls-job"))["state"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.2)
        capsys.readouterr()
        assert main(["jobs", "status", "tls-job", "--url", setup["urls"]["party-b"], "--token", setup["token"],
                     "--ca", str(setup["verify"])]) == 0
        shown = capsys.readouterr().out
    assert status["state"] == "succeeded", status["error"]
    assert [p["party"] for p in status["contributions"]["parties"]] == ["shop", "telco"]
    assert status["ledger"]["signatures_verified"] and status["ledger"]["signed_by"] == [
        "shop", "telco", "party-b", "arbiter"]
    for name in SERVICES:  # each copy, against that party's own copy of the CA certificate
        copy = tmp_path / "data" / name / "ledger" / "party-b"
        assert main(["ledger", "verify", str(copy), "--ca", str(tmp_path / name / "ca.pem")]) == 0
        entry = chain.Ledger(copy).entries()[0]
        assert {s["party"] for s in entry["signatures"]} == set(SERVICES)
    signed = {s["party"]: s["certificate"] for s in entry["signatures"]}
    assert signed["shop"] == (tmp_path / "shop" / "shop.pem").read_text()  # the TLS certificate signs
    assert "ledger     entry 0" in shown and "every signature verified" in shown and "shapley" in shown
