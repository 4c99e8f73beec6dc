"""The quick start's curl block (docs/quick-start.md), run as it is with bash against the demo's services.

`vfl demo --workdir demo --prepare-only` writes the folder (small and with
1024-bit keys, so the job takes seconds), three `vfl serve` processes serve it
with mutual TLS, and the block runs from the folder holding demo/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vfl.demo.services import running_services, wait_healthy
from vfl.service.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def rest_api_block() -> str:
    page = (ROOT / "docs" / "quick-start.md").read_text()
    section = page[page.index("## Drive party B with curl"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no ```sh block under '## Drive party B with curl' in docs/quick-start.md"
    return match.group(1)


def json_documents(text: str) -> list:
    """curl prints each answer without a newline: split the glued JSON documents."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
    return documents


def test_the_block_uses_no_alias_and_names_what_it_needs():
    block = rest_api_block()
    assert "alias" not in block
    curls = [line for line in block.splitlines() if re.search(r"(^|\$\(|while )curl ", line)]
    assert curls and all("--cacert $CA" in line for line in curls)
    assert "TOKEN=$(cat demo/party-b/token)" in block


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("bash", "curl", "jq")),
                    reason="the quick start's curl block needs bash, curl and jq on PATH")
def test_the_rest_api_block_runs_against_the_demo_services(tmp_path):
    demo = tmp_path / "demo"
    prepared = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "demo", "--workdir", str(demo), "--prepare-only", "--customers", "600",
         "--key-bits", "1024", "--epochs", "3"], capture_output=True, text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stderr
    bank = load_config(demo / "party-b.toml")

    with running_services(demo) as processes:
        urls = {name: f"https://{load_config(demo / f'{name}.toml').party.listen}" for name in processes}
        wait_healthy(urls, bank.token(), processes, demo, verify=str(bank.tls.ca))
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", rest_api_block()], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    health, first_status, model, predicted, listed, cancel, resume = json_documents(done.stdout)  # submit: in $JOB
    assert health["status"] == "ok" and health["role"] == "B"
    job_id = first_status["job_id"]
    assert model["job_id"] == job_id and model["party"] == "B" and model["weights"]
    assert [p["id"] for p in predicted["predictions"]] == ["C0005009", "C0007369"]
    assert [(j["job_id"], j["state"]) for j in listed["jobs"]] == [(job_id, "succeeded")]
    assert "already succeeded" in cancel["detail"] and "nothing to resume" in resume["detail"]
    page = (tmp_path / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and job_id in page
