"""How one party's timings read in `vfl jobs status` and the HTML report (vfl.report.progress.timing_text)."""

from vfl.report.job_sections import timings_section
from vfl.report.progress import timing_text

ENTRY = {"party": "party-a", "role": "A", "available": True, "state": "succeeded",
         "stages": {"registered": 0.0, "psi": 3.7, "aligned": 0.0, "training": 16.8},
         "training": {"seconds": 16.8, "compute": 6.3, "waiting": 10.5}}


def test_stages_that_took_time_in_order_with_trainings_computing_and_waiting():
    text = timing_text(ENTRY)

    assert text == "psi 3.7 s, training 16.8 s (computing 6.3 s, waiting 10.5 s)"


def test_a_missing_party_reads_as_its_reason():
    entry = {"party": "arbiter", "role": "C", "available": False, "reason": "not available: no answer in 5s"}

    assert timing_text(entry) == "not available: no answer in 5s"


def test_the_report_adds_a_by_party_table_only_when_there_are_party_timings():
    plain = timings_section({"timings": {"alignment": 3.2}})
    by_party = timings_section({"timings": {"alignment": 3.2}, "party_timings": [ENTRY]})

    assert "By party" not in plain
    assert "By party" in by_party and "party-a (A)" in by_party and "computing 6.3 s" in by_party
