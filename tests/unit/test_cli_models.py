"""`vfl models delete` on a fake party B: what it prints for a multi-class job, and its refusals in CLI words."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from vfl.cli.models import _delete
from vfl.errors import PeerRefused


class FakeBank:
    """Party B as the CLI sees it: DELETE /v1/jobs/{id} and GET /v1/models."""

    def __init__(self, answer: dict[str, Any] | None = None, refusal: PeerRefused | None = None,
                 served: dict[str, Any] | None = None) -> None:
        self.answer, self.refusal, self.served = answer, refusal, served or {}

    def delete(self, job_id: str) -> dict[str, Any]:
        if self.refusal is not None:
            raise self.refusal
        return self.answer or {}

    def models(self) -> dict[str, Any]:
        return {"models": [], "served": self.served}


def delete(bank: FakeBank, job_id: str) -> int:
    return _delete(argparse.Namespace(job_id=job_id, json=False), bank)  # type: ignore[arg-type]


def test_a_multiclass_job_is_deleted_with_its_class_trainings_and_one_left_behind_is_named(capsys):
    bank = FakeBank(answer={"job_id": "cars", "status": "deleted", "deleted": ["party-a", "arbiter", "party-b"],
                            "pending": {}, "class_trainings": [
                                {"job_id": "cars.k1", "status": "deleted", "deleted": ["party-a"]},
                                {"job_id": "cars.k2", "status": "partial", "pending": {"arbiter": "down"},
                                 "detail": "not at arbiter"}]})

    code = delete(bank, "cars")

    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == ["deleted job cars at party-a, arbiter, party-b", "  class training cars.k1: deleted",
                                "  class training cars.k2: partial (not at arbiter)"]
    assert "vfl models delete cars.k2 again" in err


def test_a_served_version_is_refused_with_the_fix_in_vfl_commands():
    bank = FakeBank(refusal=PeerRefused("DELETE /v1/jobs/j1: ... (POST /v1/models/risk/promote) ...", 409,
                                        "ModelServed"), served={"risk": {"job_id": "j1", "history": []}})

    with pytest.raises(PeerRefused) as refused:
        delete(bank, "j1")

    assert refused.value.status == 409 and refused.value.error == "ModelServed"
    assert "(vfl models promote risk JOB_ID) or roll back (vfl models rollback risk)" in str(refused.value)


def test_a_model_name_is_not_a_job_and_the_refusal_says_which_job_it_serves():
    bank = FakeBank(refusal=PeerRefused("DELETE /v1/jobs/risk: no job 'risk'", 404, "UnknownJobError"),
                    served={"risk": {"job_id": "j1", "history": []}})

    with pytest.raises(PeerRefused) as refused:
        delete(bank, "risk")

    assert "'risk' is a model name, not a job" in str(refused.value) and "serves job j1" in str(refused.value)


def test_an_unknown_job_that_is_no_name_either_keeps_the_services_refusal():
    refusal = PeerRefused("DELETE /v1/jobs/nope: no job 'nope'", 404, "UnknownJobError")

    with pytest.raises(PeerRefused) as refused:
        delete(FakeBank(refusal=refusal), "nope")

    assert refused.value is refusal
