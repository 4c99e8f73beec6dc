"""A job's PSI roles at a service: the same I/O-free roles :func:`psi.run_psi` runs, plus an audit log.

A feature party holds the secret of its pair with party B (an RSA key, or an
ECDH scalar with the job spec's ``"psi": {"protocol": "ecdh"}``): its key holder
starts as soon as it accepts the job (or a resume asks for a new session) and
sends its public key to B; B's requester, one per feature party, takes it from
there. Each side caps the set size the other declares with its own
``limits.max_psi_ids`` and ``limits.max_psi_ratio``, and writes every PSI
message it refuses to the job's ``audit.log``, as the arbiter does for
decryptions it refuses.

An unbalanced job (``"psi": {"protocol": "ecdh", "unbalanced": true}``) maps
the pair onto the large and the small side instead: B large by default, the
feature party with ``"large_side": "feature"`` (and its ``[psi]
accept_large_side``). The large side keeps a key and offline set per partner
and dataset, the small side a copy of its tags; the code is the same both ways.

Finished buckets are kept under ``jobs/<id>/psi/<peer>/`` until the alignment is
stored, so an alignment cut short resumes at the first bucket not finished at
both ends (:mod:`psi.buckets`).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psi import ec
from psi.buckets import DiskBucketResults, OwnTagCache
from psi.joint import alignment_summary
from psi.protocol import PsiKeyHolder, PsiRequester, check_declared_size
from psi.suites import METHODS
from psi.unbalanced import LargeSet, OfflineKey, PeerTags, UnbalancedEvaluator, UnbalancedQuerier
from vfl.errors import ConfigError, ProtocolError, VFLError
from vfl.protocol.messages import Message, Party
from vfl.protocol.role import Envelope, Role
from vfl.service.sections import LimitsSection
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.runtime import JobRuntime
from vfl.service.store import JobStore

METHOD = METHODS["rsa"]

AuditFn = Callable[[str], None]


class _AuditsRefusals(Role):
    """Writes each message the PSI role refuses to the job's audit log, then lets the refusal through.

    The roles stay free of I/O; this service-side layer adds the log for what the
    role refuses while handling its queue. What it refuses as a message arrives is
    logged where messages arrive, like every refusal.

    ``handle`` runs ``check`` again before ``process``, and that check can refuse a
    message its arrival check let through: a blinded chunk that arrived while B's
    declaration was still queued is measured against the declaration only here.
    So the whole of ``handle`` is audited, naming the message being handled (a
    held one released by ``handle`` included), not only ``process``: what is
    audited does not depend on how requests and the job's worker interleave.
    """

    def __init__(self, *args: Any, audit: AuditFn, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audit = audit
        self._handling: Message | None = None

    def handle(self, message: Message, sender: Party | None = None) -> list[Envelope]:
        self._handling = message
        try:
            return super().handle(message, sender)
        except VFLError as exc:
            refused = self._handling or message
            self.audit(f"refused {refused.address()}: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._handling = None

    def process(self, message: Message) -> list[Envelope]:
        self._handling = message  # a held message that handle() releases is the one refused
        return super().process(message)


class AuditedKeyHolder(_AuditsRefusals, PsiKeyHolder):
    """A feature party's key holder at a service."""


class AuditedRequester(_AuditsRefusals, PsiRequester):
    """Party B's requester at a service, one per feature party."""


class AuditedQuerier(_AuditsRefusals, UnbalancedQuerier):
    """The small side of an unbalanced ECDH alignment (``psi.unbalanced``): it queries the large side's offline set.

    A feature party by default; party B (one per feature party) with ``"large_side": "feature"``.
    """


class AuditedEvaluator(_AuditsRefusals, UnbalancedEvaluator):
    """The large side of an unbalanced ECDH alignment: it answers with its offline key.

    Party B (one per feature party) by default; the feature party with ``"large_side": "feature"``.
    """


#: Every role of an alignment, at either party; ``role.KIND`` says whose ("feature" ends a feature party's).
PSI_ROLES = (PsiKeyHolder, PsiRequester, UnbalancedQuerier, UnbalancedEvaluator)


