"""A feature party and the arbiter: accept a job party B registers, start training on its word, close it.

Each checks a registration against its own config: the parties it names must be
its configured peers, the key sizes at least its minimum; a feature party also
checks its dataset, states its feature count (the length of its gradient, fixed
from now on) and refuses a PSI set size above its caps. Then a feature party
starts its side of the alignment at once. :func:`start_training` builds the
training role once the rows are aligned; :func:`finished` drops the
checkpoints once B has the model; :func:`forget` undoes a registration B could
not complete.
"""

from __future__ import annotations

import asyncio
import logging

from vfl.data.ids import profile_ids
from vfl.data.leakage import label_like_columns
from vfl.errors import BudgetSpent, ConfigError, JobError, PeerNotAllowed, ProtocolError, VFLError
from vfl.protocol.roster import LETTERS
from vfl.service.context import JobContext, ServiceContext
from vfl.service.lifecycle import Stage
from vfl.service.psi_roles import (
    check_large_side_accepted,
    check_protocol_accepted,
    check_registered_size,
    start_key_holder,
    take_joint_alignment,
)
from vfl.service.record import JobRecord
from vfl.service.serving import stability
from vfl.service.spec import Registration, TrainingStart
from vfl.service.training_roles import arbiter_role, check_key_sizes, party_role, training_started


async def register(service: ServiceContext, registration: Registration, caller: str) -> JobRecord:
    """Accept the job party B registers here, or refuse it with the reason."""
    config = service.config
    if service.kind == "label":
        raise ConfigError("party B registers jobs with its peers; it is not registered by them")
    roster, peers = registration.job_roster()  # protocol ids by role; each one's party id
    if config.kind_of(caller) != "label" or peers.get(roster.label) != caller:
        raise PeerNotAllowed(f"only the job's party B may register it; {caller!r} is not")
    me = next((pid for pid, peer in peers.items() if peer == service.me), None)
    if me is None or roster.kind_of(me) != service.kind:
        named = roster.features if service.kind == "feature" else [roster.arbiter]
        named_ids = ", ".join(repr(peers.get(p)) for p in named)
        raise ConfigError(f"the job names this service as {named_ids}, not {service.me!r}")
    # A feature party deals with B and C only (not with the other feature parties); the arbiter with every party.
    dealt_with = [me, roster.label, roster.arbiter] if service.kind == "feature" else list(roster.all)
    for pid in dealt_with:
        kind, peer_id = roster.kind_of(pid), peers[pid]
        if pid != me and config.kind_of(peer_id) != kind:
            raise ConfigError(f"party {LETTERS[kind]} of the job, {peer_id!r}, is not a configured peer here")
    check_key_sizes(config, registration.training, registration.psi.key_bits)
    existing = service.jobs.get(registration.job_id)
    if existing is not None:
        if existing.record.registration == registration.model_dump(mode="json"):
            return existing.record  # a retried registration: same answer, no double work
        raise JobError(f"a job with id {registration.job_id!r} already exists here")
    lengths = dict(registration.gradient_lengths)
    expected = {me, roster.label} if service.kind == "feature" else set(roster.trainers)
    reused: list[str] | None = None
    id_profile = None
    if service.kind == "feature":
        if not registration.dataset:
            raise ConfigError("party A's registration must name its dataset")
        if registration.scorecard is not None and registration.prepare is not None:
            raise ConfigError("a scorecard job bins this party's raw columns (a missing value is a bin of its own): "
                              "its registration must not carry \"prepare\"")
        # Refuse now if unusable; prepared as the job says (the dataset's keys, the job's "prepare" entry).
        table = await asyncio.to_thread(service.data.table, registration.dataset, None, registration.prepare)
        # A states its own feature count; the job's copy at the arbiter fixes it from now on.
        n_a = table.features.shape[1]
        if lengths.get(me, n_a) != n_a:
            raise ConfigError(f"the job spec expects {lengths[me]} features at party A; its dataset "
                              f"{registration.dataset!r} has {n_a}")
        lengths[me] = n_a
        id_profile = None if registration.reuse_alignment is not None else profile_ids(table.ids)
        if registration.reuse_alignment is not None:
            reused = reusable_alignment(service, registration, caller)
        elif registration.psi_ids is not None:  # refuse now, not after A has made a key
            check_protocol_accepted(config.psi, registration.psi.protocol)
            check_large_side_accepted(config.psi, registration.psi)
            check_registered_size(config.limits, registration.psi_ids, len(table))
        if registration.scorecard is not None:
            # A scorecard's points are bin-level (no direction of the raw features): its budget is binning runs.
            ledger = service.releases.ledger(caller, registration.dataset)
            if ledger["binning_runs"] >= config.scorecard.max_binning_runs:
                raise BudgetSpent(
                    f"{caller} has had {ledger['binning_runs']} binning runs of dataset {registration.dataset!r} "
                    f"answered over all its jobs, the most this party allows ([scorecard] max_binning_runs = "
                    f"{config.scorecard.max_binning_runs}): it takes part in no more scorecard jobs for it")
        else:
            # A model this partner could never score with is refused now, not after its training.
            service.releases.room_for_a_model(caller, registration.dataset, n_a, config.scoring.score_directions,
                                              directions=registration.classes or 1, columns=table.feature_names)
    if set(lengths) != expected:
        raise ConfigError(f"the registration must fix the gradient lengths of parties {sorted(expected)}, "
                          f"got {sorted(lengths)}")
    record = JobRecord(
        job_id=registration.job_id,
        role=LETTERS[service.kind],
        registration=registration.model_dump(mode="json"),
        dataset=registration.dataset,
        peers={pid: peers[pid] for pid in dealt_with},
        roster=None if registration.roster is None else roster.to_dict(),
        max_epochs=registration.training.epochs,
        gradient_lengths=lengths,
        id_profile=id_profile,
    )
    ctx = service.open_job(record)
    ctx.event("registered by party B (%s)%s", caller,
              f"; dataset {registration.dataset!r}, {lengths[me]} features" if service.kind == "feature" else "")
    if service.kind == "feature":
        suspects = label_like_columns(table.preparation.inputs if table.preparation else table.feature_names)
        if suspects:  # seen here only: party B cannot see this party's columns
            warning = (f"dataset {registration.dataset!r} has column(s) {suspects} named like a label; if one is "
                       "party B's label or a copy of it, the model will score perfectly in training and be useless "
                       "(label leakage): drop it from the dataset")
            ctx.update(warnings=[warning])
            ctx.event("data: %s", warning, level=logging.WARNING)
    if reused is not None:
        # No PSI: the rows of an earlier job with the same party B and dataset, which this party already knows.
        ctx.store.save_alignment(record.job_id, reused)
        ctx.advance(Stage.ALIGNED, n_rows=len(reused),
                    alignment={"reused_from": registration.reuse_alignment, "intersection": len(reused)})
        ctx.job.aligned.set()
        ctx.event("aligned: the %d rows of job %s, reused (no PSI)", len(reused), registration.reuse_alignment)
    elif service.kind == "feature":
        ctx.advance(Stage.PSI)
        await start_key_holder(ctx)
    return record


