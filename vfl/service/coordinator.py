"""Party B's side of a job: submit it, drive it through alignment and training, evaluate it.

Party B owns each job, with one or more feature parties:

1. :func:`submit` checks the spec and B's own dataset and registers the job,
   first with each feature party in turn (each states its feature count, the
   length of its gradient), then with the arbiter (which gets every gradient
   length). Each checks the job against its own config and may refuse; any
   failure withdraws the job everywhere it was registered.
2. :func:`drive` runs the RSA blind-signature PSI with each feature party (each
   holds the RSA key of its pair) over the job's message endpoints, intersects
   the results (:func:`psi.joint.shared_rows_b`), tells C the aligned row count and
   each feature party the joint IDs and every gradient length, and starts
   training. Every party checkpoints its role after every epoch.
3. :func:`finish` waits for the last epoch, then :func:`evaluate` asks every
   feature party at once for its partial scores on the aligned rows (as for any
   prediction), computes the metrics and a bank-only baseline on the same rows,
   and saves B's model part; the others drop their checkpoints and the job has
   succeeded.

With one feature party the protocol ids are the two-party letters A, B and C
(``record.peers`` maps them to party ids), so such a job runs exactly as before
k feature parties; with several, every party is addressed by its party id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from vfl.data.table import PartyTable
from vfl.errors import ConfigError, JobError, PeerRefused, ProtocolError, VFLError
from vfl.ml.parts import evaluate_label_part, label_party_alone
from vfl.protocol.label_party import LabelParty
from vfl.ml.schedule import gradient_lengths
from vfl.ml.curves import curves_for
from vfl.service import alignment, contributions, ledger
from vfl.service.client import PeerUnreachable
from vfl.service.logs import job_event
from vfl.service.redact import local_paths, redact
from vfl.protocol.roster import Roster
from vfl.service.scoring import gather_partial_scores
from vfl.service.spec import JobSpec, Registration, RosterRef, TrainingStart, new_job_id
from vfl.service.store import JobRecord, model_document

if TYPE_CHECKING:
    from vfl.service.node import Node

log = logging.getLogger("vfl.service")


#: An Idempotency-Key: 1 to 255 printable ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class IdempotencyKeyReused(ConfigError):
    """The Idempotency-Key of an earlier submit, with another spec (422)."""


def request_digest(spec: JobSpec) -> str:
    """SHA-256 of the spec as validated (defaults filled in), so equal requests digest alike."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_once(node: Node, spec: JobSpec, key: str | None) -> tuple[JobRecord, bool]:
    """Submit, honouring an ``Idempotency-Key``: returns (the job, whether it is an earlier submit's).

    The key and a digest of the spec are kept in the job's record, so a repeat
    is recognised after a restart too. A repeat of a submit still in progress
    waits for it; a submit that failed leaves nothing behind, so its key may be
    used again. The same key with another spec is refused (422).
    """
    if key is None:
        return await submit(node, spec), False
    if not IDEMPOTENCY_KEY.match(key):
        raise ConfigError("the Idempotency-Key header must be 1 to 255 printable ASCII characters")
    digest = request_digest(spec)
    # A submit in progress comes first: its record exists before its registration has succeeded.
    while (running := node.submitting.get(key)) is not None:
        if running[0] != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} is being used by a submit still in progress with a different job spec; "
                "use a new key for a new job")
        await running[1].wait()  # then look again: its job, or (if it failed) our turn
    earlier = next((r for r in node.records.values() if r.idempotency_key == key), None)
    if earlier is not None:
        if earlier.request_digest != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was used for job {earlier.job_id} with a different job spec; "
                "send that spec again to get that job, or use a new key for a new job")
        return earlier, True
    done = asyncio.Event()
    node.submitting[key] = (digest, done)
    try:
        return await submit(node, spec, idempotency=(key, digest)), False
    finally:
        del node.submitting[key]
        done.set()


