"""Party B: a multi-class job's other classes, each trained one-vs-rest through the services themselves.

A label with 3 or more classes (:mod:`vfl.ml.multiclass`) trains one binary model
per class. The job itself trains its first class against the rest; then, before it
is evaluated, party B submits a *class training* for every other class: an ordinary
binary job, ``<job id>.k<n>``, with the same feature parties, dataset, arbiter,
training config and key sizes, ``reuse_alignment`` set to this job (no new PSI:
every party trains on this job's aligned rows) and ``one_vs_rest_class`` set to
the class (party B's labels become 1 for that class, 0 for the rest; nothing else
changes, and the feature parties are not told which class it is). They run one
after the other, through the same registration, protocol, checkpoints and
evaluation as any job, each listed as a job at every party that takes part. A
class training that fails fails the job: a multi-class model needs every class.
After a restart of party B the job comes back to this step, and a class training
submitted before is waited for (it resumes by itself), not submitted again.
"""

from __future__ import annotations

import asyncio
import time

from vfl.errors import VFLError
from vfl.ml.multiclass import class_name
from vfl.service.context import JobContext
from vfl.service.spec import ArbiterRef, JobSpec, child_job_id

#: How often party B looks at a running class training.
POLL_SECONDS = 0.1


def class_job_id(job_id: str, n: int) -> str:
    """The id of the job's n-th class training."""
    return child_job_id(job_id, "k", n)


def is_multiclass_job(ctx: JobContext) -> bool:
    return ctx.record.multiclass is not None


async def run(ctx: JobContext) -> None:
    """Train every class but the first (which this job trained) against the rest, one after the other."""
    record = ctx.record
    info = dict(record.multiclass or {})
    spec = JobSpec.model_validate(record.job_spec)
    classes = list(info["classes"])
    jobs = [record.job_id]
    arbiter = ArbiterRef(peer=record.party_id("arbiter"))
    ctx.event("multi-class: class %s trained; %d class trainings to go (one-vs-rest, on the job's %s aligned rows)",
              class_name(classes[0]), len(classes) - 1, record.n_rows)
    for n, value in enumerate(classes[1:], start=1):
        child_id = class_job_id(record.job_id, n)
        child_spec = JobSpec(job_id=child_id, feature_parties=list(spec.feature_parties or []),
                             party_b=spec.party_b, arbiter=arbiter, training=spec.training, psi=spec.psi,
                             reuse_alignment=record.job_id, one_vs_rest_class=value, prepare=spec.prepare)
        began = time.perf_counter()
        # After a restart of party B the job trains again from its checkpoint and comes back here: a class
        # training submitted before is waited for (it resumes by itself), not submitted twice.
        earlier = ctx.child(child_id)
        child = earlier if earlier is not None else await ctx.submit_child(child_spec)
        try:
            while not child.finished:
                await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:  # the job was cancelled or failed: so is its class training
            ctx.spawn(ctx.cancel_child(child_id, f"job {record.job_id}, whose class {class_name(value)} it trains, "
                                                 "stopped"))
            raise
        if child.state != "succeeded":
            raise VFLError(f"class training {child_id} (class {class_name(value)} against the rest) "
                           f"{child.state_phrase()}: {child.error}")
        jobs.append(child_id)
        ctx.event("multi-class: class %s trained (%d/%d) in %.1fs", class_name(value), n + 1, len(classes),
                  time.perf_counter() - began)
    ctx.update(multiclass={**info, "jobs": jobs})


__all__ = ["POLL_SECONDS", "class_job_id", "is_multiclass_job", "run"]
