"""Party B writes a succeeded job into the federation's ledger: every party of the job signs, every peer keeps it.

After the job's contributions, if asked for:

1. B asks each feature party of the job for its view (``GET
   /v1/peer/jobs/{id}/ledger-view``: its dataset name and its model part's
   digest) and builds the entry (:func:`entry_fields`): job id, time, model, the
   parties with their datasets and model digests, the training config's digest,
   the metrics and the contributions.
2. B brings every party's copy up to date: it asks each configured peer for its
   head, sends a copy that lacks entries the ones it lacks, and reports a copy
   that holds other entries (one that disagrees).
3. B signs the entry and asks each other party of the job to sign it; each
   checks it against its own view first (:mod:`vfl.service.ledger_copies`). B
   checks every signature it gets (certificate issued by the CA, for that party,
   over this entry).
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
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vfl.errors import VFLError
from vfl.incentives import chain
from vfl.incentives.shapley import ledger_view
from vfl.service.context import JobContext
from vfl.service.ledger_copies import job_parties

log = logging.getLogger("vfl.service")


async def run(ctx: JobContext) -> None:
    """Build the job's entry, have every party sign it, append it everywhere (or say why not)."""
    record = ctx.record
    if ctx.job.started is not None:  # the job's total time ends where its ledger entry begins
        record.timings["total"] = round(time.perf_counter() - ctx.job.started, 3)
    signing = time.perf_counter()
    await record_entry(ctx, entry_fields)
    record.timings["ledger"] = round(time.perf_counter() - signing, 3)
    ctx.update()


async def entry_fields(ctx: JobContext) -> dict[str, Any]:
    """The entry's fields, as party B sends them to be signed (each party checks its own part)."""
    record, me = ctx.record, ctx.me
    parties = []
    for party, letter in job_parties(record):
        if party == me:
            parties.append({"party": me, "role": "B", "dataset": record.dataset,
                            "model_digest": ctx.ledgers.model_digest(record.job_id)})
        elif letter == "A":
            view = await ctx.client.call_json(party, "GET", f"/v1/peer/jobs/{record.job_id}/ledger-view",
                                              connect_within=ctx.config.limits.connect_timeout)
            parties.append({"party": party, "role": "A", "dataset": view.get("dataset"),
                            "model_digest": view.get("model_digest")})
        else:
            parties.append({"party": party, "role": letter, "dataset": None, "model_digest": None})
    config = ctx.training_config()
    return {"job_id": record.job_id, "time": chain.now_utc(), "model": config.model, "parties": parties,
            "config_digest": chain.config_digest(config), "metrics": record.metrics,
            "contributions": ledger_view(record.contributions)}


async def record_entry(ctx: JobContext, build: Callable[[JobContext], Awaitable[dict[str, Any]]]) -> None:
    """Have the fields ``build`` makes signed by every party and appended everywhere; the record says what happened.

    A party B that lies about an entry is this step with another ``build``: the
    other parties' checks, not B's honesty, keep the ledger true.
    """
    if ctx.ledgers.material() is None:
        ctx.update(ledger={"entry": None, "signatures_verified": False, "reason": ctx.ledgers.why_off()})
        return
    try:
        outcome = await _sign_and_append(ctx, await build(ctx))
    except VFLError as exc:  # the job succeeded all the same; its record says why it has no entry
        log.warning("job %s: no ledger entry: %s", ctx.record.job_id, exc)
        outcome = {"entry": None, "signatures_verified": False, "reason": str(exc)}
    ctx.update(ledger=outcome)
    if outcome.get("entry") is not None:
        ctx.event("ledger entry %d appended (%s…), signed by %s", outcome["entry"], outcome["digest"][:16],
                  ", ".join(outcome["signed_by"]))
    else:
        ctx.event("no ledger entry: %s", outcome.get("reason") or "; ".join(outcome["problems"]),
                  level=logging.WARNING)


async def _sign_and_append(ctx: JobContext, fields: dict[str, Any]) -> dict[str, Any]:
    me, copies = ctx.me, ctx.ledgers
    own = copies.signer()
    book = copies.copy_for(me)
    ca = book.ca()
    problems: list[str] = []
    signers = [p["party"] for p in fields["parties"]]
    connect = ctx.config.limits.connect_timeout
    async with copies.writing:
        everyone = list(ctx.config.peers)
        current = {peer: await _bring_up_to_date(ctx, book, peer, problems) for peer in everyone}
        entry = book.draft(fields)
        signatures = {me: own.sign(entry)}
        for party in signers:
            if party == me or not current.get(party):
                continue  # its copy disagrees or could not be reached: already reported
            try:
                answer = await ctx.client.call_json(party, "POST", "/v1/peer/ledger/sign", {"entry": entry},
                                                    connect_within=connect)
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
                await ctx.client.call_json(peer, "POST", "/v1/peer/ledger/append", {"entries": [entry]},
                                           connect_within=connect)
                appended.append(peer)
            except VFLError as exc:
                problems.append(f"{peer} did not append entry {entry['index']}: {exc}")
    return {"entry": entry["index"], "signatures_verified": True, **base, "appended_at": appended}


async def _bring_up_to_date(ctx: JobContext, book: chain.Ledger, peer: str, problems: list[str]) -> bool:
    """Send ``peer`` the entries its copy lacks; False (and a problem) if its copy disagrees or it cannot be asked."""
    connect = ctx.config.limits.connect_timeout
    try:
        head = await ctx.client.call_json(peer, "GET", "/v1/peer/ledger/head", connect_within=connect)
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
            await ctx.client.call_json(peer, "POST", "/v1/peer/ledger/append", {"entries": mine[count:]},
                                       connect_within=connect)
        except VFLError as exc:
            problems.append(f"{peer}'s copy lacks entries {count}–{len(mine) - 1} and did not take them: {exc}")
            return False
    return True


__all__ = ["entry_fields", "record_entry", "run"]
