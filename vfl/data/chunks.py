"""Chunked scoring of many IDs: read IDs in chunks, write results incrementally, resume after a stop.

One place for what party B's background batches (:mod:`vfl.service.serving.batch`) and
``vfl score`` (:mod:`vfl.cli.score`) share, so memory stays flat with 10M IDs and a
stopped run continues where it left off:

* :class:`FileIds` / :class:`ListIds`: the input, one chunk of ``chunk_rows`` IDs
  at a time (CSV through ``pandas.read_csv(chunksize=...)``, Parquet through
  ``pyarrow.parquet.ParquetFile.iter_batches``); IDs follow :mod:`vfl.data.ids`.
* :class:`ResultWriter`: the output, written next to its final path and renamed
  into place only when every chunk is done, so a reader never sees half a file:

  - CSV: one file ``<out>.<tag>.partial``, appended to and fsynced per chunk;
    its length after each chunk is recorded, and a resume first cuts the file
    back to the recorded length (a chunk written but not yet recorded is dropped
    and scored again, never written twice). Publishing renames it to ``<out>``.
  - Parquet: a folder ``<out>.<tag>.partial/`` with one ``part-NNNNNN.parquet``
    per chunk (a Parquet file cannot be appended to once closed). Publishing
    streams the parts, one at a time, into a single file with
    ``pyarrow.parquet.ParquetWriter`` (one row group per chunk) and renames it
    to ``<out>``.
* :class:`Progress`: chunks and rows done, counts per status, the columns, the
  partial file's length; the caller stores it durably after every chunk.
* :func:`score_chunks`: the loop itself, given an async ``score(ids)`` that
  answers like party B's ``POST /v1/jobs/{id}/predict``.

Output columns: ``id, score, label, status``, plus ``threshold`` when the first
answer carries one. IDs that are not scored have an empty score and label.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vfl.data.ids import normalize_id
from vfl.errors import ConfigError, DataError, ProtocolError
from vfl.files import FILE_MODE

FORMATS = {".csv": "csv", ".parquet": "parquet"}
BASE_COLUMNS = ["id", "score", "label", "status"]


def file_format(path: Path, what: str) -> str:
    """``csv`` or ``parquet``, by the file's suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{what} {path}: name a .csv or .parquet file (the format follows the suffix)")
    return fmt


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts``: the identity of a run, for idempotence and resume."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_identity(path: Path) -> dict[str, int]:
    """Size and modification time: a changed input file is a different run."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def check_output(output: Path, inputs: list[Path]) -> str:
    """The output's format; refuses a missing folder or an output that is one of the inputs."""
    fmt = file_format(output, "output")
    if not output.parent.is_dir():
        raise ConfigError(f"output {output}: the folder {output.parent} does not exist; create it or choose another")
    for source in inputs:
        if output.resolve() == source.resolve():
            raise ConfigError(f"output {output} is the input file; choose another output path")
    return fmt


# -- input ------------------------------------------------------------------------------------


class FileIds:
    """The IDs in column ``id_column`` of a CSV or Parquet file, ``chunk_rows`` at a time."""

    def __init__(self, path: Path, id_column: str, chunk_rows: int) -> None:
        self.path = Path(path)
        self.id_column = id_column
        self.chunk_rows = chunk_rows
        if not self.path.is_file():
            raise DataError(f"input {self.path}: file not found; check the path (it is read where the scoring runs)")
        self.format = file_format(self.path, "input")
        columns = self._columns()
        if id_column not in columns:
            shown = ", ".join(repr(c) for c in columns[:10]) or "none"
            raise DataError(f"input {self.path}: no ID column {id_column!r}; its columns are {shown}. "
                            "Name the right one (id_column, or --id-column)")

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
                raise DataError(f"input {self.path}: not a readable Parquet file ({exc})") from exc
        import pandas as pd

        try:
            return [str(c) for c in pd.read_csv(self.path, nrows=0).columns]
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"input {self.path}: not a CSV file with a header row ({exc})") from exc

    @property
    def rows_total(self) -> int | None:
        """Known cheaply for Parquet (its footer); None for CSV, which would have to be read through."""
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(self.path).metadata.num_rows)

    def _raw_chunks(self) -> Iterator[list[Any]]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pending: list[Any] = []
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.chunk_rows, columns=[self.id_column]):
                pending.extend(batch.column(0).to_pylist())  # batches end at row groups: re-cut to chunk_rows
                while len(pending) >= self.chunk_rows:
                    yield pending[: self.chunk_rows]
                    pending = pending[self.chunk_rows :]
            if pending:
                yield pending
            return
        import pandas as pd

        reader = pd.read_csv(self.path, usecols=[self.id_column], dtype=str, keep_default_na=False,
                             na_filter=False, skipinitialspace=True, chunksize=self.chunk_rows)
        with reader:
            for frame in reader:
                yield frame[self.id_column].tolist()

    def chunks(self, start: int = 0) -> Iterator[list[str]]:
        """The chunks from number ``start`` on (earlier ones are read past, not returned)."""
        source = f"input {self.path}, column {self.id_column!r}"
        for index, values in enumerate(self._raw_chunks()):
            if index < start:
                continue
            first = index * self.chunk_rows + 1  # data row numbers, counted from 1
            yield [normalize_id(v, source=source, position=first + i) for i, v in enumerate(values)]


