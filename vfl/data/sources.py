"""Where a party's rows come from: a CSV file, a Parquet file or a database table.

One interface, :class:`DataSource`, with two uses:

* :meth:`DataSource.table` gives all rows, checked strictly exactly as
  :func:`vfl.data.table.load_csv` checks a CSV (training: one bad cell is an error
  naming the column, the ID and the fix);
* :meth:`DataSource.iter_ids` streams the IDs of those rows, in the same
  order, without loading the table (the PSI reads a large set this way:
  ``PsiIds(read=lambda: source.iter_ids(), ...)``);
* :meth:`DataSource.lookup` reads the rows of given IDs at request time
  (serving), columns matched by name, and is lenient per row: each ID gets a
  status, ``"ok"``, ``"unknown id"``, ``"duplicated id"`` (the ID is on more
  than one row) or ``"invalid features: f1, f2"`` (those cells are missing,
  NaN, infinite or not numeric), so one bad row never fails the request. A
  feature column the source does not have is a configuration error
  (:class:`~vfl.errors.DataError`), not a per-ID status.

Files are read once and read again when their modification time changes; a
lookup uses an ID → row index built once per read, so it costs O(len(ids)).
The raw text of a file is not kept once the training table or the lookup view
is built from it (for a 1M × 50 CSV it is twice the float matrix): if the other
is asked for later, the file is read again.
A database table is read in the order of its ID column (then its primary key),
so that the training table and the streamed IDs list the rows alike whatever
plan the database picks (an index-only scan returns index order, a parallel or
synchronised scan any order). A database is the source of truth: every call queries it (``WHERE id IN
(...)`` with bound parameters, 5,000 IDs per statement), so rows inserted after
training are found by the next lookup. Table and column names are reflected
and quoted by SQLAlchemy, never formatted into SQL.

IDs follow :mod:`vfl.data.ids`: compared as text after stripping surrounding white
space; an integer ID column matches the request ``"7"`` but not ``"007"``.

Every failure is a :class:`~vfl.errors.DataError` naming the dataset, the
problem and the fix. Messages name the file or the database (with its password
hidden) for this service's operators; each also carries a ``public`` message
naming only the dataset, which is what peers read (:mod:`vfl.service.redact`).
SQLAlchemy and pyarrow are optional: ``pip install 'vfl[sql]'``,
``'vfl[postgres]'`` or ``'vfl[parquet]'``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from vfl.data.ids import IdRules, normalize_id
from vfl.data.table import (
    ID_CHUNK_ROWS,
    PartyTable,
    LabelHints,
    check_labels,
    from_dataframe,
    read_csv_frame,
    read_csv_ids,
    read_parquet_frame,
    read_parquet_ids,
    category_texts,
)
from vfl.data.dataset import DEFAULT_MAX_BYTES, DatasetSection
from vfl.errors import ConfigError, DataError
from vfl.ml.prep import PrepConfig, Preparation


#: Tables of one file prepared by jobs' own "prepare" kept at once (each is the size of the dataset's table).
MAX_VARIANTS = 2
#: IDs per ``WHERE id IN (...)`` statement (SQLite allows 32,766 bound parameters, PostgreSQL 65,535).
SQL_CHUNK = 5000

OK = "ok"
UNKNOWN = "unknown id"
DUPLICATED = "duplicated id"

_MISSING_TEXT = ("", "nan", "NaN", "NA", "N/A", "null", "None")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Lookup:
    """Features of requested IDs, in request order."""

    features: np.ndarray  # (len(ids), len(feature_names)) float64; rows whose status is not "ok" are NaN
    status: list[str]  # per ID: "ok", "unknown id", "duplicated id" or "invalid features: <col>[, <col>...]"

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the IDs whose features are usable."""
        return np.array([s == OK for s in self.status], dtype=bool)