def reusable_alignment(service: ServiceContext, registration: Registration, caller: str) -> list[str]:
    """A feature party: the aligned IDs of the earlier job a registration reuses, if this party may reuse them.

    Only a job this party took part in, with the same party B (the caller) and the
    same dataset, that succeeded: then the IDs are rows this party already shares
    with B (for several feature parties, the joint rows it trained on), and the new
    job learns it nothing new about B's customers.
    """
    parent_id = registration.reuse_alignment
    consent = service.config.scoring.reuse_alignment
    if consent == "never" or (consent == "contributions" and registration.measures != parent_id):
        raise PeerNotAllowed(f"the registration reuses the alignment of job {parent_id!r}; this party's "
                             f"[scoring] reuse_alignment = {consent!r} "
                             + ("allows no reuse" if consent == "never" else
                                "allows it only for the coalition trainings that measure that job's contributions"))
    parent_job = service.jobs.get(parent_id or "")
    parent = None if parent_job is None else parent_job.record
    if parent is None or parent.kind != "feature":
        raise ConfigError(f"the registration reuses the alignment of job {parent_id!r}, which this party did not "
                          "take part in")
    if parent.party_id("label") != caller:
        raise PeerNotAllowed(f"job {parent_id} was registered by another party B than {caller!r}")
    if parent.dataset != registration.dataset:
        raise ConfigError(f"job {parent_id} aligned dataset {parent.dataset!r}, this job names "
                          f"{registration.dataset!r}: a reused alignment needs the same dataset")
    if parent.state != "succeeded":
        raise JobError(f"job {parent_id} {parent.state_phrase()}; only a succeeded job's alignment is reused")
    ids = service.store.load_alignment(parent.job_id)
    if not ids:
        raise JobError(f"job {parent_id} has no aligned IDs here to reuse")
    return ids


