"""Party B submits a job: check it, register it with every peer, or leave nothing behind anywhere.

B checks the spec and its own dataset and registers the job, first with each
feature party in turn (each states its feature count, the length of its
gradient), then with the arbiter (which gets every gradient length). Each checks
the job against its own config and may refuse; any failure withdraws the job
everywhere it was registered. Then B's pipeline drives it
(:mod:`vfl.service.stages.pipeline`).

With one feature party the protocol ids are the two-party letters A, B and C
(``record.peers`` maps them to party ids), so such a job runs exactly as before
k feature parties; with several, every party is addressed by its party id.

A submit may carry an ``Idempotency-Key``: a repeat with the same key and spec
returns the first job, also after a restart; the same key with another spec is
refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from vfl.data.table import LabelHints, PartyTable, check_labels
from vfl.errors import (
    ConfigError,
    IdempotencyKeyReused,
    JobError,
    PeerRefused,
    PeerUnreachable,
    ProtocolError,
    VFLError,
)
from vfl.ml.multiclass import PROBABILITIES, STRATEGY, class_name, class_values, is_multiclass
from vfl.ml.prep import JobPrepare
from vfl.ml.schedule import gradient_lengths
from vfl.protocol.roster import Roster, RoleKind
from vfl.service.context import JobContext, ServiceContext
from vfl.service.psi_roles import check_protocol_accepted
from vfl.service.record import JobRecord
from vfl.service.redact import local_paths, redact
from vfl.service.spec import JobSpec, Registration, RosterRef, new_job_id
from vfl.service.training_roles import check_key_sizes

log = logging.getLogger("vfl.service")

#: An Idempotency-Key: 1 to 255 printable ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


def request_digest(spec: JobSpec) -> str:
    """SHA-256 of the spec as validated (defaults filled in), so equal requests digest alike."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_once(service: ServiceContext, spec: JobSpec, key: str | None) -> tuple[JobRecord, bool]:
    """Submit, honouring an ``Idempotency-Key``: returns (the job, whether it is an earlier submit's).

    The key and a digest of the spec are kept in the job's record, so a repeat
    is recognised after a restart too. A repeat of a submit still in progress
    waits for it; a submit that failed leaves nothing behind, so its key may be
    used again. The same key with another spec is refused (422).
    """
    if key is None:
        return await submit(service, spec), False
    if not IDEMPOTENCY_KEY.match(key):
        raise ConfigError("the Idempotency-Key header must be 1 to 255 printable ASCII characters")
    digest = request_digest(spec)
    in_flight = service.jobs.submitting
    # A submit in progress comes first: its record exists before its registration has succeeded.
    while (running := in_flight.get(key)) is not None:
        if running[0] != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} is being used by a submit still in progress with a different job spec; "
                "use a new key for a new job")
        await running[1].wait()  # then look again: its job, or (if it failed) our turn
    earlier = next((r for r in service.jobs.records() if r.idempotency_key == key), None)
    if earlier is not None:
        if earlier.request_digest != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was used for job {earlier.job_id} with a different job spec; "
                "send that spec again to get that job, or use a new key for a new job")
        return earlier, True
    done = asyncio.Event()
    in_flight[key] = (digest, done)
    try:
        return await submit(service, spec, idempotency=(key, digest)), False
    finally:
        del in_flight[key]
        done.set()


def _not_configured(service: ServiceContext, peer_id: str, kind: str, what: str, role: str, key: str) -> str:
    """A spec naming a peer this service does not have in that role: the ones it has, and both fixes."""
    configured = sorted(p for p in service.config.peers if service.config.kind_of(p) == kind)
    listed = ", ".join(configured) if configured else "none"
    return (f"{peer_id!r} is not a configured {what} peer of {service.me!r}; configured: {listed}. Set the spec's "
            f"{key} to one of them, or add [peers.{peer_id}] with role = \"{role}\" to the config of {service.me!r}")


