"""The job lifecycle (vfl.service.lifecycle): every pair of stages, and the record that enforces it."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest
from pydantic import ValidationError

from vfl.errors import JobError
from vfl.service.lifecycle import FINAL, LIFECYCLE, JobState, Stage, mermaid, transition
from vfl.service.record import DamagedJobRecord, JobRecord

S, T = JobState, Stage

#: The moves the parties make, written out a second time by hand: a change to the table must change this too.
EXPECTED = {
    T.REGISTERED: {T.PSI, T.ALIGNED, T.BINNING, T.TRAINING, T.RESUMING, T.STOPPED},
    T.PSI: {T.ALIGNED, T.BINNING, T.TRAINING, T.INTERRUPTED, T.RESUMING, T.STOPPED},
    T.ALIGNED: {T.BINNING, T.TRAINING, T.STOPPED},
    T.BINNING: {T.TRAINING, T.INTERRUPTED, T.RESUMING, T.STOPPED},
    T.TRAINING: {T.EVALUATING, T.DONE, T.INTERRUPTED, T.RESUMING, T.STOPPED},
    T.INTERRUPTED: {T.RESUMING, T.PSI, T.REGISTERED, T.TRAINING, T.STOPPED},
    T.RESUMING: {T.PSI, T.TRAINING, T.INTERRUPTED, T.STOPPED},
    T.EVALUATING: {T.CONTRIBUTIONS, T.LEDGER, T.DONE, T.INTERRUPTED, T.RESUMING, T.STOPPED},
    T.CONTRIBUTIONS: {T.LEDGER, T.DONE, T.STOPPED},
    T.LEDGER: {T.DONE, T.STOPPED},
    T.DONE: {T.DELETING, T.DELETED},
    T.STOPPED: {T.RESUMING, T.PSI, T.REGISTERED, T.TRAINING, T.DELETING, T.DELETED},
    T.DELETING: set(),
    T.DELETED: set(),
    T.DAMAGED: set(),
}


def test_the_table_covers_every_stage_and_shows_only_known_states():
    assert set(LIFECYCLE) == set(Stage)
    assert all(rule.states and rule.states <= set(JobState) for rule in LIFECYCLE.values())


@pytest.mark.parametrize("start, to", list(itertools.product(Stage, Stage)), ids=lambda s: str(s))
def test_every_pair_of_stages(start, to):
    for state in sorted(LIFECYCLE[start].states):
        if state is S.CANCELLED and to not in (T.DELETING, T.DELETED, start):
            with pytest.raises(JobError, match="cancelled"):
                transition(state, start, to, job_id="j")
            continue
        allowed = to is start or to in EXPECTED[start]
        if not allowed:
            with pytest.raises(JobError, match=f"cannot go from {start} to {to}"):
                transition(state, start, to, job_id="j")
            continue
        shows = LIFECYCLE[to].states
        if to is not start and state not in shows and len(shows) > 1:
            with pytest.raises(JobError, match="must say which"):  # resuming a failed job: aligning or training?
                transition(state, start, to, job_id="j")
            for outcome in shows:
                assert transition(state, start, to, outcome=outcome) == (outcome, to)
            continue
        new_state, new_stage = transition(state, start, to, job_id="j")
        assert new_stage is to and new_state in shows
        assert new_state is state or state not in shows  # a stage that allows the job's state keeps it


def test_every_stage_is_reachable_from_registered_and_every_running_stage_can_stop():
    reachable, frontier = {T.REGISTERED}, [T.REGISTERED]
    while frontier:
        for following in LIFECYCLE[frontier.pop()].next - reachable:
            reachable.add(following)
            frontier.append(following)
    assert reachable == set(Stage) - {T.DAMAGED}  # damaged is how a record is read back, never a move
    running = [stage for stage, rule in LIFECYCLE.items() if not rule.states <= FINAL]
    assert all(T.STOPPED in LIFECYCLE[stage].next for stage in running)


def test_a_record_refuses_a_misspelt_state_or_stage():
    record = JobRecord(job_id="j", role="B")

    with pytest.raises(ValidationError):
        record.state = "finised"
    with pytest.raises(ValidationError):
        record.stage = "trainig"

    assert record.state is S.PENDING and not record.finished


def test_a_record_moves_only_as_the_table_allows():
    record = JobRecord(job_id="j", role="A")
    record.advance(T.PSI)
    record.advance(T.ALIGNED)

    with pytest.raises(JobError, match="job j cannot go from aligned to done"):
        record.advance(T.DONE)
    record.advance(T.TRAINING)
    record.advance(T.STOPPED, outcome=S.CANCELLED)

    assert (record.state, record.stage) == (S.CANCELLED, T.STOPPED) and record.finished
    with pytest.raises(JobError, match="cancelled"):
        record.advance(T.RESUMING, outcome=S.TRAINING)  # a cancelled job never runs again


def test_a_damaged_record_never_moves():
    record = DamagedJobRecord(job_id="j", role="C", state=S.DAMAGED, stage=T.DAMAGED, error="checksum")

    with pytest.raises(JobError, match="damaged"):
        record.advance(T.DELETING)


def test_old_records_keep_their_spec_under_the_name_that_says_what_it_is():
    at_b = JobRecord.model_validate({"job_id": "j", "role": "B", "spec": {"training": {"epochs": 2}}})
    at_a = JobRecord.model_validate({"job_id": "j", "role": "A", "spec": {"training": {"epochs": 2}}})

    assert at_b.job_spec == {"training": {"epochs": 2}} and at_b.registration is None
    assert at_a.registration == {"training": {"epochs": 2}} and at_a.job_spec is None


def test_the_diagram_is_drawn_from_the_table():
    diagram = mermaid()

    assert diagram.startswith("stateDiagram-v2")
    for stage, rule in LIFECYCLE.items():
        for following in rule.next:
            assert f"    {stage} --> {following}" in diagram


def test_the_committed_lifecycle_document_is_drawn_from_the_current_table():
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("lifecycle_doc", root / "scripts" / "lifecycle_doc.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    assert (root / "docs" / "lifecycle.md").read_text() == script.render(), (
        "docs/lifecycle.md is out of date: run python scripts/lifecycle_doc.py")
