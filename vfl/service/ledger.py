"""The federation's job ledger at the services: party B writes each succeeded job; every party signs and keeps it.

Each party keeps one copy of the ledger per party B it works with, in
``<data_dir>/ledger/<party B's id>/`` (``ledger.jsonl`` and a copy of the CA
certificate; see :mod:`vfl.incentives.chain` for the format), and signs with the key of its
certificate (``[ledger]`` ``cert``/``key``, by default its TLS ones).

When a job succeeds at party B (after its contributions, if asked for):

1. B asks each feature party of the job for its view (``GET
   /v1/peer/jobs/{id}/ledger-view``: its dataset name and its model part's
   digest) and builds the entry: job id, time, model, the parties with their
   datasets and model digests, the training config's digest, the metrics and
   the contributions.
2. B brings every party's copy up to date: it asks each configured peer for its
   head (``GET /v1/peer/ledger/head``), sends a copy that lacks entries the ones
   it lacks (``POST /v1/peer/ledger/append``), and reports a copy that holds
   other entries (one that disagrees).
3. B signs the entry and asks each other party of the job to sign it (``POST
   /v1/peer/ledger/sign``). A party checks the entry against its own view first,
   and refuses (409) otherwise: the job is one it took part in with this B and
   it succeeded there; the parties and their roles are the job's; its own
   dataset name and model digest are its own; the config digest is that of its
   own copy of the training config; and the entry continues its own copy's chain.
   B checks every signature it gets (certificate issued by the CA, for that
   party, over this entry).
4. With every signature, B appends the entry to its copy and sends it to every
   configured peer (the job's parties and the others), each of which checks the
   chain and every signature against its own CA before appending it.

The job's record says what happened (``ledger``): the entry's index and digest,
who signed, whether every signature verified, where it was appended, and any
party that refused, disagreed or could not be reached. An entry is written only
when every party of the job signed it; the job itself succeeds either way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from vfl.incentives import chain
from vfl.incentives.shapley import ledger_view
from vfl.errors import JobError, LedgerConflict, LedgerError, PeerNotAllowed, VFLError
from vfl.service.logs import job_event

if TYPE_CHECKING:
    from vfl.service.node import Node
    from vfl.service.store import JobRecord

log = logging.getLogger("vfl.service")

LETTERS = {"feature": "A", "label": "B", "arbiter": "C"}


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry: dict[str, Any]


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


# -- this party's copy and key -------------------------------------------------------------------------------


def _material(node: Node) -> tuple[Path, Path, Path] | None:
    """(cert, key, ca) that sign and check ledger entries here, or None when the ledger is off or has none."""
    settings = node.config.ledger
    if not settings.enabled:
        return None
    tls = node.config.tls
    cert = settings.cert or (tls.cert if tls else None)
    key = settings.key or (tls.key if tls else None)
    ca = settings.ca or (tls.ca if tls else None)
    if cert is None or key is None or ca is None:
        return None
    return cert, key, ca


def why_off(node: Node) -> str:
    if not node.config.ledger.enabled:
        return "the ledger is off at party B ([ledger] enabled = false)"
    return ("party B has no key to sign with: plain HTTP (insecure) without [ledger] cert, key and ca; with TLS "
            "the TLS certificate and key sign")


def signer(node: Node) -> chain.Signer:
    """This party's signing identity (its certificate must be for its own party id); cached on the node."""
    cached = getattr(node, "_ledger_signer", None)
    if cached is not None:
        return cached
    material = _material(node)
    if material is None:
        raise LedgerError(f"party {node.config.party.id!r} keeps no ledger: "
                          + ("[ledger] enabled = false" if not node.config.ledger.enabled else
                             "it has no signing key (plain HTTP without [ledger] cert, key and ca)"))
    cert, key, _ = material
    node._ledger_signer = chain.Signer.from_files(cert, key, node.config.party.id)
    return node._ledger_signer


def copy_for(node: Node, label_party: str) -> chain.Ledger:
    """This party's copy of the ledger party B ``label_party`` writes (one Ledger object per folder, cached)."""
    books = node.__dict__.setdefault("_ledgers", {})
    book = books.get(label_party)
    if book is None:
        material = _material(node)
        if material is None:
            raise LedgerError(f"party {node.config.party.id!r} keeps no ledger")
        folder = Path(node.config.party.data_dir) / "ledger" / label_party
        book = chain.Ledger(folder)
        book.install_ca(material[2].read_bytes())
        books[label_party] = book
    return book