async def submit(service: ServiceContext, spec: JobSpec, idempotency: tuple[str, str] | None = None,
                 coalition_of: str | None = None) -> JobRecord:
    """Check the job, register it with every peer, and start B's pipeline."""
    config = service.config
    if service.kind != "label":
        raise ConfigError("jobs are submitted to party B, which holds the labels")
    job_id = spec.job_id or new_job_id()
    if job_id in service.jobs or service.store.exists(job_id):
        raise JobError(f"a job with id {job_id!r} already exists; choose another job_id")
    feature_ids = [ref.peer for ref in spec.feature_parties]
    for a_id in feature_ids:
        if config.kind_of(a_id) != "feature":
            raise ConfigError(_not_configured(service, a_id, "feature", "party A", "A",
                                              "party_a.peer (or feature_parties[].peer)"))
    c_id = spec.arbiter.peer if spec.arbiter else config.peer_of_kind("arbiter")
    if config.kind_of(c_id) != "arbiter":
        raise ConfigError(_not_configured(service, c_id, "arbiter", "arbiter", "C", "arbiter.peer"))
    check_key_sizes(config, spec.training, spec.psi.key_bits)
    _check_prepare_parties(spec, service.me, c_id)
    if spec.reuse_alignment is not None:
        reused_alignment(service, spec, coalition_of)  # refuse now, before any peer hears of the job
    else:
        check_protocol_accepted(config.psi, spec.psi.protocol)
    table = await asyncio.to_thread(service.data.table, spec.party_b.dataset, spec.training.model,
                                    _own_entry(spec, service.me))
    multiclass = _multiclass(service, spec, table, coalition_of)
    if len(feature_ids) == 1:
        # One feature party: the two-party protocol's ids A, B and C, exactly as before k parties.
        roster, peers = None, {"A": feature_ids[0], "B": service.me, "C": c_id}
    else:  # several: the protocol addresses every party by its party id
        roster = Roster(tuple(feature_ids), service.me, c_id)
        peers = {party: party for party in roster.all}
    record = JobRecord(
        job_id=job_id,
        role="B",
        job_spec=spec.stored() | {"job_id": job_id},
        dataset=spec.party_b.dataset,
        peers=peers,
        roster=None if roster is None else roster.to_dict(),
        max_epochs=spec.training.epochs,
        idempotency_key=None if idempotency is None else idempotency[0],
        request_digest=None if idempotency is None else idempotency[1],
        coalition_of=coalition_of,
        multiclass=multiclass,
    )
    # B must be ready for a feature party's first PSI message before that party hears of the job.
    ctx = service.open_job(record)
    registered: list[str] = []
    try:
        await _register_with_peers(ctx, spec, table, registered)
    except Exception as exc:  # whatever went wrong, nothing may be left half-created anywhere
        await _withdraw(service, ctx, registered, str(exc))
        refusal = _refusal(job_id, config.kind_of, exc)
        if refusal is exc:
            raise
        raise refusal from exc
    ctx.event("submitted; registered with %s (dataset %r, %d IDs into the alignment)",
              ", ".join(record.name_of(p) for p in record.peer_ids(service.me)), spec.party_b.dataset, len(table))
    service.start_pipeline(ctx)
    return record


def _check_prepare_parties(spec: JobSpec, me: str, arbiter: str) -> None:
    """Every key of the spec's "prepare" must be a party of the job that holds data: a feature party or B itself."""
    with_data = [ref.peer for ref in spec.feature_parties or []] + [me]
    for party in spec.prepare or {}:
        if party == arbiter:
            raise ConfigError(f"prepare names {party!r}, the job's arbiter, which holds no data; drop "
                              f"prepare.{party} (the parties with data are: {', '.join(with_data)})")
        if party not in with_data:
            raise ConfigError(f"prepare names {party!r}, which is not a party of this job; the job's parties with "
                              f"data are: {', '.join(with_data)}. Key each entry by one of them, or add {party!r} "
                              "to feature_parties")


