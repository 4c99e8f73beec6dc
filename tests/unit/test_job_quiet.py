"""How long a job has been quiet, as a watchdog and its peers see it (JobRuntime.quiet, the probe's ``quiet``)."""

import time

import pytest

from vfl.service.runtime import JobRuntime
from vfl.service.watchdog import quiet_answer


def runtime(party: str = "B") -> JobRuntime:
    async def nothing(*args, **kwargs):
        return None

    return JobRuntime("j", party, send=None, on_handled=nothing, on_failure=nothing, synchronous=True)


def age(rt: JobRuntime, seconds: float) -> None:
    rt.last_activity = time.monotonic() - seconds


def test_own_quiet_is_the_time_since_the_last_activity_and_touch_resets_it():
    rt = runtime()
    age(rt, 50.0)

    before = rt.quiet()
    rt.touch()

    assert 50.0 <= before < 51.0
    assert rt.quiet() < 1.0


def test_a_peers_more_recent_news_counts_aged_by_the_time_since():
    rt = runtime()
    age(rt, 100.0)

    rt.note_quiet("party-a", 3.0)
    at, (reported, noted) = time.monotonic(), rt._peer_quiet["party-a"]

    assert reported == 3.0 and noted <= at
    assert 3.0 <= rt.quiet() < 4.0
    rt._peer_quiet["party-a"] = (3.0, noted - 40.0)  # said 40 s ago: 43 s by now
    assert 43.0 <= rt.quiet() < 44.0


def test_news_reaches_a_party_that_does_not_talk_to_the_worker_and_never_makes_a_dead_job_look_alive(monkeypatch):
    # Party A builds its offline set (busy); party C, done with its own PSI, only talks to B and the arbiter.
    clock = [1000.0]
    monkeypatch.setattr("vfl.service.runtime.time.monotonic", lambda: clock[0])
    a, b, c = runtime("A"), runtime("B"), runtime("C")
    clock[0] += 500.0  # B and C have been quiet for 500 s
    a.touch()

    b.note_quiet("party-a", quiet_answer(a.quiet()))  # B's watchdog probed A
    c.note_quiet("party-b", quiet_answer(b.quiet()))  # C's watchdog probed B

    assert c.quiet() == 0.0
    # A stops. An hour later, even after every party has asked every other again, the news is an hour old:
    # each relay adds the time since, and a round trip through the others cannot make it younger.
    clock[0] += 3600.0
    for _ in range(3):
        b.note_quiet("party-c", quiet_answer(c.quiet()))
        c.note_quiet("party-b", quiet_answer(b.quiet()))
        b.note_quiet("party-a", quiet_answer(a.quiet()))
        a.note_quiet("party-b", quiet_answer(b.quiet()))
    assert min(a.quiet(), b.quiet(), c.quiet()) >= 3600.0


@pytest.mark.parametrize("reported", [None, "3", -1.0, float("nan"), float("inf"), True])
def test_an_answer_without_a_usable_quiet_is_ignored(reported):
    rt = runtime()
    age(rt, 100.0)

    rt.note_quiet("party-a", reported)

    assert rt.quiet() >= 100.0


def test_answers_round_up_so_relaying_never_makes_news_younger():
    assert quiet_answer(0.01) == 0.1
    assert quiet_answer(2.0) == 2.0
    assert quiet_answer(2.04) == 2.1
