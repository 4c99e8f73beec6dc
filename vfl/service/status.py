"""A job's status as the REST API, the CLI and the dashboard show it: its record plus what is live now.

``GET /v1/jobs`` and ``GET /v1/jobs/{id}`` answer the record (:class:`~vfl.service.record.JobRecord`)
with two fields that are not saved, because they describe this moment:

``progress``
    ``{"fraction", "text"}``: how far the job is, 0 to 1, and in words. A job that succeeded
    is done (1.0) whatever epoch it stopped at: "stopped early at epoch 12 of 30" (or
    "converged at epoch 12 of 30"), never a bar 40 % full. While a long step runs beyond the
    epochs (contributions), the text says which: "contributions: coalition 1 of 3 ...".
``waiting_for``
    the job's peers that this service's calls are retrying right now, each
    ``{"peer", "state", "since", "fails_at", "problem"}`` (Unix times): a peer that stopped
    answering shows at once, not after ``limits.peer_timeout``, and goes as soon as it answers.
    Empty for a finished job.
``progress.psi``
    while the job aligns: for each PSI this party runs (party B: one per feature party; a feature
    party: its one with B), the buckets finished of all, and in the running bucket the chunks
    handled of all: ``{"peer", "buckets_done", "buckets", "chunks_done", "chunks", "ids_done", "ids"}``.
    The progress text says the same in words ("PSI with party-a: bucket 2 of 3, 5 of 8 chunks").
``party_timings``
    how long each stage took at each party, and training's compute against waiting
    (:mod:`vfl.service.timings`): this party's own, and at party B each peer's, or why not.

None reveals anything of another party: the peers' ids are in the record already, and
"party-a did not answer since 12:03:11" is what this service saw itself.
"""

from __future__ import annotations

from typing import Any

from vfl.report.progress import waiting_text
from vfl.service.record import JobRecord
from vfl.service.timings import party_timings

#: How a succeeded job's stop reason reads after "... at epoch 12 of 30".
STOPPED_HOW = {"early_stopping": "stopped early", "converged": "converged", "max_epochs": "finished"}


def psi_progress(record: JobRecord, roles: dict[str, Any]) -> list[dict[str, Any]]:
    """While the job aligns: how far each of this party's PSI roles is (read from the roles, changing nothing).

    ``roles`` are the job's runtime roles by name: "psi" (a feature party's, with B) or "psi:<protocol id>"
    (party B's, one per feature party). A role with no bucket counter (the unbalanced ECDH PSI) reports its
    IDs done as one bucket.
    """
    if record.state != "aligning":
        return []
    entries = []
    for name, role in list(roles.items()):
        if name != "psi" and not name.startswith("psi:"):
            continue
        peer = record.peers.get(name[4:], name[4:]) if name != "psi" else record.party_id("label")
        counter = getattr(role, "bucket_progress", None)
        if callable(counter):
            buckets_done, buckets, chunks_done, chunks, ids_done, ids = counter()
        else:
            ids_done, ids = getattr(role, "progress", (0, 0))
            buckets_done, buckets, chunks_done, chunks = int(bool(role.done)), 1, 0, 0
        entries.append({"peer": peer, "buckets_done": int(buckets_done), "buckets": int(buckets),
                        "chunks_done": int(chunks_done), "chunks": int(chunks), "ids_done": int(ids_done),
                        "ids": int(ids)})
    return entries


def psi_text(entry: dict[str, Any]) -> str:
    """One PSI's progress in words: "PSI with party-a: bucket 2 of 3, 5 of 8 chunks"."""
    if entry["buckets"] == 0:
        return f"PSI with {entry['peer']}: waiting for its key"
    if entry["buckets_done"] >= entry["buckets"]:
        return f"PSI with {entry['peer']}: {entry['buckets']} of {entry['buckets']} buckets done"
    text = f"PSI with {entry['peer']}: bucket {entry['buckets_done'] + 1} of {entry['buckets']}"
    if entry["chunks"]:
        text += f", {entry['chunks_done']} of {entry['chunks']} chunks"
    elif entry["ids"]:
        text += f", {entry['ids_done']} of {entry['ids']} IDs"
    return text


def progress(record: JobRecord, psi: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """How far the job is: ``{"fraction": 0..1, "text": ...}`` (a succeeded job is always 1); ``psi`` while
    it aligns (see :func:`psi_progress`)."""
    if psi:
        return {"fraction": 0.0, "text": "; ".join(psi_text(entry) for entry in psi), "psi": psi}
    epoch, most = record.epoch, record.max_epochs
    if record.state == "succeeded":
        how = STOPPED_HOW.get(record.stop_reason or "", "finished")
        if most and epoch < most:
            text = f"{how} at epoch {epoch} of {most}"
        elif most:
            text = f"{epoch} of {most} epochs"
        else:
            text = "done"
        return {"fraction": 1.0, "text": text}
    if record.state in ("failed", "cancelled", "damaged"):
        text = f"{record.state} at epoch {epoch} of {most}" if most else str(record.state)
        return {"fraction": min(1.0, epoch / most) if most else 0.0, "text": text}
    if record.activity:
        return {"fraction": min(1.0, epoch / most) if most else 0.0, "text": record.activity}
    if most:
        return {"fraction": min(1.0, epoch / most), "text": f"epoch {epoch} of {most}"}
    return {"fraction": 0.0, "text": "aligning" if record.state == "aligning" else str(record.state)}


def job_status(record: JobRecord, waiting_for: list[dict[str, Any]], *, me: str | None = None,
               roles: dict[str, Any] | None = None, live_compute: float | None = None) -> dict[str, Any]:
    """The record as JSON, with ``progress``, ``waiting_for`` and ``party_timings`` (see the module's docstring).

    ``roles`` are the job's live runtime roles (for the PSI's progress), ``live_compute`` the training
    compute its runtime measured so far, ``me`` this party's id.
    """
    status = record.model_dump(mode="json")
    status.pop("peer_timings", None)  # shown in party_timings, with this party's own
    status["progress"] = progress(record, psi_progress(record, roles or {}))
    status["waiting_for"] = [] if record.finished else waiting_for
    if me is not None:
        status["party_timings"] = party_timings(record, me, live_compute)
    return status


__all__ = ["STOPPED_HOW", "job_status", "progress", "psi_progress", "psi_text", "waiting_text"]
