"""Party B: what each feature party adds to a job, measured through the services themselves.

A job submitted with ``"contributions": true`` (or ``{"permutations": m, "seed": s}``)
is measured after its own training and evaluation, before it is announced as
succeeded (its stage meanwhile is ``contributions``). For every coalition of
feature parties that the Shapley values need (:func:`vfl.incentives.shapley.plan`:
all 2^k − 2 proper non-empty ones for k ≤ 4), party B submits a *coalition
training*: an ordinary job, ``<job id>.c<n>``, with that subset of the feature
parties, the same dataset at B, the same arbiter, training config and key
sizes, and ``reuse_alignment`` set to the measured job, so that every party
trains on the measured job's aligned rows (the full joint intersection) with no
new PSI. Each feature party checks that it took part in that job, with the same
B and dataset, before it accepts (:func:`vfl.service.stages.accept.reusable_alignment`).
The coalition trainings run one after the other, through the same registration,
protocol, checkpoints, resumes and evaluation as any job, and each is listed as
a job at every party that takes part in it.

v(N) is the measured job's metric, v(∅) its bank-only baseline (B alone needs no
federation); each coalition's value is its job's metric on the same validation
rows. The result goes into the job's record (``contributions``) and report.
A coalition training that fails leaves ``contributions`` with the error; the
measured job still succeeds with its model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from vfl.errors import VFLError
from vfl.incentives import shapley
from vfl.service.context import JobContext
from vfl.service.spec import ArbiterRef, JobSpec, child_job_id

log = logging.getLogger("vfl.service")

#: How often party B looks at a running coalition training.
POLL_SECONDS = 0.1


def coalition_job_id(job_id: str, n: int) -> str:
    """The id of the measured job's n-th coalition training."""
    return child_job_id(job_id, "c", n)


def _prepare_of(spec: JobSpec, parties: list[str]) -> dict[str, Any] | None:
    """The measured job's "prepare" entries of a coalition's parties: each trains as it did in the job."""
    entries = {party: entry for party, entry in (spec.prepare or {}).items() if party in parties}
    return entries or None


async def run(ctx: JobContext) -> None:
    """Train the coalitions, compute Shapley values and leave-one-out, and keep them in the job's record.

    A coalition training that fails leaves the error in ``contributions``: the job still succeeds with its model.
    """
    started = time.perf_counter()
    try:
        result = await _measure(ctx, JobSpec.model_validate(ctx.record.job_spec))
    except asyncio.CancelledError:
        raise
    except VFLError as exc:
        log.warning("job %s: contributions not computed: %s", ctx.record.job_id, exc)
        result = {"error": str(exc)}
    ctx.record.timings["contributions"] = round(time.perf_counter() - started, 3)
    ctx.update(contributions=result, activity=None)


async def _measure(ctx: JobContext, spec: JobSpec) -> dict[str, Any]:
    record = ctx.record
    settings = spec.contribution_settings
    refs = list(spec.feature_parties or [])
    names = [ref.peer for ref in refs]
    sources = [f"{ref.peer}:{ref.dataset}" for ref in refs]
    model = spec.training.model
    plan = shapley.plan(len(refs), permutations=settings.permutations, seed=settings.seed)
    values: dict[frozenset[int], float] = {}
    values[plan.full], split = shapley.value_of(record.metrics or {}, model)
    values[frozenset()], _ = shapley.value_of((record.baseline or {}).get("metrics") or {}, model)
    seconds = {plan.full: float(record.timings.get("training", 0.0))}
    jobs: dict[frozenset[int], str] = {plan.full: record.job_id}
    arbiter = ArbiterRef(peer=record.party_id("arbiter"))
    todo = plan.to_train()
    ctx.event("contributions: %d coalition trainings (%s) on the job's %s aligned rows", len(todo), plan.method,
              record.n_rows)
    for n, coalition in enumerate(todo, start=1):
        members = sorted(coalition)
        child_id = coalition_job_id(record.job_id, n)
        child_spec = JobSpec(job_id=child_id, feature_parties=[refs[i] for i in members], party_b=spec.party_b,
                             arbiter=arbiter, training=spec.training, psi=spec.psi, reuse_alignment=record.job_id,
                             prepare=_prepare_of(spec, [refs[i].peer for i in members] + [ctx.me]))
        began = time.perf_counter()
        who = "B + " + " + ".join(names[i] for i in members)
        doing = f"contributions: coalition {n} of {len(todo)} ({who})"
        ctx.update(activity=doing)
        child = await ctx.submit_child(child_spec)
        try:
            while not child.finished:
                # Said at once in the job's status, so a long measurement is never a frozen bar.
                if child.max_epochs:
                    now = f"{doing}, epoch {child.epoch}/{child.max_epochs}"
                    if record.activity != now:
                        record.activity = now
                await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:  # the measured job was cancelled or failed: so is its coalition training
            ctx.spawn(ctx.cancel_child(child_id, f"job {record.job_id}, whose contributions it measures, stopped"))
            raise
        if child.state != "succeeded":
            raise VFLError(f"coalition training {child_id} ({who}) {child.state_phrase()}: {child.error}")
        values[coalition], _ = shapley.value_of(child.metrics or {}, model)
        seconds[coalition] = time.perf_counter() - began
        jobs[coalition] = child_id
        ctx.event("contributions: coalition %d/%d (%s): %s %.4f", n, len(todo), who, shapley.metric_name(model),
                  values[coalition])
    rows = ((record.metrics or {}).get(split) or {}).get("rows")
    result = shapley.table(plan, values, model=model, names=names, sources=sources, split=split, rows=rows,
                           seconds=seconds)
    by_members = {frozenset(names[i] for i in c): job for c, job in jobs.items()}
    for item in result["coalitions"]:
        item["job_id"] = by_members.get(frozenset(item["parties"]))
    return result


__all__ = ["POLL_SECONDS", "coalition_job_id", "run"]