class DataSource(Protocol):
    def table(self, model: str | None = None, prep: PrepConfig | None = None) -> PartyTable:
        """All rows, checked strictly (training); prepared by ``prep`` (a job's) instead of the dataset's keys."""
        ...

    def iter_ids(self, chunk_rows: int = ID_CHUNK_ROWS) -> Iterator[str]:
        """The IDs of :meth:`table`'s rows, normalised, in its order, read ``chunk_rows`` at a time.

        Equal to ``table().ids`` without loading the table; call it again for a
        fresh pass. IDs are checked one by one as :meth:`table` checks them (a
        missing ID is an error) but not for duplicates, which would need them all
        in memory (the PSI finds those); no rows at all is :meth:`table`'s error.
        """
        ...

    def lookup(self, ids: list[str], feature_names: list[str]) -> Lookup:
        """The rows of ``ids``, columns by name, a status per ID (serving)."""
        ...

    def prepared_lookup(self, ids: list[str], preparation: Preparation) -> Lookup:
        """The rows of ``ids`` as a model with this preparation reads them (serving): see :func:`prepared`."""
        ...

    def close(self) -> None:
        """Release connections; the source may be used again afterwards (it reopens)."""
        ...

    def in_memory(self) -> bool:
        """True when a lookup now needs no I/O (so a small one may run on the event loop)."""
        ...


def open_source(name: str, dataset: DatasetSection, *, max_bytes: int = DEFAULT_MAX_BYTES) -> DataSource:
    """The source of dataset ``name`` as its config section describes it; nothing is read yet."""
    kind = dataset.kind
    if kind == "sql":
        return SqlSource(name, dataset)
    if kind == "parquet":
        return FileSource(name, dataset, read_parquet_frame, max_bytes)
    return FileSource(name, dataset, read_csv_frame, max_bytes)


# -- helpers shared by every source ---------------------------------------------------------


def lenient_column(column: pd.Series) -> np.ndarray:
    """A column as float64 with NaN wherever a cell is missing, NaN, infinite or not a number."""
    if pd.api.types.is_numeric_dtype(column):  # as vfl.data.table's strict check: booleans count as 0 and 1
        values = pd.to_numeric(column, errors="coerce")
    else:
        text = column.astype(str).str.strip()
        values = pd.to_numeric(text.where(~text.isin(_MISSING_TEXT), None), errors="coerce")
    arr = np.array(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)  # a writable copy
    arr[~np.isfinite(arr)] = np.nan
    return arr


def _normalized(chunks: Iterable[list[Any]], source: str, column: str, plain: Callable[[Any], Any] | None = None,
                rules: IdRules | None = None) -> Iterator[str]:
    """IDs from chunks of raw cells, normalised as :func:`vfl.data.table.from_dataframe` does (same messages)."""
    where = f"{source}, column {column!r}"
    row = 0
    for chunk in chunks:
        for value in chunk:
            yield normalize_id(plain(value) if plain is not None else value, source=where, position=row, rules=rules)
            row += 1
    if row == 0:
        raise DataError(f"{source}: the table has a header but no data rows")


def _request_ids(ids: list[str], rules: IdRules | None = None) -> list[str | None]:
    """Requested IDs by the :mod:`vfl.data.ids` rule; one that cannot be an ID (empty, not text) is None."""
    out: list[str | None] = []
    for i, value in enumerate(ids):
        try:
            out.append(normalize_id(value, source="request", position=i, rules=rules))
        except DataError:
            out.append(None)
    return out


def _assemble(wanted: list[str | None], rows: dict[str, np.ndarray], duplicated: set[str],
              feature_names: list[str], keep: bool = False) -> Lookup:
    """The Lookup for ``wanted`` from ``rows`` (ID → its feature values, NaN where invalid).

    ``keep`` keeps the values of a row with invalid cells (a preparation may fill them: :func:`prepared`).
    """
    features = np.full((len(wanted), len(feature_names)), np.nan)
    status: list[str] = []
    for k, key in enumerate(wanted):
        if key is None or (key not in rows and key not in duplicated):
            status.append(UNKNOWN)
        elif key in duplicated:
            status.append(DUPLICATED)
        else:
            values = rows[key]
            bad = np.isnan(values)
            if bad.any():
                status.append("invalid features: " + ", ".join(c for c, b in zip(feature_names, bad) if b))
                if keep:
                    features[k] = values
            else:
                features[k] = values
                status.append(OK)
    return Lookup(features, status)


