"""A job's life at one service: every stage, the state each shows, and which stage may follow which.

Rule 1 (after h11's ``_state.py``): everything that moves a job from one stage to
another is decided here. :func:`transition` is the one writer's check: it takes
the job's current state and stage and the stage asked for, and answers the new
(state, stage) or raises :class:`~vfl.errors.JobError` naming both. Rule 2: this
file does not know which party it runs at; the table holds the moves of all
three (a feature party, the label party B and the arbiter C).

The REST view shows both fields: ``state`` is what orchestration waits on
(pending, aligning, training, succeeded, failed, cancelled, damaged), ``stage``
says where in the job the party is. Most stages show one state. Four keep or
take one of several:

* ``interrupted`` and ``resuming`` keep the job's state (aligning or training),
  or take the one given (a failed job resumes to aligning or training);
* ``stopped`` is ``failed`` or ``cancelled``: the outcome is given;
* ``deleting`` and ``deleted`` keep the final state the job had.

Staying in a stage is not a move: a feature party's new PSI session after a
resume stays at ``psi``, a restored checkpoint keeps ``training``, a second
restart keeps ``interrupted``. A cancelled job never moves again, except to
``deleting``; a damaged record never moves at all (its file is the only
evidence of what the job was).

The diagram in ``docs/lifecycle.md`` is drawn from :data:`LIFECYCLE`
by :func:`mermaid`, and ``tests/service/test_lifecycle.py`` checks every pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vfl.errors import JobError


class JobState(StrEnum):
    PENDING = "pending"
    ALIGNING = "aligning"
    TRAINING = "training"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DAMAGED = "damaged"  # the job's record could not be read back; like the other final states it never runs again


#: States a job never leaves by running: only a resume (failed) or a deletion moves it on.
FINAL: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DAMAGED})


class Stage(StrEnum):
    REGISTERED = "registered"        # the job exists here; nothing has run yet
    PSI = "psi"                      # private set intersection with party B (or, at B, with each feature party)
    ALIGNED = "aligned"              # a feature party holds its aligned rows and waits for B's start
    BINNING = "binning"              # a scorecard job: every party bins its characteristics (federated counts)
    TRAINING = "training"            # the encrypted protocol runs
    INTERRUPTED = "interrupted"      # this service restarted mid-job: fenced, waiting for B to resume it
    RESUMING = "resuming"            # party B asks every party for its checkpoints and restarts the job
    EVALUATING = "evaluating"        # party B: metrics, the bank-only baseline, the report
    CONTRIBUTIONS = "contributions"  # party B: coalition trainings for the Shapley values
    LEDGER = "ledger"                # party B: the job's ledger entry, signed by every party
    DONE = "done"                    # succeeded
    STOPPED = "stopped"              # failed or cancelled
    DELETING = "deleting"            # party B: deleted at some parties, not yet at all of them
    DELETED = "deleted"              # a feature party or the arbiter: party B deleted the job; its record stays
    DAMAGED = "damaged"              # the record could not be read back


@dataclass(frozen=True)
class Rule:
    """What a stage shows and what may follow it."""

    states: frozenset[JobState]
    next: frozenset[Stage]


def _rule(states: set[JobState], following: set[Stage]) -> Rule:
    return Rule(frozenset(states), frozenset(following))


S, T = JobState, Stage
_RUNNING = {S.ALIGNING, S.TRAINING}

#: stage → (the states it may show, the stages that may follow it). Derived from the moves the parties make;
#: every move a service makes goes through :func:`transition`.
LIFECYCLE: dict[Stage, Rule] = {
    # B registers the job with each feature party (which starts its PSI at once) and the arbiter (which waits).
    T.REGISTERED: _rule({S.PENDING}, {T.PSI, T.ALIGNED, T.BINNING, T.TRAINING, T.RESUMING, T.STOPPED}),
    # A new PSI session after a resume starts again at "psi" (a feature party's psi → psi).
    T.PSI: _rule({S.ALIGNING}, {T.ALIGNED, T.BINNING, T.TRAINING, T.INTERRUPTED, T.RESUMING, T.STOPPED}),
    T.ALIGNED: _rule({S.ALIGNING}, {T.BINNING, T.TRAINING, T.STOPPED}),
    # A scorecard job, between the alignment and training: party B bins its own characteristics and asks each
    # feature party for the encrypted event counts of its bins; the feature parties wait here for B's start.
    T.BINNING: _rule({S.ALIGNING}, {T.TRAINING, T.INTERRUPTED, T.RESUMING, T.STOPPED}),
    T.TRAINING: _rule({S.TRAINING}, {T.EVALUATING, T.DONE, T.INTERRUPTED, T.RESUMING, T.STOPPED}),
    # A restarted service fences the job, then B resumes it: B itself, the others on its word (the arbiter goes
    # back to "registered" when the PSI resumes, since it takes no part in it).
    T.INTERRUPTED: _rule(_RUNNING, {T.RESUMING, T.PSI, T.REGISTERED, T.TRAINING, T.STOPPED}),
    T.RESUMING: _rule(_RUNNING, {T.PSI, T.TRAINING, T.INTERRUPTED, T.STOPPED}),
    T.EVALUATING: _rule({S.TRAINING}, {T.CONTRIBUTIONS, T.LEDGER, T.DONE, T.INTERRUPTED, T.RESUMING, T.STOPPED}),
    # B restarting during contributions or the ledger keeps the model: the job succeeds, what followed is lost.
    T.CONTRIBUTIONS: _rule({S.TRAINING}, {T.LEDGER, T.DONE, T.STOPPED}),
    T.LEDGER: _rule({S.TRAINING}, {T.DONE, T.STOPPED}),
    T.DONE: _rule({S.SUCCEEDED}, {T.DELETING, T.DELETED}),
    # A failed job resumes (B) or is restored on B's word (A: a new PSI session or a checkpoint; C likewise).
    T.STOPPED: _rule({S.FAILED, S.CANCELLED}, {T.RESUMING, T.PSI, T.REGISTERED, T.TRAINING, T.DELETING, T.DELETED}),
    T.DELETING: _rule({S.SUCCEEDED, S.FAILED, S.CANCELLED}, set()),
    # B's delete is a request: the party keeps the job's record and audit log, and its data files or not, by
    # its own [retention] policy.
    T.DELETED: _rule({S.SUCCEEDED, S.FAILED, S.CANCELLED}, set()),
    T.DAMAGED: _rule({S.DAMAGED}, set()),
}


def transition(state: JobState | str, stage: Stage | str, to: Stage, *, job_id: str = "?",
               outcome: JobState | None = None) -> tuple[JobState, Stage]:
    """The (state, stage) a job at ``state``/``stage`` has after moving to ``to``; JobError if it may not.

    ``outcome`` is the state to show where ``to`` allows several (stopped: failed or cancelled;
    resuming: aligning or training). Without it the job keeps its state when ``to`` allows it, and
    takes the one state ``to`` shows otherwise.
    """
    state, stage = JobState(state), Stage(stage)
    if to is stage and outcome in (None, state):
        return state, stage  # staying put is no move
    if state is JobState.CANCELLED and to not in (Stage.DELETING, Stage.DELETED):
        raise JobError(f"job {job_id} is cancelled; it cannot go from {stage} to {to}")
    if to not in LIFECYCLE[stage].next:
        raise JobError(f"job {job_id} cannot go from {stage} to {to}")
    allowed = LIFECYCLE[to].states
    if outcome is not None:
        if outcome not in allowed:
            raise JobError(f"job {job_id}: stage {to} shows {' or '.join(sorted(allowed))}, not {outcome}")
        return outcome, to
    if state in allowed:
        return state, to
    if len(allowed) == 1:
        return next(iter(allowed)), to
    raise JobError(f"job {job_id} going from {stage} ({state}) to {to} must say which of "
                   f"{', '.join(sorted(allowed))} it shows")


def state_phrase(state: JobState | str, *, already: bool = False) -> str:
    """A job state as the verb phrase that follows "job X": "has (already) succeeded", "is damaged", ..."""
    adverb = "already " if already else ""
    if state in (JobState.SUCCEEDED, JobState.FAILED):
        return f"has {adverb}{state}"
    if state == JobState.DAMAGED:
        return "is damaged (its record cannot be read back)"
    return f"is {adverb}{state}"


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram (the docs' figure, drawn from the table)."""
    lines = ["stateDiagram-v2", "    [*] --> registered"]
    for stage, rule in LIFECYCLE.items():
        shows = " | ".join(sorted(rule.states))
        lines.append(f"    {stage}: {stage} ({shows})")
        lines += [f"    {stage} --> {following}" for following in sorted(rule.next) if following is not stage]
    lines += ["    done --> [*]", "    stopped --> [*]"]
    return "\n".join(lines) + "\n"


__all__ = ["FINAL", "LIFECYCLE", "JobState", "Rule", "Stage", "mermaid", "state_phrase", "transition"]