def _own_entry(spec: JobSpec, party: str) -> JobPrepare | None:
    """``party``'s entry of the spec's "prepare", or None when it sets nothing (a plain registration then)."""
    entry = (spec.prepare or {}).get(party)
    return entry if entry is not None and entry.given else None


def _multiclass(service: ServiceContext, spec: JobSpec, table: PartyTable,
                coalition_of: str | None) -> dict[str, Any] | None:
    """A label of 3 or more classes: the job trains one-vs-rest (its classes), else None; or why it cannot."""
    dataset = spec.party_b.dataset
    if spec.one_vs_rest_class is not None:  # one class against the rest: a binary job
        if table.labels is None or spec.one_vs_rest_class not in set(np.unique(table.labels).tolist()):
            raise ConfigError(f"one_vs_rest_class {spec.one_vs_rest_class:g} is not a class of dataset {dataset!r}'s "
                              "label")
        return None
    if table.labels is None or not is_multiclass(table.labels, spec.training.model):
        return None
    check_labels(table.labels, spec.training.model, f"dataset {dataset!r}", table.label_name or "label",
                 max_classes=spec.training.max_classes, hints=LabelHints.for_service(dataset))
    classes = class_values(table.labels)
    if spec.scorecard is not None:
        raise ConfigError(f"dataset {dataset!r}'s label has {len(classes)} classes; a scorecard is binary only (points "
                          "and reasons for one event). Recode the label to 0/1, or drop \"scorecard\" to train "
                          "one-vs-rest logistic regression")
    if spec.contribution_settings is not None:
        raise ConfigError(f"dataset {dataset!r}'s label has {len(classes)} classes; contributions are measured on "
                          "binary labels and numeric targets only: drop \"contributions\"")
    if coalition_of is not None:
        raise ConfigError("a coalition training of a multi-class job is not supported")
    return {"strategy": STRATEGY, "classes": classes, "class_names": [class_name(c) for c in classes],
            "probabilities": PROBABILITIES, "jobs": []}


def _refusal(job_id: str, kind_of: Callable[[str], RoleKind | None], exc: Exception) -> Exception:
    """What a submit that failed answers: who could not be reached, what a peer refused, or the error itself."""
    if isinstance(exc, PeerUnreachable):  # 502, at once: naming the party that could not be reached
        role = {"feature": "party A", "arbiter": "party C (the arbiter)"}.get(kind_of(exc.peer_id), "peer")
        return PeerUnreachable(f"job {job_id} was not submitted, and nothing of it is left at any party: "
                               f"{role} {exc.peer_id!r} is unreachable: {exc}", peer_id=exc.peer_id)
    if isinstance(exc, PeerRefused) and exc.status is not None and 400 <= exc.status < 500:
        return ConfigError(f"job refused: {exc}")
    if isinstance(exc, VFLError):
        return exc
    log.error("job %s: submit crashed; withdrawn everywhere", job_id, exc_info=exc)
    return VFLError(f"internal error while submitting job {job_id} ({exc!r}); it was withdrawn everywhere, "
                    "nothing is left behind")


async def _register_with_peers(ctx: JobContext, spec: JobSpec, table: PartyTable, registered: list[str]) -> None:
    """Register the job with each feature party, which confirms its feature count, then with C, which gets all lengths.

    The lengths C will decrypt come from here (B's own count and the ones the
    feature parties state), never from a party's own key request: see
    :mod:`vfl.protocol.arbiter`. The feature parties are asked one after the
    other, so a refusal stops the rest; the caller withdraws what was registered.
    """
    record, roster = ctx.record, ctx.roster
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
            measures=record.coalition_of,
            classes=None if record.multiclass is None else len(record.multiclass["classes"]),
            scorecard=spec.scorecard,
            prepare=_own_entry(spec, ref.peer),  # its own entry only: another party's is none of its business
        )
        registered.append(ref.peer)  # before the call: a registration that timed out may still have landed
        answer = await _register_with(ctx, ref.peer, registration.wire(), registered)
        lengths[pid] = _confirmed_length(answer, pid)
        profile = answer.get("id_profile") if isinstance(answer, dict) else None
        if isinstance(profile, dict) and len(profile) <= 20:  # kept to explain a small intersection later
            record.peer_id_profiles[pid] = profile
    lengths[roster.label] = n_b
    ctx.update(gradient_lengths=lengths)
    to_c = registration.model_copy(update={"dataset": None, "gradient_lengths": lengths, "prepare": None})
    registered.append(record.peers[roster.arbiter])
    await _register_with(ctx, record.peers[roster.arbiter], to_c.wire(), registered)