def caps(limits: LimitsSection) -> dict[str, Any]:
    """This service's caps on the set size the other party declares."""
    return {"max_peer_ids": limits.max_psi_ids, "max_peer_ratio": limits.max_psi_ratio}


def check_registered_size(limits: LimitsSection, psi_ids: int, own_size: int) -> None:
    """A feature party: refuse at registration a job whose party B would declare more IDs than its caps allow."""
    check_declared_size(psi_ids, own_size, peer="B", me="A", **caps(limits))


def job_protocol(record: Any) -> str:
    """The job's PSI protocol: from B's registration at a feature party, from the job spec at B ("rsa" if unset)."""
    spec = record.job_spec if record.kind == "label" else record.registration
    settings = (spec or {}).get("psi") or {}
    return str(settings.get("protocol") or "rsa")


def job_unbalanced(record: Any) -> bool:
    """Whether the job runs the unbalanced ECDH PSI (one side large, with its offline set)."""
    spec = record.job_spec if record.kind == "label" else record.registration
    return bool(((spec or {}).get("psi") or {}).get("unbalanced"))


def job_large_side(record: Any) -> str:
    """An unbalanced job: the kind of party that holds the large set ("label", the default, or "feature").

    The same for every pair of the job; each pair (B and one feature party) is its own alignment.
    """
    spec = record.job_spec if record.kind == "label" else record.registration
    return str(((spec or {}).get("psi") or {}).get("large_side") or "label")


def runs_large_side(record: Any) -> bool:
    """Whether this party is the large side of its unbalanced alignment(s): it keeps a key and an offline set."""
    return job_unbalanced(record) and job_large_side(record) == record.kind


def method(record: Any) -> str:
    """What the alignment reports as its method."""
    return "ecdh-x25519-unbalanced-psi" if job_unbalanced(record) else METHODS[job_protocol(record)]


def check_protocol_accepted(psi: Any, protocol: str) -> None:
    """Refuse a job whose PSI protocol this party's ``[psi] protocols`` does not list."""
    if protocol not in psi.protocols:
        raise ConfigError(
            f"the job's psi.protocol is {protocol!r}, which this party does not accept ([psi] protocols = "
            f"{list(psi.protocols)}); add it to [psi] protocols in this party's service config, or submit the "
            f"job with one of those")
    if protocol == "ecdh":
        ec.libsodium_version()  # refuse now, with how to install it, not halfway through the PSI


def check_large_side_accepted(psi: Any, settings: Any) -> None:
    """A feature party: refuse to be the large side of an unbalanced job unless ``[psi] accept_large_side`` says so.

    The large side's kept key makes its customers linkable across jobs by the
    partner holding its tags: the party that bears that decides, as party A
    does for RSA with ``reuse_own_signatures``.
    """
    if settings.unbalanced and settings.large_side == "feature" and not psi.accept_large_side:
        raise ConfigError(
            "the job asks this feature party to be the large side of an unbalanced ECDH PSI (psi.large_side = "
            "\"feature\"): it would keep a key and offline set for party B, and B could link this party's customers "
            "across jobs while the key is kept. Set [psi] accept_large_side = true in this party's service config "
            "to take part, or submit the job without psi.large_side")


def results(store: JobStore, job_id: str, peer: str) -> DiskBucketResults:
    """Where this party keeps the finished buckets of its PSI with ``peer`` (in the job's folder)."""
    return DiskBucketResults(store.job_dir(job_id) / "psi" / peer)


def drop_results(store: JobStore, job_id: str) -> None:
    """The alignment is stored: the per-bucket results are no longer needed."""
    shutil.rmtree(store.job_dir(job_id) / "psi", ignore_errors=True)


def finished_buckets(store: JobStore, job_id: str, peer: str) -> int:
    """Buckets of the PSI with ``peer`` finished here before a restart."""
    return results(store, job_id, peer).finished()


def _audit(ctx: JobContext) -> AuditFn:
    job_id = ctx.record.job_id
    return lambda line: ctx.store.audit(job_id, line)


def _ids_digest(ids: list[str]) -> str:
    digest = hashlib.sha256()
    for x in ids:
        digest.update(x.encode("utf-8") + b"\0")
    return digest.hexdigest()