class ListIds:
    """IDs already in memory (a dataset's), ``chunk_rows`` at a time."""

    def __init__(self, ids: list[str], chunk_rows: int) -> None:
        self.ids = ids
        self.chunk_rows = chunk_rows

    @property
    def rows_total(self) -> int:
        return len(self.ids)

    def chunks(self, start: int = 0) -> Iterator[list[str]]:
        for offset in range(start * self.chunk_rows, len(self.ids), self.chunk_rows):
            yield self.ids[offset : offset + self.chunk_rows]


# -- progress and the rows of one answer --------------------------------------------------------


@dataclass
class Progress:
    chunks_done: int = 0
    rows_done: int = 0
    output_bytes: int = 0  # CSV: the partial file's length after the last chunk done
    counts: dict[str, int] = field(default_factory=dict)  # rows per status
    columns: list[str] | None = None  # fixed by the first answer, kept across resumes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Progress:
        data = data or {}
        return cls(**{k: data[k] for k in ("chunks_done", "rows_done", "output_bytes", "counts", "columns")
                      if k in data and data[k] is not None})


def columns_for(answer: dict[str, Any]) -> list[str]:
    predictions = answer.get("predictions") or []
    has_threshold = "threshold" in answer or any("threshold" in p for p in predictions)
    return BASE_COLUMNS + (["threshold"] if has_threshold else [])