async def _register_with(ctx: JobContext, peer_id: str, body: dict[str, Any], registered: list[str]) -> Any:
    """POST the registration; a peer not reachable within limits.connect_timeout fails the submit at once."""
    try:
        return await ctx.client.call_json(peer_id, "POST", "/v1/peer/jobs", body,
                                          connect_within=ctx.config.limits.connect_timeout)
    except PeerUnreachable:
        registered.remove(peer_id)  # no attempt connected: nothing landed there, nothing to withdraw
        raise


async def _withdraw(service: ServiceContext, ctx: JobContext, registered: list[str], reason: str) -> None:
    """Submitting failed: withdraw the job everywhere, so nothing is left half-created."""
    job_id = ctx.record.job_id
    for peer_id in registered:
        try:
            await ctx.client.call_json(
                peer_id, "POST", f"/v1/peer/jobs/{job_id}/forget",
                {"reason": redact(reason, local_paths(service.config))[:4000]},
                connect_within=service.config.limits.connect_timeout,  # the submitter waits for this answer
            )
        except VFLError:
            log.warning("could not undo registration of %s at %s", job_id, peer_id)
    await service.forget(job_id)


def _confirmed_length(answer: Any, party: str) -> int:
    """A feature party's gradient length from its registration answer."""
    try:
        length = int(answer["gradient_lengths"][party])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party A's registration answer does not state its feature count: {exc!r}") from exc
    if not 1 <= length <= 1_000_000:
        raise ProtocolError(f"party A states {length} features; a job needs between 1 and 1,000,000")
    return length


def reused_alignment(service: ServiceContext, spec: JobSpec, coalition_of: str | None = None) -> list[str]:
    """Party B: the aligned IDs of the earlier job ``spec.reuse_alignment``, if this job may train on them.

    That job must have succeeded here with the same dataset (or be measuring its
    own contributions), and every feature party of this job must have taken part
    in it (each checks the same for itself).
    """
    parent_job = service.jobs.get(spec.reuse_alignment or "")
    parent = None if parent_job is None else parent_job.record
    if parent is None or parent.kind != "label":
        raise ConfigError(f"reuse_alignment: party B has no job {spec.reuse_alignment!r}")
    # Its own coalition trainings, or (still training, its class 0 trained) a multi-class job's class trainings.
    measuring = parent.state == "training" and (parent.stage == "contributions" or (
        coalition_of == parent.job_id and parent.multiclass is not None))
    if parent.state != "succeeded" and not measuring:
        raise JobError(f"reuse_alignment: job {parent.job_id} {parent.state_phrase()}; only a succeeded job's "
                       "alignment is reused")
    if parent.dataset != spec.party_b.dataset:
        raise ConfigError(f"reuse_alignment: job {parent.job_id} aligned dataset {parent.dataset!r}, this job names "
                          f"{spec.party_b.dataset!r}")
    took_part = set(parent.peer_ids(service.me, "feature"))
    strangers = [ref.peer for ref in spec.feature_parties or [] if ref.peer not in took_part]
    if strangers:
        raise ConfigError(f"reuse_alignment: {', '.join(strangers)} took no part in job {parent.job_id}")
    ids = service.store.load_alignment(parent.job_id)
    if not ids:
        raise JobError(f"reuse_alignment: job {parent.job_id} has no aligned IDs here")
    return ids


__all__ = ["IDEMPOTENCY_KEY", "request_digest", "reused_alignment", "submit", "submit_once"]
