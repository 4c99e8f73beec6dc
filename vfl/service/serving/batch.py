"""Batch scoring at party B: many IDs scored in the background, in chunks, resumable and cancellable.

``POST /v1/jobs/{job_id}/score-batch`` takes a :class:`~vfl.service.spec.BatchRequest`
and answers with the batch's status at once; the scoring runs as a background
task of the service (so shutting the service down stops it). Each chunk of
``chunk_rows`` IDs goes through :func:`vfl.service.serving.scoring.predict`, the same
function the predict route uses, so a batch answers exactly what one predict
call on the same IDs would. Reading and writing in chunks is
:mod:`vfl.data.chunks`'s, shared with ``vfl score``.

State, per batch, in ``<data_dir>/jobs/<job_id>/batches/<batch_id>.json``
(checksummed, written atomically and fsynced after every chunk): the request,
``state`` (queued → running → succeeded | failed | cancelled), ``chunks_done``,
``rows_done``, ``rows_total`` (Parquet and datasets; null for CSV), counts per
status, the error, timestamps and the output path.

* **Idempotent.** ``batch_id`` hashes the job id, the normalised request and the
  input file's size and mtime. A repeated request for a batch that is running or
  has succeeded (with its output still in place) returns it and scores nothing.
* **Resumable.** A repeated request for a batch that failed, was cancelled or was
  running when party B stopped continues after its last completed chunk: the
  partial output is kept beside ``output.path`` (see :mod:`vfl.data.chunks` for the
  CSV and Parquet layouts), so no chunk is scored twice.
* **Cancellable.** ``.../cancel`` stops after the chunk in hand; nothing is
  published at ``output.path``.
* A batch whose state says running while no task of this service runs it (party
  B stopped mid-batch) is reported as failed, with how to resume.

Dataset inputs read their IDs through the party's datasets
(:class:`~vfl.service.datasets.Datasets`): CSV, Parquet and SQL alike. The batch id of a
file dataset takes the file's size and mtime, that of a database table a hash
of its IDs (read once at submission).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, Field

from vfl.data import chunks
from vfl.files import Confined, open_at, private_folder
from vfl.errors import ConfigError, DataError, JobError, LimitExceeded, UnknownJobError, VFLError
from vfl.service.context import JobContext
from vfl.service.jobs import BatchRun
from vfl.service.record import JobRecord
from vfl.service.serving import scoring
from vfl.service.spec import BatchRequest
from vfl.files import DamagedFile, atomic_write_json, read_json

log = logging.getLogger("vfl.service")

BatchState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
#: What an ID that party B does not hold is answered, when scoring.predict refuses such IDs outright.


class Batch(BaseModel):
    batch_id: str
    job_id: str
    request: dict[str, Any]
    state: BatchState = "queued"
    chunks_done: int = 0
    rows_done: int = 0
    rows_total: int | None = None
    counts: dict[str, int] = Field(default_factory=dict, description="output rows per status")
    output: str
    format: str
    error: str | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = Field(default_factory=time.time)
    runs: int = Field(0, description="how many times the batch was started (1 + resumes)")
    progress: dict[str, Any] = Field(default_factory=dict, description="vfl.data.chunks.Progress, for resuming")

    def view(self, live: bool) -> dict[str, Any]:
        """What the status routes answer: the batch without its resume internals."""
        data = self.model_dump(mode="json", exclude={"progress"})
        if self.state in ("queued", "running") and not live:
            data["state"] = "failed"
            data["error"] = (f"party B stopped while this batch ran ({self.chunks_done} chunks done); "
                             "repeat the same request to resume from there")
        return data


def _folder(ctx: JobContext) -> Path:
    return ctx.store.job_dir(ctx.record.job_id) / "batches"


def _save(ctx: JobContext, batch: Batch) -> None:
    batch.updated_at = time.time()
    atomic_write_json(_folder(ctx) / f"{batch.batch_id}.json", batch.model_dump(mode="json"))


def _load(ctx: JobContext, batch_id: str) -> Batch | None:
    file = _folder(ctx) / f"{batch_id}.json"
    if not file.is_file():
        return None
    try:
        return Batch.model_validate(read_json(file))
    except (DamagedFile, ValueError) as exc:
        raise JobError(f"batch {batch_id}: {file} cannot be read ({exc}); delete it to start the batch over") from None


# -- the routes' functions -------------------------------------------------------------------------


async def submit(ctx: JobContext, request: BatchRequest) -> dict[str, Any]:
    """Start the batch, resume it, or return it as it is when it runs or has succeeded."""
    record = _succeeded_job(ctx)
    job_id = record.job_id
    limit = ctx.config.limits.max_vector_length
    if request.chunk_rows > limit:
        raise LimitExceeded(f"chunk_rows={request.chunk_rows} exceeds this service's limit of {limit} IDs per "
                            "request (limits.max_vector_length); choose a smaller chunk_rows")
    source_file, normalised = _resolve(ctx, request)
    output = Path(normalised["output"]["path"])
    fmt = chunks.file_format(output, "output.path")
    if source_file is not None and source_file == output:
        raise ConfigError(f"output.path {output} is the input file; choose another output path")
    _check_output_folder(ctx, output)
    if request.input.path is not None:
        identity = await asyncio.to_thread(_check_input, ctx, request, source_file)
    elif source_file is not None:  # a dataset file: the party's own, by name
        identity = chunks.file_identity(source_file)
    else:  # a database table has no size or mtime: its IDs are the identity
        identity = await asyncio.to_thread(_table_identity, ctx, request.input.dataset or "")
    batch_id = "batch-" + chunks.fingerprint(job_id, normalised, identity)
    runs = ctx.job.batches
    existing = _load(ctx, batch_id)
    if batch_id in runs and existing is not None:
        return existing.view(live=True)
    if existing is not None and existing.state == "succeeded" and _published(ctx, output):
        return existing.view(live=False)
    busy = [b for b in list_batches(ctx) if b["batch_id"] in runs and b["output"] == str(output)]
    if busy:
        raise JobError(f"batch {busy[0]['batch_id']} is writing {output} right now; wait for it, cancel it, "
                       "or choose another output path")
    batch = existing or Batch(batch_id=batch_id, job_id=record.job_id, request=normalised, output=str(output),
                              format=fmt)
    if batch.state == "succeeded":  # its output was removed since: score it again from the start
        batch.progress, batch.chunks_done, batch.rows_done, batch.counts = {}, 0, 0, {}
    batch.state, batch.error, batch.finished_at = "queued", None, None
    _save(ctx, batch)
    runs[batch_id] = BatchRun()
    ctx.spawn(_run(ctx, batch, runs[batch_id]))
    return batch.view(live=True)


def status(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    batch = _load(ctx, batch_id)
    if batch is None:
        raise UnknownJobError(f"job {ctx.record.job_id} has no batch {batch_id!r} at party B")
    return batch.view(live=batch_id in ctx.job.batches)


def list_batches(ctx: JobContext) -> list[dict[str, Any]]:
    runs = ctx.job.batches
    out = []
    for file in sorted(_folder(ctx).glob("batch-*.json")):
        batch = _load(ctx, file.stem)
        if batch is not None:
            out.append(batch.view(live=batch.batch_id in runs))
    return sorted(out, key=lambda b: b["created_at"])


def cancel(ctx: JobContext, batch_id: str) -> dict[str, Any]:
    """Stop the batch after the chunk in hand; its partial output is kept for a resume, never published."""
    current = status(ctx, batch_id)
    run = ctx.job.batches.get(batch_id)
    if run is None:
        raise JobError(f"batch {batch_id} is not running (it is {current['state']}); nothing to cancel")
    run.cancel = True
    return current


def result(ctx: JobContext, batch_id: str) -> tuple[Path, str]:
    """The finished output's path and media type."""
    current = status(ctx, batch_id)
    path = Path(current["output"])
    if current["state"] != "succeeded":
        raise JobError(f"batch {batch_id} is {current['state']} ({current['rows_done']} rows done); its result "
                       "can be downloaded once it has succeeded")
    if not _published(ctx, path):
        raise JobError(f"batch {batch_id} succeeded, but its output {path} is gone; repeat the request to score again")
    return path, MEDIA_TYPES[current["format"]]


