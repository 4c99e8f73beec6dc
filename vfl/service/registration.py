"""Parties A and C: what party B asks of them to set a job up, start it and close it.

Each checks a registration against its own config: the parties it names must
be its configured peers, the key sizes at least its minimum; party A also
checks its dataset, states its feature count (the length of its gradient, fixed
from now on) and refuses a PSI set size above its caps. Then A starts its side
of the alignment at once. ``start_training`` builds the training role once the
rows are aligned; ``finished`` drops the checkpoints once B has the model.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from vfl.errors import ConfigError, JobError, PeerNotAllowed, ProtocolError, VFLError
from vfl.service import alignment
from vfl.service.logs import job_event
from vfl.service.runtime import JobRuntime
from vfl.service.spec import Registration, TrainingStart
from vfl.service.store import JobRecord

if TYPE_CHECKING:
    from vfl.service.node import Node, TrainingRole


async def register(node: Node, registration: Registration, caller: str) -> JobRecord:
    if node.party == "B":
        raise ConfigError("party B registers jobs with its peers; it is not registered by them")
    roster, peers = registration.job_roster()  # protocol ids by role; each one's party id
    if node.peer_role(caller) != "B" or peers.get(roster.label) != caller:
        raise PeerNotAllowed(f"only the job's party B may register it; {caller!r} is not")
    me_id = node.config.party.id
    me = next((pid for pid, peer in peers.items() if peer == me_id), None)
    kind = {"A": "feature", "C": "arbiter"}[node.party]
    if me is None or roster.kind_of(me) != kind:
        named = roster.features if node.party == "A" else [roster.arbiter]
        named_ids = ", ".join(repr(peers.get(p)) for p in named)
        raise ConfigError(f"the job names this service as {named_ids}, not {me_id!r}")
    # A feature party deals with B and C only (not with the other feature parties); the arbiter with every party.
    dealt_with = [me, roster.label, roster.arbiter] if node.party == "A" else list(roster.all)
    letters = {"feature": "A", "label": "B", "arbiter": "C"}
    for pid in dealt_with:
        role, peer_id = letters[roster.kind_of(pid)], peers[pid]
        if pid != me and (peer_id not in node.config.peers or node.config.peers[peer_id].role != role):
            raise ConfigError(f"party {role} of the job, {peer_id!r}, is not a configured peer here")
    node.check_key_sizes(registration.training, registration.psi.key_bits)
    existing = node.records.get(registration.job_id)
    if existing is not None:
        if existing.spec == registration.model_dump(mode="json"):
            return existing  # a retried registration: same answer, no double work
        raise JobError(f"a job with id {registration.job_id!r} already exists here")
    lengths = dict(registration.gradient_lengths)
    expected = {me, roster.label} if node.party == "A" else set(roster.trainers)
    if node.party == "A":
        if not registration.dataset:
            raise ConfigError("party A's registration must name its dataset")
        table = await asyncio.to_thread(node.table, registration.dataset)  # refuse now if unusable
        # A states its own feature count; the job's copy at the arbiter fixes it from now on.
        n_a = table.features.shape[1]
        if lengths.get(me, n_a) != n_a:
            raise ConfigError(
                f"the job spec expects {lengths[me]} features at party A; its dataset "
                f"{registration.dataset!r} has {n_a}"
            )
        lengths[me] = n_a
        if registration.reuse_alignment is not None:
            reused = reusable_alignment(node, registration, caller)
        elif registration.psi_ids is not None:  # refuse now, not after A has made a key
            alignment.check_registered_size(node, registration.psi_ids, len(table))
    if set(lengths) != expected:
        raise ConfigError(f"the registration must fix the gradient lengths of parties {sorted(expected)}, "
                          f"got {sorted(lengths)}")
    record = JobRecord(
        job_id=registration.job_id,
        role=node.party,
        spec=registration.model_dump(mode="json"),
        dataset=registration.dataset,
        peers={pid: peers[pid] for pid in dealt_with},
        roster=None if registration.roster is None else roster.to_dict(),
        max_epochs=registration.training.epochs,
        gradient_lengths=lengths,
    )
    node.store.create(record)
    node.records[record.job_id] = record
    runtime = node.runtime_for(record)
    job_event(record.job_id, "registered by party B (%s)%s", caller,
              f"; dataset {registration.dataset!r}, {lengths[me]} features" if node.party == "A" else "")
    if node.party == "A" and registration.reuse_alignment is not None:
        # No PSI: the rows of an earlier job with the same party B and dataset, which this party already knows.
        node.store.save_alignment(record.job_id, reused)
        node.save(record, state="aligning", stage="aligned", n_rows=len(reused),
                  alignment={"reused_from": registration.reuse_alignment, "intersection": len(reused)})
        node.psi_done.setdefault(record.job_id, asyncio.Event()).set()
        job_event(record.job_id, "aligned: the %d rows of job %s, reused (no PSI)", len(reused),
                  registration.reuse_alignment)
    elif node.party == "A":
        node.save(record, state="aligning", stage="psi")
        await alignment.serve_as_key_holder(node, record, runtime, registration.psi.key_bits)
    return record


def reusable_alignment(node: Node, registration: Registration, caller: str) -> list[str]:
    """Party A: the aligned IDs of the earlier job a registration reuses, if this party may reuse them.

    Only a job this party took part in, with the same party B (the caller) and the
    same dataset, that succeeded: then the IDs are rows this party already shares
    with B (for several feature parties, the joint rows it trained on), and the new
    job learns it nothing new about B's customers.
    """
    parent_id = registration.reuse_alignment
    parent = node.records.get(parent_id or "")
    if parent is None or parent.role != "A":
        raise ConfigError(f"the registration reuses the alignment of job {parent_id!r}, which this party did not "
                          "take part in")
    roster = node.roster(parent)
    if parent.peers.get(roster.label) != caller:
        raise PeerNotAllowed(f"job {parent_id} was registered by another party B than {caller!r}")
    if parent.dataset != registration.dataset:
        raise ConfigError(f"job {parent_id} aligned dataset {parent.dataset!r}, this job names "
                          f"{registration.dataset!r}: a reused alignment needs the same dataset")
    if parent.state != "succeeded":
        raise JobError(f"job {parent_id} {parent.state_phrase()}; only a succeeded job's alignment is reused")
    ids = node.store.load_alignment(parent.job_id)
    if not ids:
        raise JobError(f"job {parent_id} has no aligned IDs here to reuse")
    return ids


async def forget(node: Node, job_id: str, caller: str) -> None:
    """Undo a registration that B could not complete (no trace is left)."""
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    runtime = node.runtimes.pop(job_id, None)
    if runtime is not None:
        await runtime.close()
    node.records.pop(job_id, None)
    node.store.delete(job_id)


async def start_training(node: Node, job_id: str, start: TrainingStart, caller: str) -> JobRecord:
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    if record.finished:
        raise JobError(f"job {job_id} {record.state_phrase(already=True)}")
    runtime = node.runtimes.get(job_id)
    if runtime is None:
        raise JobError(f"job {job_id} is not running here")
    if "train" in runtime.roles:
        return record  # a retried start: already started
    try:
        await start_role(node, record, runtime, start)
    except VFLError as exc:  # refused here: the job ends here too, not only at B
        await node.fail(job_id, f"{type(exc).__name__}: {exc}", notify=False)
        raise
    return record


async def start_role(node: Node, record: JobRecord, runtime: JobRuntime, start: TrainingStart) -> None:
    """This party's training role for the job, on the aligned rows; A then asks C for the key."""
    if node.party == "C":
        role: TrainingRole = await asyncio.to_thread(node.arbiter_role, record, start.n_rows)
        node.save(record, state="training", stage="training", n_rows=start.n_rows)
        node.checkpoint(record, role)
        node.training_started(record, start.n_rows)
        await runtime.add_role("train", role)
        return
    await alignment_stored(node, record)
    if start.ids is not None or start.gradient_lengths is not None:
        take_joint_alignment(node, record, start)
    aligned = await asyncio.to_thread(node.aligned_table, record)
    if len(aligned) != start.n_rows:
        raise ProtocolError(f"party B reports {start.n_rows} aligned rows, party A has {len(aligned)}")
    role = await asyncio.to_thread(node.party_role, record, node.training_config(record), aligned)
    node.save(record, state="training", stage="training", n_rows=start.n_rows)
    node.checkpoint(record, role)
    node.training_started(record, start.n_rows)
    await runtime.add_role("train", role, role.start())


