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

Neither reveals anything of another party: the peers' ids are in the record already, and
"party-a did not answer since 12:03:11" is what this service saw itself.
"""

from __future__ import annotations

from typing import Any

from vfl.report.progress import waiting_text
from vfl.service.record import JobRecord

#: How a succeeded job's stop reason reads after "... at epoch 12 of 30".
STOPPED_HOW = {"early_stopping": "stopped early", "converged": "converged", "max_epochs": "finished"}


def progress(record: JobRecord) -> dict[str, Any]:
    """How far the job is: ``{"fraction": 0..1, "text": ...}`` (a succeeded job is always 1)."""
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


def job_status(record: JobRecord, waiting_for: list[dict[str, Any]]) -> dict[str, Any]:
    """The record as JSON, with ``progress`` and ``waiting_for`` (see the module's docstring)."""
    status = record.model_dump(mode="json")
    status["progress"] = progress(record)
    status["waiting_for"] = [] if record.finished else waiting_for
    return status


__all__ = ["STOPPED_HOW", "job_status", "progress", "waiting_text"]