def prepared(raw: Lookup, preparation: Preparation) -> Lookup:
    """Raw looked-up columns (numbers; category codes, −1 unseen) → the model's columns, expanded and filled.

    A cell that is missing (or not a number) in a column the preparation fills is filled,
    as in training; in a column it does not fill, the ID keeps the status
    ``"invalid features: ..."``. An unseen category is all zeros (one-hot) or the code −1
    (ordinal), unless the preparation's rule is "refuse": then the ID gets the status
    ``"unseen category: NAME"``.
    """
    expanded = preparation.expand(raw.features)
    filled = preparation.fill(expanded)
    fills = preparation.fills or {}
    status = list(raw.status)
    outputs = preparation.outputs
    for k, (s, row) in enumerate(zip(status, raw.features)):
        if s == OK or s.startswith("invalid features: "):
            bad = [n for n, v in zip(preparation.inputs, row)
                   if n not in preparation.categories and np.isnan(v) and n not in fills]
            unseen = [n for j, n in enumerate(preparation.inputs)
                      if n in preparation.categories and row[j] < 0]
            if bad:
                status[k] = "invalid features: " + ", ".join(bad)
            elif unseen and preparation.unseen_category == "refuse":
                status[k] = "unseen category: " + ", ".join(unseen)
            else:
                status[k] = OK
    features = np.where(np.array([s == OK for s in status])[:, None], filled, np.nan) if len(status) else \
        np.zeros((0, len(outputs)))
    return Lookup(features, status)


def _public(exc: DataError, name: str, *local: str) -> DataError:
    """``exc`` with a public message: the same text with each local detail replaced by the dataset's name."""
    if exc.public is None:
        text = str(exc)
        for detail in local:
            if detail:
                text = text.replace(detail, f"dataset {name!r}")
        exc.public = text
    return exc


# -- files: CSV and Parquet -------------------------------------------------------------------


@dataclass
class _FileState:
    """One read of the file: the raw frame, and what was built from it (lazily)."""

    mtime: float
    frame: pd.DataFrame | None  # dropped once the table or the lookup view is built (read again if needed)
    table: PartyTable | None = None
    checked: set[str] = field(default_factory=set)  # models whose label check passed on ``table``
    index: dict[str, int] | None = None
    duplicated: set[str] = field(default_factory=set)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # lenient float columns, by name
    names: list[str] = field(default_factory=list)  # the file's columns, for messages
    texts: dict[str, list[str]] = field(default_factory=dict)  # the categorical columns' cells, as categories
    #: Tables prepared otherwise than the dataset's keys say (a job's "prepare"), by that preparation.
    variants: dict[str, PartyTable] = field(default_factory=dict)


def _release(state: _FileState) -> None:
    """Drop the raw frame: what was built from it holds the values, and it is the largest thing here."""
    if state.frame is not None:
        state.frame = None
        release_arrow_memory()


def release_arrow_memory() -> None:
    """Hand the pages of freed Arrow buffers back to the system.

    pandas 3 keeps text columns in Arrow arrays, and Arrow's allocator keeps
    freed pages for its own reuse, without end: after a 1M × 50 CSV was read as
    text and dropped, about 1 GB stays resident that numpy cannot use.
    """
    pa = sys.modules.get("pyarrow")  # not imported: nothing of Arrow's was allocated
    if pa is not None:
        try:
            pa.default_memory_pool().release_unused()
        except Exception:  # noqa: BLE001 - only a hint to the allocator
            pass