def _lock(node: Node) -> asyncio.Lock:
    lock = getattr(node, "_ledger_lock", None)
    if lock is None:
        lock = node._ledger_lock = asyncio.Lock()
    return lock


def model_digest_here(node: Node, job_id: str) -> str | None:
    """The digest of this party's model part of the job (the SHA-256 its model.json carries), or None."""
    model = node.store.load_model(job_id)
    return None if model is None else chain.model_digest(model)


# -- party B: build, sign, distribute ---------------------------------------------------------------------


def job_parties(node: Node, record: JobRecord) -> list[tuple[str, str]]:
    """(party id, role letter) of every party of the job, in roster order: feature parties, B, the arbiter."""
    roster = node.roster(record)
    if record.roster is None:  # one feature party: protocol ids A, B, C, mapped to party ids by record.peers
        return [(record.peers[p], LETTERS[roster.kind_of(p)]) for p in (*roster.features, roster.label, roster.arbiter)]
    return [(p, LETTERS[roster.kind_of(p)]) for p in (*roster.features, roster.label, roster.arbiter)]


async def record_job(node: Node, record: JobRecord) -> None:
    """Party B, after a job succeeded: build its entry, have every party sign it, append it everywhere."""
    if _material(node) is None:
        node.save(record, ledger={"entry": None, "signatures_verified": False, "reason": why_off(node)})
        return
    try:
        outcome = await _record(node, record)
    except VFLError as exc:  # the job succeeded all the same; its record says why it has no entry
        log.warning("job %s: no ledger entry: %s", record.job_id, exc)
        outcome = {"entry": None, "signatures_verified": False, "reason": str(exc)}
    node.save(record, ledger=outcome)
    if outcome.get("entry") is not None:
        job_event(record.job_id, "ledger entry %d appended (%s…), signed by %s", outcome["entry"],
                  outcome["digest"][:16], ", ".join(outcome["signed_by"]))
    else:
        job_event(record.job_id, "no ledger entry: %s", outcome.get("reason") or "; ".join(outcome["problems"]),
                  level=logging.WARNING)


async def _record(node: Node, record: JobRecord) -> dict[str, Any]:
    me = node.config.party.id
    own = signer(node)
    book = copy_for(node, me)
    ca = book.ca()
    parties = []
    problems: list[str] = []
    for party, letter in job_parties(node, record):
        if party == me:
            parties.append({"party": me, "role": "B", "dataset": record.dataset,
                            "model_digest": model_digest_here(node, record.job_id)})
        elif letter == "A":
            view = await node.client.call_json(party, "GET", f"/v1/peer/jobs/{record.job_id}/ledger-view",
                                               connect_within=node.config.limits.connect_timeout)
            parties.append({"party": party, "role": "A", "dataset": view.get("dataset"),
                            "model_digest": view.get("model_digest")})
        else:
            parties.append({"party": party, "role": letter, "dataset": None, "model_digest": None})
    fields = {"job_id": record.job_id, "time": chain.now_utc(), "model": node.training_config(record).model,
              "parties": parties, "config_digest": chain.config_digest(node.training_config(record)),
              "metrics": record.metrics, "contributions": ledger_view(record.contributions)}
    fields = tamper_hook(node, record, fields)
    signers = [p["party"] for p in parties]
    async with _lock(node):
        everyone = list(node.config.peers)
        current = {peer: await _bring_up_to_date(node, book, peer, problems) for peer in everyone}
        entry = book.draft(fields)
        signatures = {me: own.sign(entry)}
        for party in signers:
            if party == me:
                continue
            if not current.get(party):
                continue  # its copy disagrees or could not be reached: already reported
            try:
                answer = await node.client.call_json(party, "POST", "/v1/peer/ledger/sign", {"entry": entry},
                                                     connect_within=node.config.limits.connect_timeout)
            except VFLError as exc:
                problems.append(f"{party} did not sign: {exc}")
                continue
            problem = chain.signature_problem(entry, answer, ca) if isinstance(answer, dict) else "is not an object"
            if problem is None and answer.get("party") != party:
                problem = f"names party {answer.get('party')!r}"
            if problem is not None:
                problems.append(f"{party}'s signature {problem}")
                continue
            signatures[party] = answer
        missing = [p for p in signers if p not in signatures]
        base = {"digest": entry["digest"], "signed_by": [p for p in signers if p in signatures],
                "problems": problems}
        if missing:
            return {"entry": None, "signatures_verified": False, **base,
                    "reason": f"not every party signed (missing: {', '.join(missing)}), so nothing was appended"}
        entry["signatures"] = [signatures[p] for p in signers]
        await asyncio.to_thread(book.append, [entry])
        appended = [me]
        for peer in everyone:
            if not current.get(peer):
                continue
            try:
                await node.client.call_json(peer, "POST", "/v1/peer/ledger/append", {"entries": [entry]},
                                            connect_within=node.config.limits.connect_timeout)
                appended.append(peer)
            except VFLError as exc:
                problems.append(f"{peer} did not append entry {entry['index']}: {exc}")
    return {"entry": entry["index"], "signatures_verified": True, **base, "appended_at": appended}


