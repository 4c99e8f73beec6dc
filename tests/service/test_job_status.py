"""A job's status beyond its record: progress (an early stop is done), the peers being retried right now
(``waiting_for``, at once rather than after ``peer_timeout``), and the timeline and event log the record keeps."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from vfl.errors import TransportError
from vfl.report.progress import ProgressLine, waiting_text
from vfl.service.lifecycle import JobState, Stage
from vfl.service.record import MAX_EVENTS, JobRecord
from vfl.service.status import job_status, progress

PEERS = {"A": "party-a", "B": "party-b", "C": "arbiter"}


def _record(**fields) -> JobRecord:
    return JobRecord(job_id="j-1", role="B", peers=PEERS, **fields)


def test_a_job_that_stopped_early_and_succeeded_is_done_not_forty_percent():
    record = _record(state=JobState.SUCCEEDED, stage=Stage.DONE, epoch=12, max_epochs=30,
                     stop_reason="early_stopping")

    shown = progress(record)

    assert shown == {"fraction": 1.0, "text": "stopped early at epoch 12 of 30"}


@pytest.mark.parametrize("fields, expected", [
    ({"state": JobState.TRAINING, "stage": Stage.TRAINING, "epoch": 12, "max_epochs": 30},
     {"fraction": 0.4, "text": "epoch 12 of 30"}),
    ({"state": JobState.SUCCEEDED, "stage": Stage.DONE, "epoch": 30, "max_epochs": 30, "stop_reason": "max_epochs"},
     {"fraction": 1.0, "text": "30 of 30 epochs"}),
    ({"state": JobState.SUCCEEDED, "stage": Stage.DONE, "epoch": 9, "max_epochs": 30, "stop_reason": "converged"},
     {"fraction": 1.0, "text": "converged at epoch 9 of 30"}),
    ({"state": JobState.TRAINING, "stage": Stage.CONTRIBUTIONS, "epoch": 9, "max_epochs": 30,
      "activity": "contributions: coalition 1 of 3 (B + shop), epoch 4/30"},
     {"fraction": 0.3, "text": "contributions: coalition 1 of 3 (B + shop), epoch 4/30"}),
    ({"state": JobState.FAILED, "stage": Stage.STOPPED, "epoch": 3, "max_epochs": 30},
     {"fraction": 0.1, "text": "failed at epoch 3 of 30"}),
    ({"state": JobState.ALIGNING, "stage": Stage.PSI}, {"fraction": 0.0, "text": "aligning"}),
])
def test_progress_says_how_far_a_job_is_in_words(fields, expected):
    shown = progress(_record(**fields))

    assert shown["text"] == expected["text"] and shown["fraction"] == pytest.approx(expected["fraction"])


def test_the_record_keeps_every_move_of_its_lifecycle_and_not_staying_put():
    record = _record()

    record.advance(Stage.PSI)
    record.advance(Stage.PSI)  # a new PSI session after a resume stays at psi: no move
    record.advance(Stage.TRAINING)

    assert [(m["stage"], m["state"]) for m in record.timeline] == [("psi", "aligning"), ("training", "training")]
    assert record.timeline[0]["at"] <= record.timeline[1]["at"]


def test_the_event_log_keeps_the_newest_lines_only():
    record = _record()

    for n in range(MAX_EVENTS + 5):
        record.note("info", f"epoch {n}")

    assert len(record.events) == MAX_EVENTS
    assert record.events[0]["message"] == "epoch 5" and record.events[-1]["message"] == f"epoch {MAX_EVENTS + 4}"


def test_a_peer_that_stops_answering_shows_at_once_and_goes_when_it_answers_again(service, run):
    bank = service("party-b")
    back = asyncio.Event()

    def party_a(request: httpx.Request) -> httpx.Response:
        if not back.is_set():
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return httpx.Response(200, json={"state": "training"})

    bank.peers.script[("GET", "/v1/peer/jobs/j-1/state")] = party_a
    client = bank.node.client
    record = _record(state=JobState.TRAINING, stage=Stage.TRAINING, epoch=3, max_epochs=30)

    async def scenario():
        started = time.time()
        call = asyncio.create_task(client.call_json("party-a", "GET", "/v1/peer/jobs/j-1/state"))
        await asyncio.sleep(0.5)  # a few retries, far below peer_timeout
        during = bank.node.status(record)
        back.set()
        answer = await call
        return started, during, answer, bank.node.status(record)

    started, during, answer, after = run(scenario())

    [waiting] = during["waiting_for"]
    assert waiting["peer"] == "party-a" and waiting["state"] == "unreachable"
    assert started - 0.001 <= waiting["since"] <= started + 0.5  # "since" is rounded to the millisecond
    assert waiting["fails_at"] == pytest.approx(started + client.peer_timeout, abs=0.5)
    assert "ConnectError" in waiting["problem"]
    assert answer == {"state": "training"}
    assert after["waiting_for"] == []
    assert during["progress"] == {"fraction": 0.1, "text": "epoch 3 of 30"}


def test_a_call_that_gives_up_leaves_no_stale_wait_behind(service, run):
    bank = service("party-b")
    bank.node.client.peer_timeout = 0.3

    def party_a(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    bank.peers.script[("GET", "/v1/peer/jobs/j-1/state")] = party_a

    async def scenario():
        with pytest.raises(TransportError):
            await bank.node.client.call_json("party-a", "GET", "/v1/peer/jobs/j-1/state")

    run(scenario())

    assert bank.node.client.waiting_for(["party-a"]) == []


def test_a_finished_job_waits_for_nobody():
    record = _record(state=JobState.FAILED, stage=Stage.STOPPED)
    waiting = [{"peer": "party-a", "state": "unreachable", "since": 1.0, "fails_at": 121.0, "problem": "x"}]

    status = job_status(record, waiting)

    assert status["waiting_for"] == [] and status["job_id"] == "j-1"


def test_the_wait_reads_as_a_sentence_in_the_cli_and_the_progress_line(capsys):
    since = time.mktime((2026, 12, 6, 12, 3, 11, 0, 0, -1))
    waiting = {"peer": "party-a", "state": "unreachable", "since": since, "fails_at": since + 120, "problem": "x"}
    status = {"job_id": "j-1", "state": "training", "stage": "training", "epoch": 3, "max_epochs": 30,
              "waiting_for": [waiting]}

    ProgressLine().job(status)

    sentence = "waiting for party-a (unreachable since 12:03:11; the job fails at 12:05:11 unless it comes back)"
    assert waiting_text(waiting) == sentence
    assert sentence in capsys.readouterr().err


def test_a_call_stopped_while_it_retries_takes_its_wait_with_it(service, run):
    bank = service("party-b")

    def party_a(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    bank.peers.script[("GET", "/v1/peer/jobs/j-1/state")] = party_a

    async def scenario():
        call = asyncio.create_task(bank.node.client.call_json("party-a", "GET", "/v1/peer/jobs/j-1/state"))
        await asyncio.sleep(0.3)
        during = bank.node.client.waiting_for(["party-a"])
        call.cancel()  # its job was cancelled meanwhile
        with pytest.raises(asyncio.CancelledError):
            await call
        return during

    during = run(scenario())

    assert [w["peer"] for w in during] == ["party-a"]
    assert bank.node.client.waiting_for(["party-a"]) == []