_OFFLINE_LOCKS: dict[str, threading.Lock] = {}
_OFFLINE_LOCKS_GUARD = threading.Lock()


def _offline_lock(folder: Path) -> threading.Lock:
    """One lock per offline-set folder: two jobs with one partner and dataset make the set once, not both at once."""
    with _OFFLINE_LOCKS_GUARD:
        return _OFFLINE_LOCKS.setdefault(str(folder), threading.Lock())


def offline_set(ctx: JobContext, ids: list[str], partner: str) -> tuple[OfflineKey, LargeSet]:
    """The large side's key and offline set for ``partner`` (a party id) and the job's dataset: kept, or made anew.

    Party B's by default, a feature party's with ``"large_side": "feature"``.
    Made anew (a fresh key, so nothing links to the old tags) when there is
    none, when the dataset's IDs changed, or when the key is older than
    ``[psi] offline_key_days``. Kept under ``psi-offline/<partner>/<dataset>/``
    in this party's data folder; the key file is readable by its service user only.
    """
    folder = ctx.store.data_dir / "psi-offline" / partner / str(ctx.record.dataset)
    with _offline_lock(folder):
        return _kept_or_new_offline_set(ctx, ids, partner, folder)


def _kept_or_new_offline_set(ctx: JobContext, ids: list[str], partner: str,
                             folder: Path) -> tuple[OfflineKey, LargeSet]:
    key_file, ids_file = folder / "key.json", folder / "ids.sha256"
    ids_digest = _ids_digest(ids)
    max_age = ctx.config.psi.offline_key_days * 86_400
    try:
        fresh = time.time() - key_file.stat().st_mtime < max_age and ids_file.read_text() == ids_digest
        if fresh:
            key, table = OfflineKey.load(key_file), LargeSet.load(folder / "set")
            if (key.salt, key.label) == (table.salt, table.label) and table.size == len(ids):
                return key, table
    except (OSError, ConfigError):
        pass  # missing or damaged: make a new key and set below
    folder.mkdir(parents=True, exist_ok=True)
    key = OfflineKey.new(f"{ctx.me}->{partner}")
    table = LargeSet.build(ids, key, ctx.engine, on_chunk=lambda _: _still_working(ctx))
    table.save(folder / "set")
    key.save(key_file)
    ids_file.write_text(ids_digest)
    ctx.event("psi: made a new offline set of %d IDs for %s (unbalanced ECDH)", len(ids), partner)
    return key, table


def _still_working(ctx: JobContext) -> None:
    """Mark the job active while a long offline build runs (minutes for tens of millions of IDs).

    Without it the job's watchdog here, and party B's through this party's
    ``quiet`` (:func:`vfl.service.watchdog.probe_answer`), would take the silent
    build for a party that stopped taking part once ``limits.idle_timeout`` passed.
    """
    runtime = ctx.job.runtime
    if runtime is not None:
        runtime.touch()


def requester(ctx: JobContext, ids: list[str],
              peer: str) -> AuditedRequester | AuditedEvaluator | AuditedQuerier:
    """Party B's PSI role with the feature party ``peer`` (a protocol id)."""
    record = ctx.record
    if job_unbalanced(record):
        return _unbalanced_role(ctx, ids, peer)
    return AuditedRequester(record.job_id, ids, party=ctx.roster.label, peer=peer, protocol=job_protocol(record),
                            min_key_bits=ctx.config.limits.min_key_bits, max_key_bits=ctx.config.limits.max_key_bits,
                            engine=ctx.engine, audit=_audit(ctx),
                            results=results(ctx.store, record.job_id, record.peers[peer]), **caps(ctx.config.limits))