async def forget(service: ServiceContext, job_id: str, caller: str) -> None:
    """Undo a registration that B could not complete (no trace is left)."""
    service.job(job_id).record.require_caller(caller, "label")
    await service.forget(job_id)


async def start_training(ctx: JobContext, start: TrainingStart, caller: str) -> JobRecord:
    """Party B starts training: this party builds its role on the aligned rows (a retry changes nothing)."""
    record = ctx.record
    record.require_caller(caller, "label")
    if record.finished:
        raise JobError(f"job {record.job_id} {record.state_phrase(already=True)}")
    if ctx.job.runtime is None:
        raise JobError(f"job {record.job_id} is not running here")
    if "train" in ctx.job.runtime.roles:
        return record  # a retried start: already started
    try:
        await _start_role(ctx, start)
    except VFLError as exc:  # refused here: the job ends here too, not only at B
        await ctx.fail(f"{type(exc).__name__}: {exc}", notify=False)
        raise
    return record


async def _start_role(ctx: JobContext, start: TrainingStart) -> None:
    """This party's training role for the job, on the aligned rows; a feature party then asks C for the key."""
    if ctx.kind == "arbiter":
        if start.gradient_lengths is not None:
            _coded_lengths(ctx, start.gradient_lengths)
        role = await asyncio.to_thread(arbiter_role, ctx, start.n_rows)
        ctx.advance(Stage.TRAINING, n_rows=start.n_rows)
        ctx.checkpoint(role)
        training_started(ctx, start.n_rows)
        await ctx.runtime().add_role("train", role)
        return
    await _alignment_stored(ctx)
    if start.ids is not None:
        take_joint_alignment(ctx, start.ids, start.n_rows)
    aligned = await asyncio.to_thread(ctx.aligned_table)
    if len(aligned) != start.n_rows:
        raise ProtocolError(f"party B reports {start.n_rows} aligned rows, party A has {len(aligned)}")
    role = await asyncio.to_thread(party_role, ctx, aligned)
    ctx.advance(Stage.TRAINING, n_rows=start.n_rows)
    ctx.checkpoint(role)
    training_started(ctx, start.n_rows)
    await ctx.runtime().add_role("train", role, role.start())


def _coded_lengths(ctx: JobContext, lengths: dict[str, int]) -> None:
    """The arbiter, a scorecard job: B's training start fixes the coded widths in place of the registered ones.

    As at registration, these are B's word; each feature party vouches for its own width and B's in its
    key request, so a B that tells the arbiter other widths than a feature party holds is found out there.
    """
    record = ctx.record
    if (record.registration or {}).get("scorecard") is None:
        raise ProtocolError(f"job {record.job_id} is no scorecard job: its gradient lengths were fixed at registration")
    if set(lengths) != set(record.gradient_lengths or {}) or any(not 1 <= n <= 1_000_000 for n in lengths.values()):
        raise ProtocolError(f"party B's training start gives gradient lengths for {sorted(lengths)}; the job's "
                            f"parties are {sorted(record.gradient_lengths or {})}, each between 1 and 1,000,000")
    ctx.update(gradient_lengths=dict(lengths))


async def _alignment_stored(ctx: JobContext) -> None:
    """A feature party: wait until its side of the PSI has finished and the aligned IDs are stored.

    B learns the intersection when it sends this party its last PSI message, so B's
    "start training" can arrive while that message still waits in this party's queue.
    """
    record = ctx.record
    if ctx.store.load_alignment(record.job_id) is not None:
        return
    timeout = ctx.config.limits.request_timeout
    try:
        await asyncio.wait_for(ctx.job.aligned.wait(), timeout=timeout)
    except TimeoutError:
        raise JobError(f"job {record.job_id}: alignment has not finished at party A after {timeout:g}s "
                       "(limits.request_timeout)") from None


async def finished(ctx: JobContext, caller: str) -> None:
    """B has the final model: checkpoints (the arbiter's hold its private key) can go, and a scorecard job's
    evaluation is over (whatever B asks from now on is serving, counted in this party's CSI)."""
    ctx.record.require_caller(caller, "label")
    ctx.store.drop_checkpoints(ctx.record.job_id)
    stability.close_evaluation(ctx)


__all__ = ["finished", "forget", "register", "reusable_alignment", "start_training"]
