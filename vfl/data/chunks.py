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
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from vfl.data.ids import normalize_id
from vfl.errors import ConfigError, DataError, ProtocolError
from vfl.files import FILE_MODE, open_at

FORMATS = {".csv": "csv", ".parquet": "parquet"}
BASE_COLUMNS = ["id", "score", "label", "status"]
#: A scorecard's rows: the integer score, its probability, and its principal reasons' codes, most important first.
REASON_COLUMNS = ["reason_1", "reason_2", "reason_3", "reason_4"]
SCORECARD_COLUMNS = ["id", "score", "probability", "label", *REASON_COLUMNS, "status"]


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
    """The IDs in column ``id_column`` of a CSV or Parquet file, ``chunk_rows`` at a time.

    ``opener`` opens the file for reading (by default: by its path); a service passes
    one that opens it inside its input folder without following links. ``echo``:
    whether an error may list the file's columns (not where the caller could not
    read the file itself).
    """

    def __init__(self, path: Path, id_column: str, chunk_rows: int, *,
                 opener: Callable[[], BinaryIO] | None = None, echo: bool = True) -> None:
        self.path = Path(path)
        self.id_column = id_column
        self.chunk_rows = chunk_rows
        self._opener = opener or (lambda: open(self.path, "rb"))
        if opener is None and not self.path.is_file():
            raise DataError(f"input {self.path}: file not found; check the path (it is read where the scoring runs)")
        self.format = file_format(self.path, "input")
        columns = self._columns()
        if id_column not in columns:
            shown = f"; its columns are {', '.join(repr(c) for c in columns[:10]) or 'none'}" if echo else ""
            raise DataError(f"input {self.path}: no ID column {id_column!r}{shown}. "
                            "Name the right one (id_column, or --id-column)")

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                with self._opener() as handle:
                    return list(pq.ParquetFile(handle).schema_arrow.names)
            except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
                raise DataError(f"input {self.path}: not a readable Parquet file ({exc})") from exc
        import pandas as pd

        try:
            with self._opener() as handle:
                return [str(c) for c in pd.read_csv(handle, nrows=0).columns]
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"input {self.path}: not a CSV file with a header row ({exc})") from exc

    @property
    def rows_total(self) -> int | None:
        """Known cheaply for Parquet (its footer); None for CSV, which would have to be read through."""
        if self.format != "parquet":
            return None
        import pyarrow.parquet as pq

        with self._opener() as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)

    def _raw_chunks(self) -> Iterator[list[Any]]:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pending: list[Any] = []
            with self._opener() as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=self.chunk_rows, columns=[self.id_column]):
                    pending.extend(batch.column(0).to_pylist())  # batches end at row groups: re-cut to chunk_rows
                    while len(pending) >= self.chunk_rows:
                        yield pending[: self.chunk_rows]
                        pending = pending[self.chunk_rows :]
            if pending:
                yield pending
            return
        import pandas as pd

        with self._opener() as handle:
            reader = pd.read_csv(handle, usecols=[self.id_column], dtype=str, keep_default_na=False,
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


#: A multi-class model's output: the predicted class, then one probability column per class ("p_" + its name).
CLASS_COLUMN, PROBABILITY_PREFIX = "class", "p_"


def columns_for(answer: dict[str, Any]) -> list[str]:
    if answer.get("classes"):  # one-vs-rest: the class and every class's probability
        return ["id", CLASS_COLUMN, *(PROBABILITY_PREFIX + str(c) for c in answer["classes"]), "status"]
    predictions = answer.get("predictions") or []
    has_threshold = "threshold" in answer or any("threshold" in p for p in predictions)
    base = SCORECARD_COLUMNS if answer.get("model") == "scorecard" else BASE_COLUMNS
    return base + (["threshold"] if has_threshold else [])


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
        for name, value in (item.get("probabilities") or {}).items():
            if PROBABILITY_PREFIX + str(name) in row:
                row[PROBABILITY_PREFIX + str(name)] = value
        reasons = item.get("reasons") or []
        for k, column in enumerate(c for c in columns if c in REASON_COLUMNS):
            row[column] = str(reasons[k]["code"]) if k < len(reasons) else None
        if "threshold" in columns and row["threshold"] is None:
            row["threshold"] = answer.get("threshold")
        row["status"] = str(item.get("status", "ok"))
        rows.append(row)
    return rows


# -- output ------------------------------------------------------------------------------------


class ResultWriter:
    """The output of one run (``tag`` names it), written aside in the output's folder and published at the end.

    Every file is opened relative to that folder, which is opened once (``folder``, a
    descriptor, when the caller already holds it), and never through a symbolic link:
    the partial output's predictable name cannot be raced into writing elsewhere.
    """

    def __init__(self, output: Path, tag: str, *, folder: int | None = None) -> None:
        self.output = Path(output)
        self.format = file_format(self.output, "output")
        self.partial = self.output.with_name(f"{self.output.name}.{tag}.partial")
        self._dir = os.dup(folder) if folder is not None else os.open(self.output.parent, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files in the output's folder, by name ------------------------------------------------------

    def _stat(self, name: str, folder: int | None = None) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self._dir if folder is None else folder, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _remove(self, name: str) -> None:
        found = self._stat(name)
        if found is None:
            return
        if stat.S_ISDIR(found.st_mode):
            shutil.rmtree(name, dir_fd=self._dir, ignore_errors=True)
        else:
            os.unlink(name, dir_fd=self._dir)

    def _parts_folder(self) -> int:
        """The Parquet partial folder's descriptor (made if missing, 0700, never a link)."""
        try:
            os.mkdir(self.partial.name, 0o700, dir_fd=self._dir)
        except FileExistsError:
            pass
        return open_at(self._dir, self.partial.name, os.O_RDONLY | os.O_DIRECTORY)

    # -- the run ---------------------------------------------------------------------------------------

    def resume(self, progress: Progress) -> None:
        """Drop whatever lies past the last recorded chunk (or everything, for a fresh start)."""
        name = self.partial.name
        if self.format == "csv":
            if progress.chunks_done == 0:
                self._remove(name)
                return
            found = self._stat(name)
            if found is None or not stat.S_ISREG(found.st_mode) or found.st_size < progress.output_bytes:
                raise DataError(f"the partial output {self.partial} is missing or shorter than the "
                                f"{progress.chunks_done} chunks recorded; delete the progress to start over")
            fd = open_at(self._dir, name, os.O_WRONLY)
            try:
                os.ftruncate(fd, progress.output_bytes)
            finally:
                os.close(fd)
            return
        if progress.chunks_done == 0:
            self._remove(name)
        parts = self._parts_folder()
        try:
            for part in os.listdir(parts):
                index = _part_index(part)
                if index is None or index >= progress.chunks_done:
                    os.unlink(part, dir_fd=parts)
            missing = [i for i in range(progress.chunks_done) if self._stat(_part_name(i), parts) is None]
        finally:
            os.close(parts)
        if missing:
            raise DataError(f"the partial output {self.partial} lacks the parts of chunks {missing[:5]}; "
                            "delete the progress to start over")

    def append(self, index: int, rows: list[dict[str, Any]], columns: list[str]) -> int:
        """Write chunk ``index`` durably; returns the CSV partial file's new length (0 for Parquet)."""
        if self.format == "csv":
            found = self._stat(self.partial.name)
            text = _frame(rows, columns).to_csv(index=False, header=found is None or found.st_size == 0)
            fd = open_at(self._dir, self.partial.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            with os.fdopen(fd, "ab") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                return handle.tell()
        import pyarrow.parquet as pq

        parts = self._parts_folder()
        try:
            temporary = _part_name(index) + ".tmp"
            with os.fdopen(open_at(parts, temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
                pq.write_table(_arrow(rows, columns), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, _part_name(index), src_dir_fd=parts, dst_dir_fd=parts)
        finally:
            os.close(parts)
        return 0

    def publish(self, columns: list[str] | None) -> None:
        """Put the finished output at its path in one rename."""
        columns = columns or BASE_COLUMNS
        name = self.partial.name
        if self.format == "csv":
            with os.fdopen(open_at(self._dir, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as handle:
                if handle.tell() == 0:  # no IDs at all: a file with the header only
                    handle.write((",".join(columns) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, self.output.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            return
        import pyarrow.parquet as pq

        combined = f"{name}.combined"
        parts = self._parts_folder()
        try:
            indexed = sorted((i, part) for part in os.listdir(parts) if (i := _part_index(part)) is not None)
            with os.fdopen(open_at(self._dir, combined, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
                with pq.ParquetWriter(handle, _schema(columns)) as writer:
                    for _, part in indexed:  # one chunk in memory at a time
                        with os.fdopen(open_at(parts, part, os.O_RDONLY), "rb") as chunk:
                            writer.write_table(pq.read_table(chunk).cast(_schema(columns)))
                handle.flush()
                os.fchmod(handle.fileno(), FILE_MODE)
                os.fsync(handle.fileno())
        finally:
            os.close(parts)
        os.replace(combined, self.output.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        self._remove(name)

    def discard(self) -> None:
        self._remove(self.partial.name)


def _part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def _part_index(name: str) -> int | None:
    stem = name.removeprefix("part-").removesuffix(".parquet")
    return int(stem) if name.startswith("part-") and name.endswith(".parquet") and stem.isdigit() else None


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    data: dict[str, Any] = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name == "label":
            data[name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif name in ("score", "threshold") or name.startswith(PROBABILITY_PREFIX):
            data[name] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
        else:
            data[name] = pd.array(values, dtype=object)
    return pd.DataFrame(data, columns=columns)


def _schema(columns: list[str]) -> Any:
    import pyarrow as pa

    types = {"id": pa.string(), "score": pa.float64(), "label": pa.int64(), "status": pa.string(),
             "threshold": pa.float64()}
    return pa.schema([(c, pa.float64() if c.startswith(PROBABILITY_PREFIX) else types.get(c, pa.string()))
                      for c in columns])


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