class FileSource:
    """A CSV or Parquet file, read once and again whenever its modification time changes."""

    def __init__(self, name: str, dataset: DatasetSection, read: Callable[..., pd.DataFrame], max_bytes: int) -> None:
        if dataset.path is None:
            raise ConfigError(f"dataset {name!r} names no file; give path, or url and table")
        self.name = name
        self.dataset = dataset
        self.path: Path = dataset.path
        self._read = read
        self._max_bytes = max_bytes
        self._state: _FileState | None = None
        self._lock = threading.Lock()

    def _current(self) -> _FileState:
        """The cached read, or a fresh one if the file changed (caller holds the lock)."""
        try:
            mtime = os.path.getmtime(self.path)
        except OSError as exc:
            raise DataError(f"dataset {self.name!r}: cannot read {self.path} ({exc})",
                            public=f"dataset {self.name!r}: cannot read its file ({exc.strerror or type(exc).__name__})",
                            ) from exc
        state = self._state
        if state is None or state.mtime != mtime:
            state = self._state = _FileState(mtime, self._read_frame())
        return state

    def _read_frame(self) -> pd.DataFrame:
        try:
            return self._read(self.path, max_bytes=self._max_bytes)
        except DataError as exc:  # the readers start each message with the file's path
            _public(exc, self.name, str(self.path))
            raise

    def _frame(self, state: _FileState) -> pd.DataFrame:
        """The raw frame of ``state``, read again if it was dropped (caller holds the lock)."""
        if state.frame is None:
            state.frame = self._read_frame()
        return state.frame

    def table(self, model: str | None = None, prep: PrepConfig | None = None) -> PartyTable:
        if prep is not None and prep != self.dataset.prep:
            return self._variant(model, prep)
        with self._lock:
            state = self._current()
            d = self.dataset
            try:
                if state.table is None:
                    state.table = from_dataframe(
                        self._frame(state), id_column=d.id_column, label_column=d.label_column, model=model,
                        source=str(self.path), label_hints=LabelHints.for_service(self.name), prep=d.prep,
                        id_rules=d.ids if d.ids.active else None,
                    )
                    if model is not None:
                        state.checked.add(model)
                elif model is not None and model not in state.checked and state.table.labels is not None:
                    check_labels(state.table.labels, model, str(self.path), d.label_column or "",
                                 hints=LabelHints.for_service(self.name))
                    state.checked.add(model)
            except DataError as exc:
                _public(exc, self.name, str(self.path))
                raise
            _release(state)
            return state.table

    def _variant(self, model: str | None, prep: PrepConfig) -> PartyTable:
        """The table prepared by ``prep`` (a job's), kept for the next call of the same job (a few of them)."""
        key = prep.model_dump_json()
        d = self.dataset
        with self._lock:
            state = self._current()
            try:
                table = state.variants.get(key)
                if table is None:
                    table = from_dataframe(
                        self._frame(state), id_column=d.id_column, label_column=d.label_column, model=model,
                        source=str(self.path), label_hints=LabelHints.for_service(self.name), prep=prep,
                        id_rules=d.ids if d.ids.active else None,
                    )
                    while len(state.variants) >= MAX_VARIANTS:  # the oldest goes: it is read again if asked for
                        state.variants.pop(next(iter(state.variants)))
                    state.variants[key] = table
                elif model is not None and table.labels is not None:
                    check_labels(table.labels, model, str(self.path), d.label_column or "",
                                 hints=LabelHints.for_service(self.name))
            except DataError as exc:
                _public(exc, self.name, str(self.path))
                raise
            _release(state)
            return table

    def iter_ids(self, chunk_rows: int = ID_CHUNK_ROWS) -> Iterator[str]:
        """The IDs of :meth:`table`'s rows; from the loaded table if it is current, else streamed from the file."""
        try:
            with self._lock:
                state = self._state
                try:
                    current = state is not None and state.table is not None and \
                        state.mtime == os.path.getmtime(self.path)
                except OSError:
                    current = False
                ids = state.table.ids if current else None
            if ids is not None:
                yield from ids
                return
            reader = read_parquet_ids if self.dataset.kind == "parquet" else read_csv_ids
            chunks = reader(self.path, self.dataset.id_column, chunk_rows=chunk_rows, max_bytes=self._max_bytes)
            yield from _normalized(chunks, str(self.path), self.dataset.id_column,
                                   rules=self.dataset.ids if self.dataset.ids.active else None)
        except DataError as exc:
            _public(exc, self.name, str(self.path))
            raise

    def in_memory(self) -> bool:
        """Is a lookup answered from memory now (file read, indexed, unchanged)? Then it is quick."""
        state = self._state
        try:
            return state is not None and state.index is not None and state.mtime == os.path.getmtime(self.path)
        except OSError:
            return False

    def prepared_lookup(self, ids: list[str], preparation: Preparation) -> Lookup:
        return prepared(self.lookup(ids, preparation.inputs, categories=preparation), preparation)

    def lookup(self, ids: list[str], feature_names: list[str], categories: Preparation | None = None) -> Lookup:
        wanted = _request_ids(ids, self.dataset.ids if self.dataset.ids.active else None)
        with self._lock:
            state = self._current()
            if state.index is None:
                self._build_index(state)
                _release(state)
            missing = [c for c in feature_names if c not in state.columns]
            if missing:
                shown = ", ".join(map(str, state.names[:20]))
                raise DataError(
                    f"dataset {self.name!r}: {self.path} has no column(s) {missing} that the model uses; "
                    f"its columns are: {shown}. Add the column(s) to the file, or point the dataset at the file "
                    "the model was trained on",
                    public=f"dataset {self.name!r} has no column(s) {missing} that the model uses",
                )
            if categories is not None:  # a text column the model encodes: its cells' codes, −1 for a new category
                absent = [c for c in categories.categories if c not in state.texts]
                if absent:  # a column a job's "prepare" encodes, not the dataset's own categorical: read it once
                    frame = self._frame(state)
                    state.texts.update({c: category_texts(frame[c]) for c in absent})
                    _release(state)
                coded = {c: categories.encode(c, state.texts[c]) for c in categories.categories}
                columns = [coded[c] if c in coded else state.columns[c] for c in feature_names]
            else:
                columns = [state.columns[c] for c in feature_names]
            index, duplicated = state.index, state.duplicated
        rows = {}
        for key in wanted:
            if key is not None and key in index and key not in rows:
                row = index[key]
                rows[key] = np.array([col[row] for col in columns], dtype=np.float64)
        return _assemble(wanted, rows, duplicated, feature_names, keep=categories is not None)

    def _build_index(self, state: _FileState) -> None:
        column = self.dataset.id_column
        frame = self._frame(state)
        if column not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:20]))
            raise DataError(
                f"dataset {self.name!r}: {self.path} has no ID column {column!r}; its columns are: {shown}. "
                "Fix id_column in the config",
                public=f"dataset {self.name!r}: no ID column {column!r}; fix id_column in the config",
            )
        index: dict[str, int] = {}
        duplicated: set[str] = set()
        for row, value in enumerate(frame[column].tolist()):
            try:
                key = normalize_id(value, source="", position=row,
                                   rules=self.dataset.ids if self.dataset.ids.active else None)
            except DataError:
                continue  # a row without a usable ID cannot be asked for
            if key in index:
                duplicated.add(key)
            else:
                index[key] = row
        state.index, state.duplicated = index, duplicated
        state.names = [str(c) for c in frame.columns]
        state.columns = {str(c): lenient_column(frame[c]) for c in frame.columns if c != column}
        state.texts = {str(c): category_texts(frame[c]) for c in self.dataset.categorical if c in frame.columns}

    def close(self) -> None:
        with self._lock:
            self._state = None