async def submit(node: Node, spec: JobSpec, idempotency: tuple[str, str] | None = None,
                 coalition_of: str | None = None) -> JobRecord:
    if node.party != "B":
        raise ConfigError("jobs are submitted to party B, which holds the labels")
    job_id = spec.job_id or new_job_id()
    if job_id in node.records or node.store.exists(job_id):
        raise JobError(f"a job with id {job_id!r} already exists; choose another job_id")
    feature_ids = [ref.peer for ref in spec.feature_parties]
    for a_id in feature_ids:
        if node.config.peers.get(a_id) is None or node.config.peers[a_id].role != "A":
            raise ConfigError(f"{a_id!r} is not a configured party A peer of {node.config.party.id!r}")
    c_id = spec.arbiter.peer if spec.arbiter else node.config.peer_of_role("C")[0]
    if node.config.peers.get(c_id) is None or node.config.peers[c_id].role != "C":
        raise ConfigError(f"{c_id!r} is not a configured arbiter peer of {node.config.party.id!r}")
    node.check_key_sizes(spec.training, spec.psi.key_bits)
    if spec.reuse_alignment is not None:
        reused_alignment(node, spec)  # refuse now, before any peer hears of the job
    table = await asyncio.to_thread(node.table, spec.party_b.dataset, spec.training.model)
    if len(feature_ids) == 1:
        # One feature party: the two-party protocol's ids A, B and C, exactly as before k parties.
        roster, peers = None, {"A": feature_ids[0], "B": node.config.party.id, "C": c_id}
    else:  # several: the protocol addresses every party by its party id
        roster = Roster(tuple(feature_ids), node.config.party.id, c_id)
        peers = {party: party for party in roster.all}
    record = JobRecord(
        job_id=job_id,
        role="B",
        spec=spec.stored() | {"job_id": job_id},
        dataset=spec.party_b.dataset,
        peers=peers,
        roster=None if roster is None else roster.to_dict(),
        max_epochs=spec.training.epochs,
        idempotency_key=None if idempotency is None else idempotency[0],
        request_digest=None if idempotency is None else idempotency[1],
        coalition_of=coalition_of,
    )
    # B must be ready for A's first PSI message before A hears of the job.
    node.store.create(record)
    node.records[job_id] = record
    registered: list[str] = []
    try:
        node.runtime_for(record)
        await register_with_peers(node, record, spec, table, registered)
    except Exception as exc:  # whatever went wrong, nothing may be left half-created anywhere
        await undo_submission(node, job_id, registered, str(exc))
        if isinstance(exc, PeerUnreachable):  # 502, at once: naming the party that could not be reached
            role = {"A": "party A", "C": "party C (the arbiter)"}.get(node.config.role_of(exc.peer_id), "peer")
            raise PeerUnreachable(f"job {job_id} was not submitted, and nothing of it is left at any party: "
                                  f"{role} {exc.peer_id!r} is unreachable: {exc}", peer_id=exc.peer_id) from exc
        if isinstance(exc, PeerRefused) and exc.status is not None and 400 <= exc.status < 500:
            raise ConfigError(f"job refused: {exc}") from exc
        if isinstance(exc, VFLError):
            raise
        log.exception("job %s: submit crashed; withdrawn everywhere", job_id)
        raise VFLError(
            f"internal error while submitting job {job_id} ({exc!r}); it was withdrawn "
            "everywhere, nothing is left behind"
        ) from exc
    job_event(job_id, "submitted; registered with %s (dataset %r, %d IDs into the alignment)",
              ", ".join(node.name_of(record, p) for p in node.peer_ids(record)), spec.party_b.dataset, len(table))
    node.drivers[job_id] = asyncio.get_running_loop().create_task(drive(node, record, table))
    return record


