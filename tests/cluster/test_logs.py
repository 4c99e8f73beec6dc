"""An operator's log: each job's story at INFO, no per-message lines, and JSON lines for log shippers."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tests.helpers import demo_job, start_cluster, submit_until_epoch, wait_for
from vfl.service import logs


@pytest.fixture
def service_logging():
    """Configure logging as `vfl serve` does, into a buffer; put everything back afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in logs.NOISY})
    buffers = []

    def configure(level: str = "info", fmt: str = "text") -> io.StringIO:
        buffer = io.StringIO()
        logs.configure(level, fmt, stream=buffer)
        buffers.append(buffer)
        return buffer

    yield configure
    root.setLevel(saved[0])
    for handler in [h for h in root.handlers if h not in saved[1]]:
        root.removeHandler(handler)
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_info_tells_the_jobs_story_without_per_message_lines(tmp_path, run, service_logging):
    buffer = service_logging("info", "text")

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=4, tol=0, validation_fraction=0.2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "story"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                return await wait_for(bank, "story")
        finally:
            await cluster.stop()

    status = run(scenario())
    lines = buffer.getvalue().splitlines()
    text = "\n".join(lines)

    assert status["state"] == "succeeded", status["error"]
    assert "job story: submitted; registered with party A (party-a), party C (arbiter)" in text
    assert text.count("job story: registered by party B (party-b)") == 2  # at A (with its dataset) and at C
    rows = status["alignment"]["intersection"]
    assert f"job story: aligned: {rows} rows shared with party A (party-a)" in text  # B
    assert f"job story: aligned: {rows} rows shared with party B" in text  # A
    assert text.count(f"job story: training on {rows} aligned rows") == 3
    for epoch, loss in enumerate(status["loss_history"], start=1):
        assert f"job story: epoch {epoch}/4: train loss {loss:.6f}, validation loss" in text
    assert "job story: succeeded after 4 epochs in" in text and "(validation: auc " in text
    # Nothing per message: no httpx request lines, no "not ready" answers; a job is a few dozen lines.
    assert not [line for line in lines if "HTTP Request" in line or " httpx: " in line or "NotReady" in line]
    assert len(lines) < 40, text


def test_debug_shows_each_peer_request(tmp_path, run, service_logging):
    buffer = service_logging("debug", "text")

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                assert (await bank.get("/v1/health")).status_code == 200
        finally:
            await cluster.stop()

    run(scenario())
    assert "httpx: HTTP Request: GET http://party-b.test/v1/health" in buffer.getvalue()


def test_json_lines_carry_the_job_id_through_failure_and_resume(tmp_path, run, service_logging):
    buffer = service_logging("info", "json")

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=6, tol=0))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, {**cluster.setup["job"], "job_id": "bumpy"}, 2)
                await cluster.nodes["party-b"].job("bumpy").fail("the operator pulled the plug")
                assert (await bank.get("/v1/jobs/bumpy")).json()["state"] == "failed"
                resumed = await bank.post("/v1/jobs/bumpy/resume")
                assert resumed.status_code == 200, resumed.text
                return await wait_for(bank, job["job_id"])
        finally:
            await cluster.stop()

    status = run(scenario())
    entries = [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is one JSON object

    assert status["state"] == "succeeded" and status["resumes"] == 1, status["error"]
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in entries)
    about = [e for e in entries if "bumpy" in e["message"]]
    assert about and all(e.get("job_id") == "bumpy" for e in about)
    messages = [e["message"] for e in about]
    failed = [e for e in about if e["message"].startswith("job bumpy: failed: ")]
    assert {e["level"] for e in failed} == {"ERROR"} and len(failed) == 3  # B, and A and C told by B
    assert any("the operator pulled the plug" in m for m in messages)
    assert sum("resumed after epoch" in m for m in messages) == 3
    assert any(m.startswith("job bumpy: succeeded after 6 epochs") for m in messages)
    # The resumed epochs are told again; the last one is the sixth.
    assert any(m.startswith("job bumpy: epoch 6/6: train loss") for m in messages)


def test_log_format_and_level_are_checked():
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "yaml")
    with pytest.raises(ValueError, match="log level"):
        logs.configure("loud", "text")
    record = logging.LogRecord("vfl.service", logging.INFO, __file__, 1, "job %s: epoch %d", ("j1", 3), None)
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry.pop("time").endswith("Z")
    assert entry == {"level": "INFO", "logger": "vfl.service", "message": "job j1: epoch 3", "job_id": "j1"}