async def _bring_up_to_date(node: Node, book: chain.Ledger, peer: str, problems: list[str]) -> bool:
    """Send ``peer`` the entries its copy lacks; False (and a problem) if its copy disagrees or it cannot be asked."""
    connect = node.config.limits.connect_timeout
    try:
        head = await node.client.call_json(peer, "GET", "/v1/peer/ledger/head", connect_within=connect)
    except VFLError as exc:
        problems.append(f"{peer}'s copy could not be checked: {exc}")
        return False
    if head.get("problems"):
        problems.append(f"{peer}'s copy does not verify there: {'; '.join(head['problems'])}")
        return False
    mine = await asyncio.to_thread(book.entries)
    count, last = int(head.get("entries", -1)), head.get("digest")
    held_here = mine[count - 1]["digest"] if 0 < count <= len(mine) else chain.GENESIS
    if count < 0 or count > len(mine) or last != held_here:
        problems.append(f"{peer}'s copy disagrees with party B's: it holds {count} entries ending in "
                        f"{str(last)[:16]}…, party B's {len(mine)} ending in "
                        f"{(mine[-1]['digest'] if mine else chain.GENESIS)[:16]}…")
        return False
    if count < len(mine):
        try:
            await node.client.call_json(peer, "POST", "/v1/peer/ledger/append", {"entries": mine[count:]},
                                        connect_within=connect)
        except VFLError as exc:
            problems.append(f"{peer}'s copy lacks entries {count}–{len(mine) - 1} and did not take them: {exc}")
            return False
    return True


def tamper_hook(node: Node, record: JobRecord, fields: dict[str, Any]) -> dict[str, Any]:
    """The entry's fields as B sends them to be signed (tests replace this to play a dishonest party B)."""
    return fields


# -- every party: its view, its head, signing and appending ------------------------------------------------


def _label_party(node: Node, caller: str) -> None:
    if node.peer_role(caller) != "B":
        raise PeerNotAllowed(f"{caller!r} is not a party B of {node.config.party.id!r}: only a party B writes a ledger")


def ledger_view_of(node: Node, job_id: str, caller: str) -> dict[str, Any]:
    """A feature party's part of the job's entry: its dataset name and its model part's digest (for the job's B)."""
    record = node.record(job_id)
    node.require_peer(record, caller, "B")
    if record.state != "succeeded":
        raise JobError(f"job {job_id} {record.state_phrase()} here; it goes into the ledger once it succeeded")
    return {"party": node.config.party.id, "dataset": record.dataset, "model_digest": model_digest_here(node, job_id)}


def head(node: Node, caller: str) -> dict[str, Any]:
    """This party's copy of ``caller``'s ledger: how many entries, the last digest, and what is wrong with it."""
    _label_party(node, caller)
    book = copy_for(node, caller)
    with book.locked():
        count, last = book.head()
        problems = [str(p) for p in book.problems()[:3]]
    return {"entries": count, "digest": last, "problems": problems}