def _unbalanced_role(ctx: JobContext, ids: list[str], peer: str) -> AuditedEvaluator | AuditedQuerier:
    """This party's side of its unbalanced alignment with ``peer`` (a protocol id): the large or the small side.

    One code path for both directions: which party is large is only a mapping
    onto the two roles (``psi.large_side``). The large side keeps its key and
    offline set per partner and dataset (:func:`offline_set`); the small side
    keeps its copy of the large side's tags under
    ``psi-offline-peer/<partner>/<dataset>/`` and queries it with a fresh
    blinding scalar per job. A feature party checks B's declared size against
    the ``psi_ids`` the job was registered with, whichever side B is.
    """
    record, config = ctx.record, ctx.config
    me, partner = record.own_id(ctx.me), record.peers[peer]
    kind = record.kind
    expected = (record.registration or {}).get("psi_ids") if kind == "feature" else None
    common: dict[str, Any] = dict(party=me, peer=peer, kind=kind, engine=ctx.engine, audit=_audit(ctx),
                                  expected_peer_size=expected, **caps(config.limits))
    if runs_large_side(record):
        key, table = offline_set(ctx, ids, partner)
        return AuditedEvaluator(record.job_id, ids, key=key, table=table, **common)
    folder = ctx.store.data_dir / "psi-offline-peer" / partner / str(record.dataset)
    try:
        cached: PeerTags | None = PeerTags.load(folder)
    except (OSError, ConfigError, ValueError, KeyError):
        cached = None

    def keep(peer_tags: PeerTags) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        peer_tags.save(folder)

    return AuditedQuerier(record.job_id, ids, cached=cached, keep=keep, **common)


def opening(role: Any) -> list[Envelope]:
    """What party B's PSI role sends first: a query when B is the small side of an unbalanced job, else nothing."""
    return role.start() if isinstance(role, UnbalancedQuerier) else []


def _key_holder(ctx: JobContext, ids: list[str], key_bits: int,
                resume_bucket: int | None) -> AuditedKeyHolder | AuditedQuerier | AuditedEvaluator:
    record, config = ctx.record, ctx.config
    if job_unbalanced(record):
        return _unbalanced_role(ctx, ids, ctx.roster.label)
    label = ctx.roster.label
    protocol = job_protocol(record)
    reuse = None
    # this partner's and dataset's key and own tags, reused across jobs; RSA only: ECDH takes a fresh scalar
    if config.psi.reuse_own_signatures and protocol == "rsa":
        reuse = OwnTagCache(ctx.store.data_dir / "psi-reuse" / record.peers[label] / str(record.dataset))
    return AuditedKeyHolder(record.job_id, ids, party=record.own_id(ctx.me), peer=label, protocol=protocol,
                            key_bits=key_bits, min_key_bits=config.limits.min_key_bits,
                            primes=config.psi.primes, engine=ctx.engine, audit=_audit(ctx),
                            expected_size_b=(record.registration or {}).get("psi_ids"),
                            bucket_ids=config.psi.bucket_ids,
                            results=results(ctx.store, record.job_id, record.peers[label]),
                            resume_bucket=resume_bucket, own_cache=reuse, **caps(config.limits))


async def start_key_holder(ctx: JobContext, resume_bucket: int | None = None) -> None:
    """A feature party: make a fresh RSA key (or ECDH scalar) for the job and publish it to party B.

    On a resume, the new session starts at the first bucket unfinished here or
    at party B (``resume_bucket``), whichever is earlier.
    """
    record = ctx.record
    if runs_large_side(record):
        # The large side may make its offline set now (its first job with this B): minutes for tens of
        # millions of IDs, so not inside B's registration or resume request. B's first request waits in
        # the runtime until the role is there.
        ctx.job.psi_started = time.perf_counter()
        ctx.spawn(_start_large_side(ctx, ctx.runtime()))
        return
    key_bits = int((record.registration or {})["psi"]["key_bits"])
    table = await asyncio.to_thread(ctx.own_table)
    holder = await asyncio.to_thread(_key_holder, ctx, table.ids, key_bits, resume_bucket)
    ctx.job.psi_started = time.perf_counter()
    await ctx.runtime().add_role("psi", holder, holder.start())