def take_joint_alignment(node: Node, record: JobRecord, start: TrainingStart) -> None:
    """A feature party: the rows every party shares, and every party's gradient length, from B.

    With several feature parties the job trains on the IDs all of them share with
    B: a subset of this party's pairwise intersection with B, in its order (by
    ID). Nothing else is accepted. The lengths are those the arbiter holds, which
    this party's key request must state; its own and B's must be the ones it
    registered.
    """
    if start.ids is not None:
        pairwise = node.store.load_alignment(record.job_id) or []
        position = {i: n for n, i in enumerate(pairwise)}
        places = [position.get(i) for i in start.ids]
        if any(p is None for p in places):
            raise ProtocolError("party B's joint rows name IDs outside this party's intersection with B")
        if any(b <= a for a, b in zip(places, places[1:])):
            raise ProtocolError("party B's joint rows are not in the order of the PSI, or repeat an ID")
        if len(start.ids) != start.n_rows:
            raise ProtocolError(f"party B sends {len(start.ids)} joint IDs for {start.n_rows} rows")
        if len(start.ids) != len(pairwise):
            node.store.save_alignment(record.job_id, list(start.ids))
        if not (record.alignment or {}).get("pairwise_intersection"):  # a retried start keeps the first count
            summary = dict(record.alignment or {}) | {"pairwise_intersection": len(pairwise),
                                                      "intersection": len(start.ids)}
            node.save(record, alignment=summary)
    if start.gradient_lengths is not None:
        lengths = dict(start.gradient_lengths)
        known = record.gradient_lengths or {}
        roster = node.roster(record)
        if set(lengths) != set(roster.trainers) or any(lengths.get(p) != n for p, n in known.items()):
            raise ProtocolError(f"party B's gradient lengths {lengths} do not match the job's {known} "
                                f"for parties {list(roster.trainers)}")
        node.save(record, gradient_lengths=lengths)


async def alignment_stored(node: Node, record: JobRecord) -> None:
    """Party A: wait until its side of the PSI has finished and the aligned IDs are stored.

    B learns the intersection when it sends A its last PSI message, so B's "start
    training" can arrive while that message still waits in A's queue.
    """
    if node.store.load_alignment(record.job_id) is not None:
        return
    finished = node.psi_done.setdefault(record.job_id, asyncio.Event())
    try:
        await asyncio.wait_for(finished.wait(), timeout=node.config.limits.request_timeout)
    except TimeoutError:
        raise JobError(
            f"job {record.job_id}: alignment has not finished at party A after "
            f"{node.config.limits.request_timeout:g}s (limits.request_timeout)"
        ) from None


async def finished(node: Node, job_id: str, caller: str) -> None:
    """B has the final model: checkpoints (the arbiter's hold its private key) can go."""
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    node.store.drop_checkpoints(job_id)