def sign(node: Node, entry: dict[str, Any], caller: str) -> dict[str, str]:
    """Sign an entry for party B ``caller``, once it agrees with this party's own view; refuse otherwise."""
    _label_party(node, caller)
    me = node.config.party.id
    book = copy_for(node, caller)
    with book.locked():
        broken = book.problems()
        if broken:
            raise LedgerError("this party's copy of the ledger does not verify: "
                              + "; ".join(str(p) for p in broken[:3]))
        count, last = book.head()
        problems = chain.entry_problems(entry, count, last, None, signatures=False)
        if any(p.field in ("index", "previous") for p in problems):
            raise LedgerConflict(f"the entry does not continue this party's copy of the ledger, which holds {count} "
                                 f"entries ending in {last[:16]}…: " + "; ".join(str(p) for p in problems))
        if problems:
            raise LedgerError("; ".join(str(p) for p in problems))
        fields = entry["fields"]
        record = node.record(str(fields.get("job_id")))
        node.require_peer(record, caller, "B")
        if record.state != "succeeded":
            raise JobError(f"job {record.job_id} {record.state_phrase()} here: it is not signed as finished")
        named = [(p.get("party"), p.get("role")) for p in fields.get("parties") or []]
        expected = job_parties(node, record)
        if sorted(named) != sorted(expected):
            raise LedgerError(f"the entry names the parties {named}; job {record.job_id} has {expected} here")
        mine = next(p for p in fields["parties"] if p.get("party") == me)
        model = model_digest_here(node, record.job_id) if node.party == "A" else None
        dataset = record.dataset if node.party == "A" else None
        if mine.get("dataset") != dataset:
            raise LedgerError(f"the entry gives this party's dataset as {mine.get('dataset')!r}; it is {dataset!r}")
        if mine.get("model_digest") != model:
            raise LedgerError(f"the entry gives this party's model digest as {str(mine.get('model_digest'))[:16]}…; "
                              f"its model part of job {record.job_id} digests to {str(model)[:16]}…")
        config = node.training_config(record)
        if fields.get("config_digest") != chain.config_digest(config) or fields.get("model") != config.model:
            raise LedgerError(f"the entry's training config is not the one this party trained job {record.job_id} with")
        signature = signer(node).sign(entry)
    job_event(record.job_id, "signed ledger entry %d for party B (%s)", entry["index"], caller)
    return signature


def append(node: Node, entries: list[dict[str, Any]], caller: str) -> dict[str, Any]:
    """Append fully signed entries from party B ``caller``, each checked against this party's CA and chain."""
    _label_party(node, caller)
    count, last = copy_for(node, caller).append(entries)
    return {"entries": count, "digest": last}


def note_entries(node: Node, entries: list[dict[str, Any]]) -> None:
    """Each job of ours that an appended entry records says so in its record (in the event loop, not a thread)."""
    from vfl.service.store import DamagedJobRecord

    for entry in entries:
        record = node.records.get(str((entry.get("fields") or {}).get("job_id")))
        if record is not None and not isinstance(record, DamagedJobRecord):
            node.save(record, ledger={"entry": entry["index"], "digest": entry["digest"], "signatures_verified": True,
                                      "signed_by": chain.signers_of(entry)})


def install(app: FastAPI, node: Node) -> None:
    """The ledger's peer routes, at every party."""
    from fastapi import Depends

    from vfl.service.api import peer_id

    caller_dependency = Depends(peer_id)  # the peer's party id, from its certificate (see vfl.service.api)

    @app.get("/v1/peer/ledger/head", tags=["peer"], summary="This party's copy of party B's ledger: entries and last digest")
    async def ledger_head(caller: str = caller_dependency) -> dict[str, Any]:
        return await asyncio.to_thread(head, node, caller)

    @app.post("/v1/peer/ledger/sign", tags=["peer"],
              summary="Party B: sign a job's ledger entry (checked against this party's own view first)")
    async def ledger_sign(body: SignRequest, caller: str = caller_dependency) -> dict[str, str]:
        return await asyncio.to_thread(sign, node, body.entry, caller)

    @app.post("/v1/peer/ledger/append", tags=["peer"],
              summary="Party B: append fully signed entries (chain and every signature checked against the CA)")
    async def ledger_append(body: AppendRequest, caller: str = caller_dependency) -> dict[str, Any]:
        answer = await asyncio.to_thread(append, node, body.entries, caller)
        note_entries(node, body.entries)
        return answer

    if node.party == "A":

        @app.get("/v1/peer/jobs/{job_id}/ledger-view", tags=["peer"],
                 summary="This party's dataset name and model digest for the job's ledger entry")
        async def ledger_view_route(job_id: str, caller: str = caller_dependency) -> dict[str, Any]:
            return await asyncio.to_thread(ledger_view_of, node, job_id, caller)


__all__ = ["install", "record_job", "copy_for", "signer"]