# -- checks -------------------------------------------------------------------------------------------


def _succeeded_job(ctx: JobContext) -> JobRecord:
    if ctx.kind != "label":
        raise ConfigError("batches are scored by party B")
    record = ctx.record
    if record.state != "succeeded":
        raise JobError(f"job {record.job_id} is {record.state}; only a succeeded job can score. Wait for it to succeed "
                       "or submit it again")
    return record


def _folder_of(ctx: JobContext, which: str) -> Confined:
    """Party B's batch input or output folder ([scoring] batch_inputs / batch_outputs; made under data_dir if unset)."""
    scoring = ctx.config.scoring
    configured = scoring.batch_inputs if which == "inputs" else scoring.batch_outputs
    root = configured or private_folder(Path(ctx.config.party.data_dir) / "batch" / which)
    return Confined(root, f"[scoring] batch_{which}")


def _inside(folder: Confined, text: str, what: str) -> Path:
    """The absolute path of ``text`` inside ``folder``; ConfigError (with the fix) if it leads outside."""
    try:
        return folder.root / folder.locate(text, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _resolve(ctx: JobContext, request: BatchRequest) -> tuple[Path | None, dict[str, Any]]:
    """The file the IDs come from (None for a database dataset), and the request as its batch id spells it."""
    data = request.model_dump(mode="json")
    data["output"]["path"] = str(_inside(_folder_of(ctx, "outputs"), request.output.path, "output.path"))
    if request.input.dataset is not None:
        dataset = ctx.config.datasets.get(request.input.dataset)
        if dataset is None:
            known = ", ".join(sorted(ctx.config.datasets)) or "none"
            raise DataError(f"party B has no dataset named {request.input.dataset!r}; it has: {known}")
        data["input"] = {"dataset": request.input.dataset}
        return (None if dataset.path is None else Path(dataset.path)), data
    source = _inside(_folder_of(ctx, "inputs"), request.input.path or "", "input.path")
    data["input"] = {"path": str(source), "id_column": request.input.id_column}
    return source, data


def _opened_in(folder: Confined, path: Path, what: str) -> Callable[[], BinaryIO]:
    """An opener of ``path`` inside ``folder`` that follows no symbolic link, on the way or at the end."""
    relative = path.relative_to(folder.root)

    def opener() -> BinaryIO:
        try:
            parent = folder.open_folder(relative.parent)
            try:
                return os.fdopen(open_at(parent, relative.name, os.O_RDONLY), "rb")
            finally:
                os.close(parent)
        except FileNotFoundError:
            raise DataError(f"{what} {path}: file not found in {folder.root} ({folder.setting})") from None
        except OSError as exc:  # ELOOP or ENOTDIR: a symbolic link on the way, or not a file
            raise DataError(f"{what} {path}: not a plain file in {folder.root} (the service follows no symbolic "
                            f"link): {exc.strerror or exc}") from None

    return opener


def _check_input(ctx: JobContext, request: BatchRequest, source: Path) -> dict[str, int]:
    """The input's suffix and ID column (its columns are not echoed), and its identity (size, modification time)."""
    opener = _opened_in(_folder_of(ctx, "inputs"), source, "input.path")
    chunks.FileIds(source, request.input.id_column or "id", request.chunk_rows, opener=opener, echo=False)
    with opener() as handle:
        found = os.fstat(handle.fileno())
    return {"size": found.st_size, "mtime_ns": found.st_mtime_ns}


def _check_output_folder(ctx: JobContext, output: Path) -> None:
    folder = _folder_of(ctx, "outputs")
    try:
        os.close(folder.open_folder(output.parent.relative_to(folder.root)))
    except OSError as exc:
        raise ConfigError(f"output.path {output}: its folder is missing or not a plain folder in {folder.root} "
                          f"({folder.setting}): {exc.strerror or exc}") from None


def _published(ctx: JobContext, output: Path) -> bool:
    """Whether the output file is in place, a plain file (not a link planted since)."""
    try:
        return stat.S_ISREG(os.lstat(output).st_mode)
    except OSError:
        return False


def _table_identity(ctx: JobContext, name: str) -> dict[str, Any]:
    ids = ctx.data.table(name).ids
    return {"rows": len(ids), "ids": chunks.fingerprint(ids)}


def _source(ctx: JobContext, batch: Batch, chunk_rows: int) -> chunks.FileIds | chunks.ListIds:
    spec = batch.request["input"]
    if "dataset" in spec:
        # The party's datasets (CSV, Parquet or SQL) keep the table in memory anyway.
        return chunks.ListIds(ctx.data.table(spec["dataset"]).ids, chunk_rows)
    path = Path(spec["path"])
    opener = _opened_in(_folder_of(ctx, "inputs"), path, "input.path")
    return chunks.FileIds(path, spec["id_column"], chunk_rows, opener=opener, echo=False)


# -- the background task ------------------------------------------------------------------------------


async def _run(ctx: JobContext, batch: Batch, run: BatchRun) -> None:
    progress = chunks.Progress.from_dict(batch.progress)
    chunk_rows = int(batch.request["chunk_rows"])

    def checkpoint(done: chunks.Progress) -> None:
        batch.progress = done.to_dict()
        batch.chunks_done, batch.rows_done, batch.counts = done.chunks_done, done.rows_done, dict(done.counts)
        _save(ctx, batch)  # atomic and fsynced: the partial output up to here is what a resume keeps

    try:
        source = await asyncio.to_thread(_source, ctx, batch, chunk_rows)
        batch.rows_total = await asyncio.to_thread(lambda: source.rows_total)
        batch.state, batch.started_at, batch.runs = "running", time.time(), batch.runs + 1
        _save(ctx, batch)
        with _writer(ctx, batch) as writer:
            finished = await chunks.score_chunks(
                source, writer, progress, lambda ids: scoring.predict(ctx, ids),
                checkpoint=checkpoint, stop=lambda: run.cancel,
            )
            if finished:
                await asyncio.to_thread(writer.publish, progress.columns)
        batch.state = "succeeded" if finished else "cancelled"
        if not finished:
            batch.error = "cancelled by an orchestration call; repeat the request to resume"
        batch.finished_at = time.time()
        _save(ctx, batch)
        log.info("job %s: batch %s %s after %d rows", batch.job_id, batch.batch_id, batch.state, batch.rows_done)
    except asyncio.CancelledError:  # the service is shutting down
        _stopped(ctx, batch, "party B shut down while the batch ran; repeat the request to resume")
        raise
    except VFLError as exc:
        _stopped(ctx, batch, f"{type(exc).__name__}: {exc}; repeat the request to resume after the last chunk done")
    except Exception as exc:  # noqa: BLE001 - a background task must record why it stopped
        log.exception("job %s: batch %s failed", batch.job_id, batch.batch_id)
        _stopped(ctx, batch, f"{type(exc).__name__}: {exc}")
    finally:
        if ctx.job.batches.get(batch.batch_id) is run:
            del ctx.job.batches[batch.batch_id]


def _writer(ctx: JobContext, batch: Batch) -> chunks.ResultWriter:
    """The batch's writer, working in its output folder, opened without following a link."""
    folder = _folder_of(ctx, "outputs")
    output = Path(batch.output)
    try:
        descriptor = folder.open_folder(output.parent.relative_to(folder.root))
    except OSError as exc:
        raise DataError(f"output.path {output}: its folder is gone or not a plain folder in {folder.root}: "
                        f"{exc.strerror or exc}") from None
    try:
        return chunks.ResultWriter(output, batch.batch_id, folder=descriptor)
    finally:
        os.close(descriptor)


def _stopped(ctx: JobContext, batch: Batch, reason: str) -> None:
    batch.state, batch.error, batch.finished_at = "failed", reason, time.time()
    try:
        _save(ctx, batch)
    except OSError as exc:
        log.error("job %s: batch %s: cannot record its failure (%s): %s", batch.job_id, batch.batch_id, exc, reason)


__all__ = ["Batch", "submit", "status", "list_batches", "cancel", "result"]
