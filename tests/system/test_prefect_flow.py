"""scripts/prefect_flow.py under Prefect's own test harness, against the demo's three services as real processes.

Party A is down when the flow starts, so party B answers the submit 502; the
flow's submit task retries, party A comes back, and the flow trains the job,
waits for it and publishes it under a model name. One job exists at the end:
the retried submits carried the same Idempotency-Key.
"""

from __future__ import annotations

import contextvars
import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vfl.compute.childproc import ends_with_parent
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.orchestrate import Orchestrator

pytest.importorskip("prefect", reason="Prefect is the optional extra 'orchestrate': pip install -e '.[orchestrate]'")
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prefect_flow.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("prefect_flow", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_flow_retries_a_502_then_trains_waits_and_publishes(tmp_path: Path) -> None:
    # Arrange: three services, party A stopped until party B has answered a submit 502.
    setup = write_demo_files(tmp_path, population=300, key_bits=1024, training={"epochs": 2})
    script = load_script()
    ca = str(setup["verify"])
    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        processes["party-a"].terminate()
        processes["party-a"].wait(timeout=30)

        outcome: dict[str, Any] = {}

        def run_flow() -> None:
            try:
                outcome["result"] = script.train_and_publish(
                    setup["urls"]["party-b"], setup["token"], setup["job"], "risk", ca=ca, interval=0.2,
                    retry_delay_seconds=1.0)
            except BaseException as exc:  # handed to the test's thread
                outcome["error"] = exc

        # Act: the flow runs in a thread (with the harness's context); this thread brings party A back once
        # party B has answered a submit 502, and is the parent of the new process (a child tied to its parent
        # dies with the thread that started it).
        with prefect_test_harness(server_startup_timeout=120):
            flow_thread = threading.Thread(target=contextvars.copy_context().run, args=(run_flow,))
            flow_thread.start()
            deadline = time.monotonic() + 180
            while "POST /v1/jobs -> 502" not in (tmp_path / "party-b.log").read_text(errors="replace"):
                assert time.monotonic() < deadline and flow_thread.is_alive(), outcome
                time.sleep(0.2)
            with open(tmp_path / "party-a.log", "ab") as log:
                processes["party-a"] = subprocess.Popen(  # running_services stops it at the end
                    [sys.executable, "-m", "vfl.cli", "serve", "--config", "party-a.toml"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=ends_with_parent())
            flow_thread.join(timeout=400)
            if "error" in outcome:
                raise outcome["error"]
            result = outcome["result"]
            with get_client(sync_client=True) as prefect:
                attempts = {run.name.split("-")[0]: run.run_count for run in prefect.read_task_runs()}
        with Orchestrator(setup["urls"]["party-b"], setup["token"], verify=ca) as bank:
            jobs = bank.jobs()
            served = bank.served_model("risk")

    # Assert
    assert result["job"]["state"] == "succeeded"
    assert result["model"]["name"] == "risk" and result["model"]["job_id"] == result["job"]["job_id"]
    assert attempts["submit"] >= 2, attempts  # the first submit met party A down (502) and was retried
    assert attempts["wait"] == 1 and attempts["publish"] == 1, attempts
    assert [job["job_id"] for job in jobs] == [result["job"]["job_id"]]  # the retries started no second job
    assert served["job_id"] == result["job"]["job_id"]


def test_a_refusal_that_would_repeat_is_not_retried(tmp_path: Path) -> None:
    # Arrange: no service at all behind the URL is retried; a wrong token (401) is not.
    script = load_script()

    class Failed:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self) -> None:
            raise self.exc

    from vfl.errors import JobError, PeerRefused, TransportError

    # Act / Assert
    assert script.retry_when_unavailable(None, None, Failed(PeerRefused("503", 503)))
    assert script.retry_when_unavailable(None, None, Failed(PeerRefused("502", 502)))
    assert script.retry_when_unavailable(None, None, Failed(TransportError("cannot reach")))
    assert not script.retry_when_unavailable(None, None, Failed(PeerRefused("401", 401)))
    assert not script.retry_when_unavailable(None, None, Failed(PeerRefused("422", 422)))
    assert not script.retry_when_unavailable(None, None, Failed(JobError("job failed")))
