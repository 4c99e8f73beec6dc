"""Real processes: party A stops mid-training; party B's status, the CLI and the dashboard's data say so at once
("waiting for party-a (unreachable since ...; the job fails at ...)"), not only after peer_timeout; and the wait
goes when A is back and the job goes on."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time

import httpx

from tests.helpers import get, serve
from vfl.demo.services import running_services, wait_healthy, write_demo_files

TRAINING = {"epochs": 400, "tol": 0, "early_stopping_rounds": 0, "batch_size": 100}


def test_a_peer_that_stops_answering_shows_at_once_and_goes_when_it_is_back(tmp_path):
    setup = write_demo_files(tmp_path, population=600, key_bits=1024, training=TRAINING)
    verify = ssl.create_default_context(cafile=setup["verify"])
    headers = {"Authorization": f"Bearer {setup['token']}"}
    env = os.environ | {"VFL_URL": setup["urls"]["party-b"], "VFL_TOKEN": setup["token"], "VFL_CA": setup["verify"]}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, timeout=30, verify=verify) as bank:
            job_id = bank.post("/v1/jobs", json=json.loads((tmp_path / "job.json").read_text())).json()["job_id"]
            while get(bank, f"/v1/jobs/{job_id}")["epoch"] < 2:
                time.sleep(0.05)
            processes["party-a"].send_signal(signal.SIGKILL)
            processes["party-a"].wait()
            killed = time.time()
            status = get(bank, f"/v1/jobs/{job_id}")
            while not status["waiting_for"] and time.time() < killed + 30:
                time.sleep(0.1)
                status = get(bank, f"/v1/jobs/{job_id}")
            noticed = time.time()
            cli = subprocess.run([sys.executable, "-m", "vfl.cli", "jobs", "status", job_id], env=env,
                                 capture_output=True, text=True, timeout=60)
            processes["party-a"] = serve(tmp_path, "party-a")
            after = get(bank, f"/v1/jobs/{job_id}")
            while after["waiting_for"] and time.time() < noticed + 60:
                time.sleep(0.2)
                after = get(bank, f"/v1/jobs/{job_id}")
            bank.post(f"/v1/jobs/{job_id}/cancel")

    [waiting] = status["waiting_for"]
    peer_timeout = 120.0  # the demo's limits.peer_timeout (the default)
    assert waiting["peer"] == "party-a" and waiting["state"] == "unreachable"
    assert status["state"] == "training" and status["error"] is None
    assert noticed - killed < 10, f"noticed {noticed - killed:.1f}s after the kill"
    assert killed - 1 <= waiting["since"] <= noticed
    assert abs(waiting["fails_at"] - waiting["since"] - peer_timeout) < 5
    assert cli.returncode == 0, cli.stderr
    assert "waiting    waiting for party-a (unreachable since " in cli.stdout
    assert "unless it comes back)" in cli.stdout
    assert after["waiting_for"] == [] and after["state"] in ("training", "aligning"), after