async def _start_large_side(ctx: JobContext, runtime: JobRuntime) -> None:
    """A feature party, the large side: load or make its offline set for B, then take B's query in ``runtime``."""
    record = ctx.record
    try:
        table = await asyncio.to_thread(ctx.own_table)
        role = await asyncio.to_thread(_unbalanced_role, ctx, table.ids, ctx.roster.label)
    except Exception as exc:  # noqa: BLE001 - in the background: whatever it is must fail the job, not hang it
        if not (record.finished or runtime.closed):
            await ctx.fail(f"could not make this party's offline set for the unbalanced PSI: "
                           f"{type(exc).__name__}: {exc}")
        return
    if record.finished or runtime.closed or runtime.failed:
        return  # stopped, or resumed with a new runtime (whose own start adds the role) while the set was made
    await runtime.add_role("psi", role, role.start())


def key_holder_finished(ctx: JobContext, holder: PsiKeyHolder | UnbalancedQuerier | UnbalancedEvaluator) -> None:
    """A feature party: keep its aligned rows for training and report the alignment."""
    record = ctx.record
    table = ctx.own_table()
    started, ctx.job.psi_started = ctx.job.psi_started, None
    seconds = time.perf_counter() - (started if started is not None else time.perf_counter())
    summary = alignment_summary(len(table), holder.size_b, len(holder.rows), method(record), seconds,
                                ctx.runtime().psi_bytes(), declared_size_a=holder.size_a,
                                declared_size_b=holder.declared_size_b)
    summary["buckets"] = holder.n_buckets
    summary |= unbalanced_summary(holder)
    if holder.own_cache is not None:
        summary["reused_own_signatures"] = holder.reused_buckets == holder.n_buckets
    ctx.store.save_alignment(record.job_id, [table.ids[i] for i in holder.rows])
    drop_results(ctx.store, record.job_id)
    ctx.advance(Stage.ALIGNED, alignment=summary, n_rows=len(holder.rows))
    ctx.event("aligned: %d rows shared with party B (of %d here), in %.1fs", len(holder.rows), len(table), seconds)


def unbalanced_summary(role: Any) -> dict[str, Any]:
    """What an unbalanced alignment adds to a party's report: which side it was, and what became of the offline set.

    The small side says whether it "received" the large side's set or "reused"
    its copy; the large side whether it "sent" the set or it was "current" at the partner.
    """
    if isinstance(role, UnbalancedQuerier):
        return {"offline_set": "reused" if role.reused_offline_set else "received"}
    if isinstance(role, UnbalancedEvaluator):
        return {"offline_set": "sent" if role.sent_offline_set else "current"}
    return {}


def take_joint_alignment(ctx: JobContext, ids: list[str], n_rows: int) -> None:
    """A feature party: the rows every party shares, from B (a training start, or a scorecard's binning).

    With several feature parties the job trains on the IDs all of them share with
    B: a subset of this party's pairwise intersection with B, in its order (by
    ID). Nothing else is accepted; a repeat with the same IDs changes nothing.
    """
    record = ctx.record
    pairwise = ctx.store.load_alignment(record.job_id) or []
    position = {i: n for n, i in enumerate(pairwise)}
    places = [position.get(i) for i in ids]
    if any(p is None for p in places):
        raise ProtocolError("party B's joint rows name IDs outside this party's intersection with B")
    if any(b <= a for a, b in zip(places, places[1:])):
        raise ProtocolError("party B's joint rows are not in the order of the PSI, or repeat an ID")
    if len(ids) != n_rows:
        raise ProtocolError(f"party B sends {len(ids)} joint IDs for {n_rows} rows")
    if len(ids) != len(pairwise):
        ctx.store.save_alignment(record.job_id, list(ids))
    if not (record.alignment or {}).get("pairwise_intersection"):  # a retried start keeps the first count
        ctx.update(alignment=dict(record.alignment or {}) | {"pairwise_intersection": len(pairwise),
                                                             "intersection": len(ids)})


__all__ = ["METHOD", "PSI_ROLES", "AuditedEvaluator", "AuditedKeyHolder", "AuditedQuerier",
           "AuditedRequester", "caps", "check_large_side_accepted", "check_protocol_accepted",
           "check_registered_size", "drop_results", "finished_buckets", "job_large_side", "job_protocol",
           "job_unbalanced", "key_holder_finished", "offline_set", "method", "opening", "requester", "results",
           "runs_large_side", "start_key_holder", "take_joint_alignment", "unbalanced_summary"]