async def register_with_peers(
    node: Node, record: JobRecord, spec: JobSpec, table: PartyTable, registered: list[str]
) -> None:
    """Register the job with each feature party, which confirms its feature count, then with C, which gets all lengths.

    The lengths C will decrypt come from here (B's own count and the ones the
    feature parties state), never from a party's own key request: see
    :mod:`vfl.protocol.arbiter`. The feature parties are asked one after the
    other, so a refusal stops the rest; the caller withdraws what was registered.
    """
    roster = node.roster(record)
    parties = (dict(parties=record.peers) if record.roster is None
               else dict(roster=RosterRef(features=list(roster.features), label=roster.label, arbiter=roster.arbiter)))
    n_b = gradient_lengths({}, table.features.shape[1], spec.training, label=roster.label)[roster.label]
    lengths = {}
    registration = None
    for pid, ref in zip(roster.features, spec.feature_parties):
        to_a = {roster.label: n_b} | ({pid: ref.n_features} if ref.n_features else {})
        registration = Registration(
            job_id=record.job_id,
            **parties,
            training=spec.training,
            psi=spec.psi,
            dataset=ref.dataset,
            gradient_lengths=to_a,
            psi_ids=None if spec.reuse_alignment else len(table),
            reuse_alignment=spec.reuse_alignment,
        )
        registered.append(ref.peer)  # before the call: a registration that timed out may still have landed
        answer = await _register_with(node, ref.peer, registration.model_dump(mode="json"), registered)
        lengths[pid] = _confirmed_length(answer, pid)
    lengths[roster.label] = n_b
    node.save(record, gradient_lengths=lengths)
    to_c = registration.model_copy(update={"dataset": None, "gradient_lengths": lengths})
    registered.append(record.peers[roster.arbiter])
    await _register_with(node, record.peers[roster.arbiter], to_c.model_dump(mode="json"), registered)


async def _register_with(node: Node, peer_id: str, body: dict[str, Any], registered: list[str]) -> Any:
    """POST the registration; a peer not reachable within limits.connect_timeout fails the submit at once."""
    try:
        return await node.client.call_json(peer_id, "POST", "/v1/peer/jobs", body,
                                           connect_within=node.config.limits.connect_timeout)
    except PeerUnreachable:
        registered.remove(peer_id)  # no attempt connected: nothing landed there, nothing to withdraw
        raise


async def undo_submission(node: Node, job_id: str, registered: list[str], reason: str) -> None:
    """Submitting failed: withdraw the job everywhere, so nothing is left half-created."""
    for peer_id in registered:
        try:
            await node.client.call_json(
                peer_id,
                "POST",
                f"/v1/peer/jobs/{job_id}/forget",
                {"reason": redact(reason, local_paths(node.config))[:4000]},
                connect_within=node.config.limits.connect_timeout,  # the submitter waits for this answer
            )
        except VFLError:
            log.warning("could not undo registration of %s at %s", job_id, peer_id)
    runtime = node.runtimes.pop(job_id, None)
    if runtime is not None:
        await runtime.close()
    node.records.pop(job_id, None)
    node.done.pop(job_id, None)
    node.store.delete(job_id)


