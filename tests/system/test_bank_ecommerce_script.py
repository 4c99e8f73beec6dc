"""scripts/bank_ecommerce.py as its docstring tells a user to run it: prepare, three `vfl serve`, run.

The services speak mutual TLS with the federation's own CA, so `run` must find
the bank's URL, CA and token in the prepared folder (--config-dir) or be given
them (--bank, --ca, --token, --job).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from vfl.demo.services import running_services, wait_healthy
from vfl.service.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bank_ecommerce.py"


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180, cwd=ROOT)


def test_prepare_then_run_from_the_config_dir_and_with_explicit_flags(tmp_path):
    work = tmp_path / "bank-ecommerce"
    prepared = script("prepare", "--dir", str(work), "--customers", "600", "--key-bits", "1024", "--epochs", "3")
    assert prepared.returncode == 0, prepared.stderr
    assert f"run --config-dir {work}" in prepared.stdout

    bank = load_config(work / "party-b.toml")
    url = f"https://{bank.party.listen}"
    assert url in prepared.stdout  # prepare prints the https URLs the services listen on
    ids = pd.read_csv(work / "party-b" / "bank.csv", dtype=str)["customer_id"].tolist()
    shop = set(pd.read_csv(work / "party-a" / "shop.csv", dtype=str)["customer_id"])
    shared = [i for i in ids if i in shop][:2]

    with running_services(work) as processes:
        urls = {name: f"https://{load_config(work / f'{name}.toml').party.listen}" for name in processes}
        wait_healthy(urls, bank.token(), processes, work, verify=str(bank.tls.ca))
        from_folder = script("run", "--config-dir", str(work), "--score", *shared)
        explicit = script("run", "--bank", url, "--ca", str(work / "party-b" / "ca.pem"), f"--token={bank.token()}",
                          "--job", str(work / "job.json"))
        no_ca = script("run", "--bank", url, f"--token={bank.token()}", "--job", str(work / "job.json"))

    assert from_folder.returncode == 0, from_folder.stderr[-3000:]
    for name in ("party-a", "arbiter", "bank"):
        assert f"{name}: " in from_folder.stderr and "is up at https://" in from_folder.stderr
    assert "value of federation: auc" in from_folder.stdout and "bank only" in from_folder.stdout
    for i in shared:
        assert f"P(default | {i})" in from_folder.stdout
    assert explicit.returncode == 0, explicit.stderr[-3000:]
    assert "value of federation: auc" in explicit.stdout
    assert no_ca.returncode == 1 and "--ca" in no_ca.stderr  # says what is missing, not "Server disconnected"


def test_run_says_what_is_missing(tmp_path):
    nothing = script("run")
    empty = script("run", "--config-dir", str(tmp_path))

    assert nothing.returncode == 2 and "--config-dir" in nothing.stderr and "--bank" in nothing.stderr
    assert empty.returncode == 2 and "no service config with role B" in empty.stderr
