"""Party B drives a job through its stages: one table of steps, and the one place where an error stops a job.

Each step moves the job to its stage (through the lifecycle) and runs. A step
that does not apply to a job (``when``) is skipped: a coalition training reuses
its job's alignment instead of running a PSI, and has no contributions and no
ledger entry of its own. A resume names the stage to start again at.

The feature parties and the arbiter run no pipeline: their stages run when B
calls them (:mod:`~vfl.service.stages.accept`, then the protocol's messages).

Like h11's connection, which moves to ERROR on any exception in one place,
:func:`drive` is the only ``except`` that fails a job: a stage raises, and the
job fails here with the error's name and message, which the peers are told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vfl.errors import VFLError
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.spec import JobSpec
from vfl.service.stages import align, binning, classes, contributions, evaluate, ledger, resume, train

log = logging.getLogger("vfl.service")


def _spec(ctx: JobContext) -> JobSpec:
    return JobSpec.model_validate(ctx.record.job_spec)


def _reuses_alignment(ctx: JobContext) -> bool:
    return _spec(ctx).reuse_alignment is not None


def _measures_contributions(ctx: JobContext) -> bool:
    return _spec(ctx).contribution_settings is not None and ctx.record.coalition_of is None


def _keeps_a_ledger_entry(ctx: JobContext) -> bool:
    return ctx.record.coalition_of is None


@dataclass(frozen=True)
class Step:
    """One step of B's pipeline: the stage it moves the job to (None: it keeps the stage) and what it runs."""

    stage: Stage | None
    run: Callable[[JobContext], Awaitable[None]]
    when: Callable[[JobContext], bool] = lambda ctx: True


LABEL_PARTY: tuple[Step, ...] = (
    Step(Stage.PSI, align.run, when=lambda ctx: not _reuses_alignment(ctx)),
    Step(None, align.reuse, when=_reuses_alignment),  # a coalition training: its job's rows, no PSI
    Step(Stage.BINNING, binning.run, when=binning.is_scorecard),  # a scorecard: bins, selection, coded widths
    Step(Stage.TRAINING, train.run),
    Step(None, classes.run, when=classes.is_multiclass_job),  # multi-class: every other class, one-vs-rest
    Step(Stage.EVALUATING, evaluate.run),
    Step(Stage.CONTRIBUTIONS, contributions.run, when=_measures_contributions),
    Step(Stage.LEDGER, ledger.run, when=_keeps_a_ledger_entry),
)


def steps_from(steps: tuple[Step, ...], start_at: Stage | None) -> tuple[Step, ...]:
    """The steps from the one that moves the job to ``start_at`` (all of them for None)."""
    if start_at is None:
        return steps
    first = next(n for n, step in enumerate(steps) if step.stage is start_at)
    return steps[first:]


def describe(exc: BaseException) -> str:
    """The reason a job failed, as its record, its log line and its peers read it."""
    if isinstance(exc, VFLError):
        return f"{type(exc).__name__}: {exc}"
    return f"internal error: {exc!r}"


async def drive(ctx: JobContext, *, resume_reason: str | None = None,
                steps: tuple[Step, ...] = LABEL_PARTY) -> None:
    """Run the job's steps to the end (after a resume, from the stage it restarts at), then finish it."""
    job = ctx.job
    if job.started is None:
        job.started = time.perf_counter()
    try:
        start_at = None if resume_reason is None else await resume.restart(ctx, resume_reason)
        for step in steps_from(steps, start_at):
            if not step.when(ctx):
                continue
            if step.stage is not None:
                ctx.advance(step.stage)
            await step.run(ctx)
            if ctx.record.finished:
                return  # stopped meanwhile (cancelled, or failed at a peer): whoever stopped it said why
        await evaluate.finish(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - like h11: any error stops the job, here and only here
        if not isinstance(exc, VFLError):
            log.exception("job %s crashed", ctx.record.job_id)
        await ctx.fail(describe(exc))
    finally:
        job.coordinating = False
        if job.driver is asyncio.current_task():
            job.driver = None


__all__ = ["LABEL_PARTY", "Step", "describe", "drive", "steps_from"]
