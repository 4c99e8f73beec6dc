"""Party B's class trainings of a multi-class job (vfl.service.stages.classes), with a fake job context."""

from __future__ import annotations

import asyncio
from typing import Any

from vfl.service.record import JobRecord
from vfl.service.spec import JobSpec
from vfl.service.stages import classes

SPEC = JobSpec.parse({"job_id": "mc", "party_a": {"peer": "shop", "dataset": "behaviour"},
                      "party_b": {"dataset": "credit"}})


def _record(job_id: str, **fields: Any) -> JobRecord:
    return JobRecord(job_id=job_id, role="B", job_spec=SPEC.stored() | {"job_id": job_id}, dataset="credit",
                     peers={"A": "shop", "B": "bank", "C": "arbiter"}, **fields)


class FakeJob:
    """The job context the stage sees: children are recorded, and succeed at once."""

    def __init__(self, earlier: dict[str, JobRecord] | None = None) -> None:
        self.record = _record("mc", multiclass={"strategy": "ovr", "classes": [0.0, 1.0, 2.0], "jobs": []})
        self.submitted: list[JobSpec] = []
        self.earlier = dict(earlier or {})

    def event(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.record, key, value)

    def child(self, job_id: str) -> JobRecord | None:
        return self.earlier.get(job_id)

    async def submit_child(self, spec: JobSpec) -> JobRecord:
        self.submitted.append(spec)
        return _record(spec.job_id, state="succeeded", stage="done")


def test_each_other_class_is_submitted_once_on_the_jobs_alignment_with_its_class():
    ctx = FakeJob()

    asyncio.run(classes.run(ctx))

    assert [(s.job_id, s.one_vs_rest_class, s.reuse_alignment) for s in ctx.submitted] == [
        ("mc.k1", 1.0, "mc"), ("mc.k2", 2.0, "mc")]
    assert ctx.record.multiclass["jobs"] == ["mc", "mc.k1", "mc.k2"]


def test_after_a_restart_a_class_training_submitted_before_is_waited_for_not_submitted_again():
    ctx = FakeJob(earlier={"mc.k1": _record("mc.k1", state="succeeded", stage="done")})

    asyncio.run(classes.run(ctx))

    assert [s.job_id for s in ctx.submitted] == ["mc.k2"]
    assert ctx.record.multiclass["jobs"] == ["mc", "mc.k1", "mc.k2"]


def test_a_feature_party_refuses_a_multiclass_job_whose_k_directions_do_not_fit(tmp_path):
    import numpy as np
    import pytest

    from vfl.errors import LimitExceeded
    from vfl.service.releases import Releases
    from vfl.service.store import JobStore

    releases = Releases(JobStore(tmp_path))
    ledger = releases.ledger("bank", "behaviour")
    for n, direction in enumerate(np.eye(9)[:5]):  # five directions of a 9-feature dataset released already
        ledger["directions"][f"j{n}"] = direction.tolist()

    releases.room_for_a_model("bank", "behaviour", 9, None, directions=3)  # 5 + 3 = 8, the default budget
    with pytest.raises(LimitExceeded, match="multi-class job with 4 classes trains 4 models.*5 of the 8"):
        releases.room_for_a_model("bank", "behaviour", 9, None, directions=4)


def test_the_class_trainings_prepare_every_party_as_the_job_does():
    ctx = FakeJob()
    prepare = {"shop": {"impute": "median"}, "bank": {"categorical": {"city": "onehot"}}}
    ctx.record.job_spec = JobSpec.parse(SPEC.stored() | {"prepare": prepare}).stored() | {"job_id": "mc"}

    asyncio.run(classes.run(ctx))

    assert [{p: e.given for p, e in (s.prepare or {}).items()} for s in ctx.submitted] == [
        {"shop": {"impute": "median"}, "bank": {"categorical": {"city": "onehot"}}}] * 2