def prediction_rows(ids: list[str], answer: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
    """One output row per ID, in input order, from a predict answer (keys besides id and status optional)."""
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(ids):
        got = len(predictions) if isinstance(predictions, list) else "no"
        raise ProtocolError(f"the prediction answer has {got} predictions for {len(ids)} IDs")
    rows = []
    for expected, item in zip(ids, predictions):
        if str(item.get("id")) != expected:
            raise ProtocolError(f"the prediction answer is out of order: {item.get('id')!r} where {expected!r} was asked")
        row = {c: item.get(c) for c in columns}
        if "threshold" in columns and row["threshold"] is None:
            row["threshold"] = answer.get("threshold")
        row["status"] = str(item.get("status", "ok"))
        rows.append(row)
    return rows


# -- output ------------------------------------------------------------------------------------


class ResultWriter:
    """The output of one run (``tag`` names it), written aside and published at the end."""

    def __init__(self, output: Path, tag: str) -> None:
        self.output = Path(output)
        self.format = file_format(self.output, "output")
        self.partial = self.output.with_name(f"{self.output.name}.{tag}.partial")

    def resume(self, progress: Progress) -> None:
        """Drop whatever lies past the last recorded chunk (or everything, for a fresh start)."""
        if self.format == "csv":
            if progress.chunks_done == 0:
                self.partial.unlink(missing_ok=True)
            elif not self.partial.is_file() or self.partial.stat().st_size < progress.output_bytes:
                raise DataError(f"the partial output {self.partial} is missing or shorter than the "
                                f"{progress.chunks_done} chunks recorded; delete the progress to start over")
            else:
                os.truncate(self.partial, progress.output_bytes)
            return
        if progress.chunks_done == 0:
            shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(mode=0o700, exist_ok=True)
        for part in self.partial.iterdir():
            index = _part_index(part)
            if index is None or index >= progress.chunks_done:
                part.unlink()
        missing = [i for i in range(progress.chunks_done) if not self._part(i).is_file()]
        if missing:
            raise DataError(f"the partial output {self.partial} lacks the parts of chunks {missing[:5]}; "
                            "delete the progress to start over")

    def _part(self, index: int) -> Path:
        return self.partial / f"part-{index:06d}.parquet"

    def append(self, index: int, rows: list[dict[str, Any]], columns: list[str]) -> int:
        """Write chunk ``index`` durably; returns the CSV partial file's new length (0 for Parquet)."""
        if self.format == "csv":

            frame = _frame(rows, columns)
            header = not self.partial.exists() or self.partial.stat().st_size == 0
            text = frame.to_csv(index=False, header=header)
            fd = os.open(self.partial, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            with os.fdopen(fd, "ab") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                return handle.tell()
        import pyarrow.parquet as pq

        target = self._part(index)
        temporary = target.with_suffix(".tmp")
        pq.write_table(_arrow(rows, columns), temporary)
        _fsync(temporary)
        os.replace(temporary, target)
        return 0

    def publish(self, columns: list[str] | None) -> None:
        """Put the finished output at its path in one rename."""
        columns = columns or BASE_COLUMNS
        if self.format == "csv":
            if not self.partial.exists():  # no IDs at all: a file with the header only
                fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT, FILE_MODE)
                with os.fdopen(fd, "w") as handle:
                    handle.write(",".join(columns) + "\n")
            _fsync(self.partial)
            os.replace(self.partial, self.output)
            return
        import pyarrow.parquet as pq

        combined = self.output.with_name(f"{self.partial.name}.combined")
        parts = sorted((p for p in self.partial.glob("part-*.parquet") if _part_index(p) is not None), key=_part_index)
        with pq.ParquetWriter(combined, _schema(columns)) as writer:
            for part in parts:  # one chunk in memory at a time
                writer.write_table(pq.read_table(part).cast(_schema(columns)))
        os.chmod(combined, FILE_MODE)
        _fsync(combined)
        os.replace(combined, self.output)
        shutil.rmtree(self.partial, ignore_errors=True)

    def discard(self) -> None:
        if self.partial.is_dir():
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            self.partial.unlink(missing_ok=True)


def _part_index(path: Path) -> int | None:
    stem = path.name.removeprefix("part-").removesuffix(".parquet")
    return int(stem) if path.name.startswith("part-") and path.name.endswith(".parquet") and stem.isdigit() else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    data: dict[str, Any] = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name == "label":
            data[name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif name in ("score", "threshold"):
            data[name] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
        else:
            data[name] = pd.array(values, dtype=object)
    return pd.DataFrame(data, columns=columns)


def _schema(columns: list[str]) -> Any:
    import pyarrow as pa

    types = {"id": pa.string(), "score": pa.float64(), "label": pa.int64(), "status": pa.string(),
             "threshold": pa.float64()}
    return pa.schema([(c, types[c]) for c in columns])


def _arrow(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns}, schema=_schema(columns))


# -- the loop -----------------------------------------------------------------------------------


async def score_chunks(
    source: FileIds | ListIds,
    writer: ResultWriter,
    progress: Progress,
    score: Callable[[list[str]], Awaitable[dict[str, Any]]],
    *,
    checkpoint: Callable[[Progress], Any],
    stop: Callable[[], bool] | None = None,
) -> bool:
    """Score the chunks after ``progress.chunks_done``; True when all are done, False when ``stop()`` said so.

    After each chunk the rows are written durably, then ``progress`` moves on and
    ``checkpoint(progress)`` (sync or async) stores it: a run stopped at any
    point loses at most the chunk in hand. ``stop`` is asked between chunks.
    File work runs in a thread so a service's event loop keeps serving.
    """
    writer.resume(progress)
    chunks = source.chunks(progress.chunks_done)
    while True:
        ids = await asyncio.to_thread(next, chunks, None)
        if ids is None:
            return True
        if stop is not None and stop():
            return False
        answer = await score(ids)
        if progress.columns is None:
            progress.columns = columns_for(answer)
        rows = prediction_rows(ids, answer, progress.columns)
        progress.output_bytes = await asyncio.to_thread(writer.append, progress.chunks_done, rows, progress.columns)
        progress.chunks_done += 1
        progress.rows_done += len(ids)
        for row in rows:
            progress.counts[row["status"]] = progress.counts.get(row["status"], 0) + 1
        outcome = checkpoint(progress)
        if asyncio.iscoroutine(outcome):
            await outcome


__all__ = ["FileIds", "ListIds", "Progress", "ResultWriter", "check_output", "file_format", "file_identity",
           "fingerprint", "prediction_rows", "score_chunks"]