async def drive(node: Node, record: JobRecord, table: PartyTable,
                ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Align, then train to the end; ``ready`` is awaited once B's PSI roles wait for the feature parties."""
    runtime = node.runtimes[record.job_id]
    spec = JobSpec.model_validate(record.spec)
    started = time.perf_counter()
    try:
        if spec.reuse_alignment is not None:  # the rows of an earlier job: no PSI (a coalition training)
            ids = reused_alignment(node, spec)
            rows_b = await asyncio.to_thread(table.rows_for, ids)
            summary = {"reused_from": spec.reuse_alignment, "intersection": len(ids),
                       "party_b_ids": len(table), "seconds": 0.0}
        else:
            node.save(record, state="aligning", stage="psi")
            rows_b, summary = await alignment.align_as_requester(node, record, runtime, table, ready)
        aligned = table.take(rows_b)
        node.store.save_alignment(record.job_id, aligned.ids)
        alignment.drop_checkpoints(node, record)
        node.save(
            record,
            alignment=summary,
            n_rows=len(aligned),
            timings={"alignment": round(time.perf_counter() - started, 3)},
        )
        job_event(record.job_id, "aligned: %d rows shared with %s (of %d here), in %.1fs", len(aligned),
                  ", ".join(node.name_of(record, p) for p in node.peer_ids(record, "feature")), len(table),
                  record.timings["alignment"])

        node.save(record, state="training", stage="training")
        role = await asyncio.to_thread(node.party_role, record, spec.training, aligned)
        node.checkpoint(record, role)
        roster = node.roster(record)
        start = TrainingStart(n_rows=len(aligned))
        # The feature parties also get the joint IDs (with several of them) and every party's gradient length.
        to_features = start.model_copy(
            update={"ids": aligned.ids, "gradient_lengths": record.gradient_lengths} if roster.k > 1 else {})
        path = f"/v1/peer/jobs/{record.job_id}/start"
        await node.client.call_json(record.peers[roster.arbiter], "POST", path, start.model_dump())
        await asyncio.gather(*(node.client.call_json(record.peers[pid], "POST", path, to_features.model_dump())
                               for pid in roster.features))
        node.training_started(record, len(aligned))
        await runtime.add_role("train", role, role.start())
        await finish(node, record, role, aligned, started)
    except asyncio.CancelledError:
        raise
    except VFLError as exc:
        await node.fail(record.job_id, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug must fail the job with a message, not hang it
        log.exception("job %s crashed", record.job_id)
        await node.fail(record.job_id, f"internal error: {exc!r}")


async def finish(node: Node, record: JobRecord, role: LabelParty, aligned: PartyTable, started: float) -> None:
    """Wait for training to end, evaluate, and close the job everywhere."""
    trained = time.perf_counter()
    if not role.done:
        await node.done[record.job_id].wait()
    runtime = node.runtimes.get(record.job_id)
    if runtime is None or runtime.failed or record.finished:
        return
    record.timings["training"] = round(time.perf_counter() - trained, 3)
    node.save(record, stage="evaluating")
    await evaluate(node, record, role, aligned)
    # Clean up before announcing success, so whoever sees "succeeded" also sees no checkpoints
    # (the arbiter's hold its private key) anywhere.
    node.store.drop_checkpoints(record.job_id)
    await node.tell_peers(record, "finished")
    runtime = node.runtimes.pop(record.job_id, None)
    if runtime is not None:  # training is over: no message of this job is due any more
        await runtime.close()
    spec = JobSpec.model_validate(record.spec)
    if spec.contribution_settings is not None and record.coalition_of is None:
        node.save(record, stage="contributions")
        await contributions.measure(node, record, spec)
    record.timings["total"] = round(time.perf_counter() - started, 3)
    if record.coalition_of is None:
        node.save(record, stage="ledger")
        signing = time.perf_counter()
        await ledger.record_job(node, record)
        record.timings["ledger"] = round(time.perf_counter() - signing, 3)
    node.save(record, state="succeeded", stage="done")
    split = "validation" if (record.metrics or {}).get("validation") else "train"
    shown = ", ".join(f"{k} {v:.4f}" for k, v in ((record.metrics or {}).get(split) or {}).items()
                      if isinstance(v, float))
    job_event(record.job_id, "succeeded after %d epochs in %.1fs (%s: %s)", record.epoch, record.timings["total"],
              split, shown or "no metrics")
    if record.coalition_of is None:  # a coalition training is read by its job, not by people
        try:
            await asyncio.to_thread(report, node, record.job_id)  # written next to the model
        except VFLError as exc:  # the job still succeeded; the report is made again on request
            log.warning("job %s: no report written: %s", record.job_id, exc)
    node.drivers.pop(record.job_id, None)


async def evaluate(node: Node, record: JobRecord, role: LabelParty, aligned: PartyTable) -> None:
    """Metrics of the federated model and of a bank-only baseline on the same rows."""
    model = role.model()
    roster = node.roster(record)
    partial = await gather_partial_scores(node, record, aligned.ids)
    if not partial.available.all():
        missing = sorted({m for m in partial.missing_at if m is not None})
        raise ProtocolError(f"{', '.join(missing)} did not score {int((~partial.available).sum())} of the job's "
                            "own aligned rows")
    schedule = role.schedule
    kind = role.config.model
    splits = {"train": schedule.train_rows}
    if schedule.has_validation:
        splits["validation"] = schedule.validation_rows
    model, record.metrics, record.decision, predictions = evaluate_label_part(
        model, role.config, aligned.labels, model.scores(aligned.features, partial.total), splits)
    record.baseline, baseline_predictions = await asyncio.to_thread(_baseline, role, aligned, splits)
    split = "validation" if schedule.has_validation else "train"
    rows = splits[split]
    record.curve_split = split
    record.curves = curves_for(kind, aligned.labels[rows], predictions[rows], baseline_predictions[rows])
    record.privacy = None if role.privacy is None else role.privacy.report()
    record.parameters = role.trajectory()
    for peer in node.peer_ids(record, "feature"):
        try:
            summary = await node.client.call_json(peer, "GET", f"/v1/peer/jobs/{record.job_id}/convergence")
        except VFLError as exc:  # the report goes without that party's panel; the model is unaffected
            log.warning("job %s: %s's convergence summary unavailable: %s", record.job_id, peer, exc)
            continue
        if peer == record.peers[roster.features[0]]:
            record.party_a_convergence = summary
        record.feature_convergence = {**(record.feature_convergence or {}), peer: summary}
    node.store.save_model(record.job_id, model_document(model, record))


def report(node: Node, job_id: str) -> str:
    """Party B's HTML report of a finished job (made on first request if it was not yet)."""
    if node.party != "B":
        raise ConfigError("job reports are served by party B")
    record = node.record(job_id)
    if record.state != "succeeded":
        raise JobError(f"job {job_id} is {record.state}; the report is made when it succeeds")
    page = node.store.load_report(job_id)
    if page is None:
        from vfl.report.job import figures_for, render, summary_from_record

        summary = summary_from_record(record.model_dump(mode="json"))
        page = render(summary, figures_for(summary))
        node.store.save_report(job_id, page)
    return page


def reused_alignment(node: Node, spec: JobSpec) -> list[str]:
    """Party B: the aligned IDs of the earlier job ``spec.reuse_alignment``, if this job may train on them.

    That job must have succeeded here with the same dataset, and every feature
    party of this job must have taken part in it (each checks the same for itself).
    """
    parent = node.records.get(spec.reuse_alignment or "")
    if parent is None or parent.role != "B":
        raise ConfigError(f"reuse_alignment: party B has no job {spec.reuse_alignment!r}")
    measuring = parent.state == "training" and parent.stage == "contributions"  # its own coalition trainings
    if parent.state != "succeeded" and not measuring:
        raise JobError(f"reuse_alignment: job {parent.job_id} {parent.state_phrase()}; only a succeeded job's "
                       "alignment is reused")
    if parent.dataset != spec.party_b.dataset:
        raise ConfigError(f"reuse_alignment: job {parent.job_id} aligned dataset {parent.dataset!r}, this job names "
                          f"{spec.party_b.dataset!r}")
    took_part = set(node.peer_ids(parent, "feature"))
    strangers = [ref.peer for ref in spec.feature_parties or [] if ref.peer not in took_part]
    if strangers:
        raise ConfigError(f"reuse_alignment: {', '.join(strangers)} took no part in job {parent.job_id}")
    ids = node.store.load_alignment(parent.job_id)
    if not ids:
        raise JobError(f"reuse_alignment: job {parent.job_id} has no aligned IDs here")
    return ids


def _confirmed_length(answer: Any, party: str) -> int:
    """A feature party's gradient length from its registration answer."""
    try:
        length = int(answer["gradient_lengths"][party])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party A's registration answer does not state its feature count: {exc!r}") from exc
    if not 1 <= length <= 1_000_000:
        raise ProtocolError(f"party A states {length} features; a job needs between 1 and 1,000,000")
    return length


def _baseline(role: LabelParty, aligned: PartyTable, splits: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    """The same model trained by party B alone, on the same rows: what federation adds (and its predictions)."""
    return label_party_alone(role, aligned.labels, splits)
