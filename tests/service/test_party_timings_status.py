"""Per-party timings and the PSI's progress in a job's status, from records and fake roles (no services)."""

from __future__ import annotations

import math

import pytest

from psi.protocol import BucketProgress
from vfl.service.lifecycle import JobState, Stage
from vfl.service.record import JobRecord
from vfl.service.status import job_status, progress, psi_progress
from vfl.service.timings import checked, party_timings, stage_seconds

PEERS = {"A": "party-a", "B": "party-b", "C": "arbiter"}


def _record(role: str = "B", **fields) -> JobRecord:
    return JobRecord(job_id="j-1", role=role, peers=PEERS, **fields)


def _finished(role: str = "B", **fields) -> JobRecord:
    timeline = [{"at": 100.0, "stage": "psi", "state": "aligning"},
                {"at": 102.34, "stage": "training", "state": "training"},
                {"at": 110.0, "stage": "interrupted", "state": "training"},
                {"at": 111.0, "stage": "training", "state": "training"},
                {"at": 115.0, "stage": "done", "state": "succeeded"}]
    return _record(role, state=JobState.SUCCEEDED, stage=Stage.DONE, created_at=99.0, stopped_at=115.0,
                   timeline=timeline, **fields)


def test_stage_seconds_sum_each_stages_visits_rounded_to_a_tenth():
    seconds = stage_seconds(_finished())

    assert seconds == {"registered": 1.0, "psi": 2.3, "training": 11.7, "interrupted": 1.0}


def test_training_compute_and_waiting_add_up_to_the_stage():
    entry = party_timings(_finished("A", timings={"training_compute": 4.04}), "party-a")[0]

    assert entry["training"] == {"seconds": 11.7, "compute": 4.0, "waiting": 7.7}
    assert entry["party"] == "party-a" and entry["role"] == "A" and entry["available"] is True


def test_party_b_lists_every_party_and_says_why_one_is_missing():
    kept = {"party-a": {"party": "party-a", "role": "A", "available": True, "stages": {"psi": 1.0}}}
    running = _record(state=JobState.TRAINING, stage=Stage.TRAINING)
    done = _finished(peer_timings=kept)

    while_running = party_timings(running, "party-b")
    after = party_timings(done, "party-b")

    assert [e["role"] for e in while_running] == ["A", "B", "C"]
    assert all(not e["available"] and "asked when the job has run" in e["reason"]
               for e in while_running if e["role"] != "B")
    assert [e["available"] for e in after] == [True, True, False]
    assert after[2]["reason"].startswith("not available")


@pytest.mark.parametrize("answer", [
    "a string", {"stages": "x"}, {"stages": {"psi": math.nan}}, {"stages": {"psi": -1}}, {"stages": {"psi": "1"}},
    {"stages": {f"s{n}": 1 for n in range(40)}}, {"stages": {"psi": 1}, "training": {"seconds": 1}},
])
def test_party_b_keeps_nothing_but_durations_from_a_peers_answer(answer):
    entry = checked(_record(), "party-a", answer)

    assert entry["available"] is False and "not its timings" in entry["reason"]


def test_a_peers_good_answer_is_rounded_again_and_named_by_b():
    answer = {"party": "someone-else", "role": "B", "state": "succeeded", "stages": {"psi": 1.234},
              "training": {"seconds": 2.0, "compute": 0.76, "waiting": 1.24}, "rows": [1, 2, 3]}

    entry = checked(_record(), "party-a", answer)

    assert entry == {"party": "party-a", "role": "A", "available": True, "state": "succeeded",
                     "stages": {"psi": 1.2}, "training": {"seconds": 2.0, "compute": 0.8, "waiting": 1.2}}


class _Requester:
    done = False

    def bucket_progress(self) -> BucketProgress:
        return BucketProgress(buckets_done=1, buckets=3, chunks_done=5, chunks=8, ids_done=400, ids=1200)


class _Unbalanced:
    done = False
    progress = (30, 100)


def test_the_progress_names_each_psis_bucket_and_chunk_while_the_job_aligns():
    record = _record(state=JobState.ALIGNING, stage=Stage.PSI, max_epochs=10)
    roles = {"psi:A": _Requester(), "train": object()}

    psi = psi_progress(record, roles)
    shown = progress(record, psi)
    status = job_status(record, [], me="party-b", roles=roles)

    assert psi == [{"peer": "party-a", "buckets_done": 1, "buckets": 3, "chunks_done": 5, "chunks": 8,
                    "ids_done": 400, "ids": 1200}]
    assert shown["text"] == "PSI with party-a: bucket 2 of 3, 5 of 8 chunks" and shown["fraction"] == 0.0
    assert status["progress"]["psi"] == psi


def test_a_psi_without_buckets_reports_its_ids_and_nothing_shows_after_the_alignment():
    aligning = _record(state=JobState.ALIGNING, stage=Stage.PSI)
    training = _record(state=JobState.TRAINING, stage=Stage.TRAINING, max_epochs=10)

    psi = psi_progress(aligning, {"psi:A": _Unbalanced()})

    assert progress(aligning, psi)["text"] == "PSI with party-a: bucket 1 of 1, 30 of 100 IDs"
    assert psi_progress(training, {"psi:A": _Requester()}) == []