# -- databases, through SQLAlchemy --------------------------------------------------------------


class SqlSource:
    """A database table. One Engine (a connection pool, pre-pinged) per dataset, made on first use."""

    def __init__(self, name: str, dataset: DatasetSection, *, chunk: int = SQL_CHUNK) -> None:
        assert dataset.url is not None and dataset.table is not None
        self.name = name
        self.dataset = dataset
        self.chunk = chunk
        self._engine: Any = None
        self._table: Any = None  # the reflected sqlalchemy.Table
        self._where = f"table {dataset.table!r}" + (f" in schema {dataset.db_schema!r}" if dataset.db_schema else "")
        self._secrets: list[str] = []
        self._lock = threading.Lock()

    # ---- errors

    @property
    def where(self) -> str:
        """The table and the database, as operators read it (password hidden)."""
        if self._engine is not None:
            return f"{self._where} of {self._engine.url.render_as_string(hide_password=True)}"
        return self._where

    def _error(self, problem: str, fix: str, exc: BaseException | None = None) -> DataError:
        detail = ""
        if exc is not None:
            orig = getattr(exc, "orig", None)  # the driver's own message, without SQLAlchemy's [SQL: ...] dump
            detail = f" ({_scrub(str(orig if orig is not None else exc).strip(), self._secrets)})"
        return DataError(
            f"dataset {self.name!r}: {problem} ({self.where}){detail}; {fix}",
            public=f"dataset {self.name!r}: {problem}" + (f" ({type(exc).__name__})" if exc is not None else ""),
        )

    # ---- connections

    def _sqlalchemy(self) -> Any:
        try:
            import sqlalchemy
        except ModuleNotFoundError as exc:
            raise DataError(
                f"dataset {self.name!r} is a database table: install SQLAlchemy with pip install 'vfl[sql]' "
                "(or 'vfl[postgres]' for PostgreSQL)",
                public=f"dataset {self.name!r}: the database driver is not installed",
            ) from exc
        return sqlalchemy

    def engine(self) -> Any:
        """The dataset's Engine, created on first use."""
        if self._engine is not None:
            return self._engine
        sa = self._sqlalchemy()
        from sqlalchemy.engine import make_url

        raw = _substitute(self.name, self.dataset.url or "")
        try:
            url = make_url(raw)
        except Exception as exc:  # ArgumentError, ValueError: the message may echo the URL, so it is not shown
            raise ConfigError(
                f"dataset {self.name!r}: url is not a valid SQLAlchemy URL ({type(exc).__name__}); "
                'write it as "sqlite:///file.db" or "postgresql+psycopg://user:password@host:5432/db"',
                public=f"dataset {self.name!r}: its database url is not valid",
            ) from None
        self._secrets = [s for s in (url.password,) if s]
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:") and not Path(database).is_file():
                raise DataError(
                    f"dataset {self.name!r}: the SQLite database {database} does not exist; check the url "
                    "(sqlite:///relative.db is relative to the config file, sqlite:////abs/path.db is absolute)",
                    public=f"dataset {self.name!r}: its database file does not exist",
                )
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            extra = "vfl[postgres]" if url.get_backend_name() == "postgresql" else "the driver named in the url"
            raise DataError(
                f"dataset {self.name!r}: the database driver for {url.drivername!r} is not installed "
                f"({exc.name}); install {extra}",
                public=f"dataset {self.name!r}: the database driver is not installed",
            ) from None
        except Exception as exc:  # NoSuchModuleError (unknown dialect), ArgumentError
            raise ConfigError(
                f"dataset {self.name!r}: cannot use the database url {url.render_as_string(hide_password=True)} "
                f"({type(exc).__name__}: {_scrub(str(exc), self._secrets)}); check the dialect and driver, "
                'e.g. "sqlite:///file.db" or "postgresql+psycopg://user@host:5432/db"',
                public=f"dataset {self.name!r}: its database url cannot be used",
            ) from None
        self._engine = engine
        return engine

    def _reflect(self, refresh: bool = False) -> Any:
        """The table as the database describes it (names quoted by SQLAlchemy), cached until ``refresh``."""
        if self._table is not None and not refresh:
            return self._table
        sa = self._sqlalchemy()
        engine = self.engine()
        try:
            self._table = sa.Table(self.dataset.table, sa.MetaData(), schema=self.dataset.db_schema,
                                   autoload_with=engine)
        except sa.exc.NoSuchTableError:
            raise self._error(
                "the table does not exist", "check table (and schema) in the config, or create the table"
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(
                "cannot read the database", "check the url, the credentials and that the server is running", exc
            ) from None
        return self._table

    def _column(self, table: Any, name: str, what: str) -> Any:
        if name in table.c:
            return table.c[name]
        shown = ", ".join(c.name for c in list(table.c)[:20])
        raise DataError(
            f"dataset {self.name!r}: {self.where} has no {what} column {name!r}; its columns are: {shown}. "
            + ("Fix id_column in the config" if what == "ID" else
               "Add the column to the table, or point the dataset at the table the model was trained on"),
            public=f"dataset {self.name!r}: the table has no {what} column {name!r}",
        )

    def _columns(self, names: list[str], what: str) -> tuple[Any, list[Any]]:
        """The reflected table and its columns ``names``; a column not found re-reflects once (a changed table)."""
        table = self._reflect()
        if not all(n in table.c for n in names):
            table = self._reflect(refresh=True)
        return table, [self._column(table, n, what) for n in names]

    def _order(self, table: Any) -> list[Any]:
        """ORDER BY of every full read: the ID column, then the primary key (a tie-break under a loose collation)."""
        id_col = table.c[self.dataset.id_column]
        return [id_col, *(c for c in table.primary_key.columns if c.name != id_col.name)]

    # ---- the interface

    def table(self, model: str | None = None, prep: PrepConfig | None = None) -> PartyTable:
        sa = self._sqlalchemy()
        with self._lock:
            table = self._reflect(refresh=True)  # training: see the table as it is now
            d = self.dataset
            self._column(table, d.id_column, "ID")
            if d.label_column is not None:
                self._column(table, d.label_column, "label")
            try:
                with self.engine().connect() as conn:
                    result = conn.execute(sa.select(table).order_by(*self._order(table)))
                    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
                    frame[d.id_column] = [_plain_id(v) for v in frame[d.id_column]]
            except sa.exc.SQLAlchemyError as exc:
                raise self._error("cannot read the table", "check the database and its permissions", exc) from None
        source = f"dataset {self.name!r} ({self.where})"
        try:
            return from_dataframe(frame, id_column=d.id_column, label_column=d.label_column, model=model,
                                  source=source, label_hints=LabelHints.for_service(self.name),
                                  prep=d.prep if prep is None else prep)
        except DataError as exc:
            _public(exc, self.name, source)
            raise

    def iter_ids(self, chunk_rows: int = ID_CHUNK_ROWS) -> Iterator[str]:
        """The ID column only, in :meth:`table`'s order, fetched ``chunk_rows`` rows at a time (a server-side
        cursor where the driver has one). The connection is held until the iteration ends or is closed."""
        sa = self._sqlalchemy()
        with self._lock:
            table = self._reflect(refresh=True)
            id_col = self._column(table, self.dataset.id_column, "ID")
            statement = sa.select(id_col).order_by(*self._order(table))
        source = f"dataset {self.name!r} ({self.where})"
        try:
            with self.engine().connect() as conn:
                result = conn.execution_options(yield_per=max(1, chunk_rows)).execute(statement)
                chunks = ([row[0] for row in part] for part in result.partitions())
                yield from _normalized(chunks, source, self.dataset.id_column, _plain_id)
        except sa.exc.SQLAlchemyError as exc:
            raise self._error("cannot read the table", "check the database and its permissions", exc) from None
        except DataError as exc:
            _public(exc, self.name, source)
            raise

    def prepared_lookup(self, ids: list[str], preparation: Preparation) -> Lookup:
        if preparation.categories:
            raise DataError(
                f"dataset {self.name!r}: serving a model with categorical columns reads them from a file dataset "
                "only; encode the column in a view of the table, or serve from a CSV or Parquet file",
                public=f"dataset {self.name!r}: categorical columns are not served from a database table")
        return prepared(self.lookup(ids, preparation.inputs, keep=True), preparation)

    def lookup(self, ids: list[str], feature_names: list[str], keep: bool = False) -> Lookup:
        sa = self._sqlalchemy()
        wanted = _request_ids(ids)
        with self._lock:
            table, (id_col,) = self._columns([self.dataset.id_column], "ID")
            table, features = self._columns(feature_names, "feature")
            id_col = table.c[self.dataset.id_column]
        params = _bind_values(id_col, wanted)
        rows: dict[str, np.ndarray] = {}
        duplicated: set[str] = set()
        keys = sorted(params)
        try:
            with self.engine().connect() as conn:
                for start in range(0, len(keys), self.chunk):
                    chunk = [params[k] for k in keys[start:start + self.chunk]]
                    statement = sa.select(id_col, *features).where(
                        id_col.in_(sa.bindparam("ids", expanding=True))
                    )
                    records = conn.execute(statement, {"ids": chunk}).fetchall()
                    if not records:
                        continue
                    frame = pd.DataFrame(records, columns=["__id", *range(len(features))])
                    values = np.column_stack([lenient_column(frame[i]) for i in range(len(features))]) \
                        if features else np.empty((len(frame), 0))
                    for value, row in zip(frame["__id"].tolist(), values):
                        try:
                            key = normalize_id(_plain_id(value), source="", position=0)
                        except DataError:
                            continue
                        if key in rows:
                            duplicated.add(key)
                        rows[key] = row
        except sa.exc.SQLAlchemyError as exc:
            raise self._error("cannot read the table", "check the database and its permissions", exc) from None
        return _assemble(wanted, rows, duplicated, feature_names, keep=keep)

    def in_memory(self) -> bool:
        return False  # every lookup queries the database

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._table = None


def _bind_values(id_col: Any, wanted: list[str | None]) -> dict[str, Any]:
    """Each distinct requested ID → the value to bind for the ID column's type.

    An integer (or other numeric) column compares with integers: "7" binds 7, and an ID
    that is not an integer's canonical text ("007", "x' OR 1=1") cannot be in it, so it is
    not sent. Any other column compares as text.
    """
    try:
        python_type = id_col.type.python_type
    except NotImplementedError:
        python_type = str
    numeric = (python_type is not bool and issubclass(python_type, (int, float))) or python_type.__name__ == "Decimal"
    out: dict[str, Any] = {}
    for key in wanted:
        if key is None or key in out:
            continue
        if numeric:
            if re.fullmatch(r"-?[0-9]+", key) and str(int(key)) == key:
                out[key] = int(key)
        else:
            out[key] = key
    return out


def _plain_id(value: Any) -> Any:
    """A whole-number Decimal (PostgreSQL NUMERIC) as an int, so that it follows the integer ID rule."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


def _substitute(name: str, url: str) -> str:
    """``${VAR}`` in a url from the environment; a variable that is not set is a ConfigError naming it."""
    def value(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(
                f"dataset {name!r}: the url uses ${{{var}}} but the environment variable {var} is not set; "
                "set it for the service, or write the value into the url",
                public=f"dataset {name!r}: its database url is not configured",
            )
        return os.environ[var]
    return _ENV.sub(value, url)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


__all__ = ["DUPLICATED", "OK", "UNKNOWN", "DataSource", "FileSource", "Lookup", "SqlSource", "lenient_column",
           "open_source"]
