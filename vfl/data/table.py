"""Loading and checking one party's table (CSV or Parquet file, or pandas DataFrame).

Each party loads only its own table. The checks run before anything is
encrypted or sent, and each failure raises one :class:`~vfl.errors.DataError`
that names the file, the column and the fix:

* the file is missing, empty, has no rows, or is not valid CSV (a header that is
  one column holding ``;``, tabs or ``|`` is named as a file using that separator);
* the ID column or the label column is missing (the available columns are listed);
* IDs are empty or duplicated (rule for ID types: :func:`vfl.data.ids.normalize_ids`);
* a feature column is not numeric (unless ``prep`` encodes it: :mod:`vfl.ml.prep`), or holds missing or NaN
  values (unless ``prep`` imputes them) or infinite values;
* the party has no feature columns;
* for logistic regression, only one class, two classes other than {0, 1}, or a label that
  is not whole-number classes (a numeric target) or has too many classes; 3 to
  ``max_classes`` classes train one-vs-rest (:mod:`vfl.ml.multiclass`);
  for linear regression, a non-numeric or non-finite label.

Text labels yes/no, true/false, y/n and t/f (any case, also mixed with 0 and 1)
are read as 1/0, except for linear regression; the table keeps the mapping
(:attr:`PartyTable.label_mapping`) and it is logged. Other text in the label
column is refused with the distinct values seen.

Inputs are never modified: files are only read, DataFrames are copied.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from vfl.data.formats import file_problem
from vfl.data.ids import IdRules, normalize_ids
from vfl.ml.config import DEFAULT_MAX_CLASSES, ModelKind, TrainingConfig
from vfl.ml.schedule import Schedule
from vfl.ml.prep import MISSING_CATEGORY, PrepConfig, Preparation
from vfl.errors import DataError, UnknownIDError

#: Refuse CSV files above this size unless the caller raises the limit.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Rows per chunk when a file's ID column is streamed.
ID_CHUNK_ROWS = 100_000

#: How every CSV cell is read: as text, exactly as written apart from spaces after a delimiter.
_CSV_OPTIONS = {"dtype": str, "keep_default_na": False, "na_filter": False, "skipinitialspace": True}

#: Separators other than the comma that a header row gives away, and how to name them.
OTHER_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}

#: Text labels read as 1 and as 0 (compared stripped and lower-cased).
TRUE_LABELS = frozenset({"yes", "y", "true", "t"})
FALSE_LABELS = frozenset({"no", "n", "false", "f"})
#: Cells that count as missing in a text column.
MISSING_TEXT = ("", "nan", "NaN", "NA", "N/A", "null", "None")

log = logging.getLogger("vfl.data.table")


@dataclass(frozen=True)
class PartyTable:
    """One party's rows: normalised IDs, numeric features and (for B) labels."""

    source: str
    ids: list[str]
    features: np.ndarray
    feature_names: list[str]
    labels: np.ndarray | None = None
    label_name: str | None = None
    #: Text labels read as 1/0 (say {"no": 0, "yes": 1}), or None when the labels were numbers.
    label_mapping: dict[str, int] | None = None
    #: How the party's raw columns became ``features`` (missing values, categories), or None: they are the raw
    #: columns. Planned from the whole table; its fill values come later, from the training rows.
    preparation: Preparation | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> PartyTable:
        """The rows at ``rows`` (in that order), as a new table."""
        rows = np.asarray(rows, dtype=np.int64)
        return PartyTable(
            self.source,
            [self.ids[i] for i in rows],
            self.features[rows],
            self.feature_names,
            None if self.labels is None else self.labels[rows],
            self.label_name,
            self.label_mapping,
            self.preparation,
        )

    @cached_property
    def _index(self) -> dict[str, int]:
        """ID → row number, built once per table (the table is immutable)."""
        return {v: i for i, v in enumerate(self.ids)}

    def find(self, ids: list[str]) -> list[int | None]:
        """Row number of each of ``ids``, or None where the table does not hold it."""
        index = self._index
        return [index.get(v) for v in ids]

    def rows_for(self, ids: list[str]) -> np.ndarray:
        """Row numbers of ``ids``; unknown IDs are an error that lists a few of them."""
        index = self._index
        missing = [v for v in ids if v not in index]
        if missing:
            shown = ", ".join(repr(v) for v in missing[:5])
            raise UnknownIDError(f"{self.source}: {len(missing)} unknown ID(s): {shown}; only IDs present in the table can be scored")
        return np.array([index[v] for v in ids], dtype=np.int64)


def fill_for_training(table: PartyTable, config: TrainingConfig) -> PartyTable:
    """The aligned rows with missing numbers filled from the job's training rows only (:mod:`vfl.ml.prep`).

    The fill values (mean, median or constant) come from the rows the job trains on,
    as the standardisation does; the table's preparation then records them, for the
    model part. A table without a preparation is returned as it is.
    """
    preparation = table.preparation
    if preparation is None:
        return table
    train = Schedule(len(table), config).train_rows
    fitted = preparation.fitted(table.features[train])
    return replace(table, features=fitted.fill(table.features), preparation=fitted)


def load_csv(
    path: str | os.PathLike[str],
    *,
    id_column: str,
    label_column: str | None = None,
    model: ModelKind | None = None,
    feature_columns: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_missing: bool = False,
    prep: PrepConfig | None = None,
    id_rules: IdRules | None = None,
) -> PartyTable:
    """Read and check one party's CSV. Every cell is read as text first, so IDs keep their exact spelling."""
    return from_dataframe(
        read_csv_frame(path, max_bytes=max_bytes), id_column=id_column, label_column=label_column, model=model,
        feature_columns=feature_columns, source=str(path), allow_missing=allow_missing, prep=prep,
        id_rules=id_rules,
    )


def read_csv_frame(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """A CSV file as a frame of text cells, after the file-level checks of :func:`load_csv` (rows are not checked)."""
    source = str(path)
    file = _check_file(path, max_bytes)
    _check_header(file, source)
    try:
        return pd.read_csv(file, **_CSV_OPTIONS)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: no columns found; is this a CSV file with a header row?") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{source}: not a valid CSV file ({exc}); check the delimiter and quoting") from exc


def read_csv_ids(
    path: str | os.PathLike[str], id_column: str, *, chunk_rows: int = ID_CHUNK_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[list[str]]:
    """The ID column of a CSV, ``chunk_rows`` cells at a time, as :func:`read_csv_frame` reads it (raw text).

    Only that column is parsed, so memory is one chunk whatever the file's size. The
    file-level checks of :func:`read_csv_frame` run first, and a missing ID column is
    the error :func:`from_dataframe` gives; the cells are not normalised here.
    """
    source = str(path)
    file = _check_file(path, max_bytes)
    _check_header(file, source)
    try:
        columns = [str(c) for c in pd.read_csv(file, nrows=0, **_CSV_OPTIONS).columns]
        _require_column(columns, id_column, "ID", source, "--id-column")
        with pd.read_csv(file, usecols=[id_column], chunksize=max(1, chunk_rows), **_CSV_OPTIONS) as reader:
            for chunk in reader:
                if len(chunk):
                    yield chunk[id_column].tolist()
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: no columns found; is this a CSV file with a header row?") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{source}: not a valid CSV file ({exc}); check the delimiter and quoting") from exc


def load_parquet(
    path: str | os.PathLike[str],
    *,
    id_column: str,
    label_column: str | None = None,
    model: ModelKind | None = None,
    feature_columns: list[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PartyTable:
    """Read and check one party's Parquet file (needs ``pyarrow``: ``pip install 'vfl[parquet]'``), as :func:`load_csv`."""
    return from_dataframe(
        read_parquet_frame(path, max_bytes=max_bytes), id_column=id_column, label_column=label_column, model=model,
        feature_columns=feature_columns, source=str(path),
    )


def read_parquet_frame(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """A Parquet file as a frame (column types as stored), after the same file-level checks as a CSV."""
    source = str(path)
    file = _check_file(path, max_bytes)
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise DataError(f"{source}: reading Parquet needs pyarrow; install it with pip install 'vfl[parquet]'") from exc
    try:
        frame = pq.read_table(file).to_pandas()
    except (OSError, ValueError, TypeError) as exc:  # pyarrow.ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise DataError(f"{source}: not a valid Parquet file ({exc}); write it with pandas.DataFrame.to_parquet") from exc
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{source}: column name(s) {repeated} appear more than once; rename them")
    return frame


def read_parquet_ids(
    path: str | os.PathLike[str], id_column: str, *, chunk_rows: int = ID_CHUNK_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[list[object]]:
    """The ID column of a Parquet file, ``chunk_rows`` values at a time (record batches of that column only).

    The same file checks as :func:`read_parquet_frame`; a column that pandas would
    restore as the frame's index is not a column there, so it is not one here either.
    """
    source = str(path)
    file = _check_file(path, max_bytes)
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise DataError(f"{source}: reading Parquet needs pyarrow; install it with pip install 'vfl[parquet]'") from exc
    try:
        parquet = pq.ParquetFile(file)
        schema = parquet.schema_arrow
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        names = [n for n in schema.names if n not in index]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(f"{source}: column name(s) {repeated} appear more than once; rename them")
        _require_column(names, id_column, "ID", source, "--id-column")
        for batch in parquet.iter_batches(batch_size=max(1, chunk_rows), columns=[id_column], use_pandas_metadata=False):
            if batch.num_rows:
                yield batch.column(0).to_pylist()
    except (OSError, ValueError, TypeError) as exc:  # pyarrow.ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise DataError(f"{source}: not a valid Parquet file ({exc}); write it with pandas.DataFrame.to_parquet") from exc


def _check_file(path: str | os.PathLike[str], max_bytes: int) -> Path:
    source = str(path)
    file = Path(path)
    problem = file_problem(file, "CSV or Parquet file" if file.suffix.lower() in (".parquet", ".pq") else "CSV file")
    if problem is not None:
        raise DataError(problem)
    if not file.is_file():
        raise DataError(f"{source}: file not found; check the path")
    size = file.stat().st_size
    if size == 0:
        raise DataError(f"{source}: the file is empty; it needs a header row and data rows")
    if size > max_bytes:
        raise DataError(f"{source}: {size} bytes exceeds the limit of {max_bytes}; raise max_bytes or split the data")
    return file


def from_dataframe(
    frame: pd.DataFrame,
    *,
    id_column: str,
    label_column: str | None = None,
    model: ModelKind | None = None,
    feature_columns: list[str] | None = None,
    source: str = "DataFrame",
    allow_missing: bool = False,
    label_hints: LabelHints | None = None,
    prep: PrepConfig | None = None,
    id_rules: IdRules | None = None,
) -> PartyTable:
    """Check a DataFrame and turn it into a :class:`PartyTable` (the frame is not modified).

    ``allow_missing`` keeps missing feature cells as NaN (a scorecard bins them on their own) instead of
    refusing them; labels and IDs may never be missing. ``prep`` prepares the party's own columns
    (:mod:`vfl.ml.prep`): with ``impute`` set, missing numbers are kept as NaN for the training rows' fill
    value; text columns named in ``categorical`` are encoded. ``id_rules`` normalise the IDs first
    (:class:`vfl.data.ids.IdRules`).
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    frame = frame.rename(columns=str)  # a renamed copy: the caller's frame is untouched
    columns = list(frame.columns)
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataError(f"{source}: column name(s) {dup} appear more than once; rename them")
    _require_column(columns, id_column, "ID", source, "--id-column")
    if label_column is not None:
        _require_column(columns, label_column, "label", source, "--label-column")
    if len(frame) == 0:
        raise DataError(f"{source}: the table has a header but no data rows")
    ids = normalize_ids(frame[id_column].tolist(), source=f"{source}, column {id_column!r}", rules=id_rules)
    if feature_columns is None:
        feature_columns = [c for c in columns if c not in (id_column, label_column)]
    else:
        for c in feature_columns:
            _require_column(columns, c, "feature", source, "feature_columns")
    if not feature_columns:
        raise DataError(
            f"{source}: no feature columns besides the ID{' and label' if label_column else ''}; "
            "each party needs at least one feature to take part"
        )
    prep = prep if prep is not None and prep.active else None
    categorical = dict(prep.categorical) if prep is not None else {}
    unknown = sorted(set(categorical) - set(feature_columns))
    if unknown:
        raise DataError(f"{source}: categorical names column(s) {unknown} that are not feature columns; the feature "
                        f"columns are: {', '.join(feature_columns[:20])}. Fix --categorical",
                        # A peer (whose job's "prepare" may have named them) reads no column of this party's.
                        public=f"categorical names column(s) {unknown} that are not feature columns of the dataset; "
                               "fix categorical (in the job's prepare, or the dataset's config)")
    keep_missing = allow_missing or (prep is not None and prep.impute is not None)
    categories: dict[str, list[str]] = {}
    features = np.empty((len(ids), len(feature_columns)), dtype=np.float64)
    for j, c in enumerate(feature_columns):  # column by column into one matrix: no second copy of it
        if c in categorical:
            texts = category_texts(frame[c])
            categories[c] = sorted(set(texts))
            index = {value: float(i) for i, value in enumerate(categories[c])}
            features[:, j] = [index[t] for t in texts]
        else:
            features[:, j] = _numeric(frame[c], c, ids, source, "feature", allow_missing=keep_missing)
    preparation = None
    if prep is not None:
        preparation = Preparation.plan(list(feature_columns), features, prep, categories)
        if preparation.outputs != list(feature_columns) or categories:
            features = preparation.expand(features)
        feature_columns = preparation.outputs
    labels, mapping = None, None
    if label_column is not None:
        labels, mapping = _label_values(frame[label_column], label_column, ids, source, model)
        if model is not None:
            check_labels(labels, model, source, label_column, hints=label_hints)
        if mapping is not None:
            log.info("%s: label column %r holds text labels, read as %s", source, label_column, describe_mapping(mapping))
    return PartyTable(source, ids, features, list(feature_columns), labels, label_column, mapping, preparation)


def category_texts(column: pd.Series) -> list[str]:
    """A text column's cells as categories: stripped text, a missing cell as ``"(missing)"``."""
    out: list[str] = []
    for value in column.tolist():
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        out.append(MISSING_CATEGORY if text in MISSING_TEXT else text)
    return out


def describe_mapping(mapping: dict[str, int]) -> str:
    """``'no' → 0, 'yes' → 1``: how text labels were read."""
    return ", ".join(f"{text!r} → {value}" for text, value in sorted(mapping.items(), key=lambda kv: (kv[1], kv[0])))


def _label_values(column: pd.Series, name: str, ids: list[str], source: str, model: ModelKind | None,
                  ) -> tuple[np.ndarray, dict[str, int] | None]:
    """The label column as float64, and the mapping when it held yes/no-style text (see the module docstring)."""
    if pd.api.types.is_numeric_dtype(column):
        return _numeric(column, name, ids, source, "label"), None
    text = column.astype(str).str.strip()
    missing = text.isna() | text.isin(MISSING_TEXT)
    words = text[pd.to_numeric(text.where(~missing, None), errors="coerce").isna() & ~missing]
    if words.empty:
        return _numeric(column, name, ids, source, "label"), None
    seen = sorted(set(text[~missing]))
    shown = ", ".join(repr(v) for v in seen[:10]) + (f" ... ({len(seen)} distinct)" if len(seen) > 10 else "")
    lowered = {v: v.lower() for v in set(words)}
    unknown = sorted(v for v, low in lowered.items() if low not in TRUE_LABELS and low not in FALSE_LABELS)
    if model == "linear":
        if unknown:  # a stray word in a numeric target: name the cell
            return _numeric(column, name, ids, source, "label"), None
        raise DataError(
            f"{source}: label column {name!r} holds text ({shown}); linear regression needs a numeric target. "
            "For a yes/no label use --model logistic"
        )
    classes = sorted(set(text[~missing]))
    if len(words) == int((~missing).sum()) and 3 <= len(classes) <= MAX_CLASSES_CEILING and \
            not any(v.lower() in TRUE_LABELS | FALSE_LABELS for v in classes):
        # Class names (bus, van, saab, opel): numbered 0 … K−1 in sorted order, for one-vs-rest.
        mapping = {v: k for k, v in enumerate(classes)}
        return _numeric(text.map(lambda v: str(mapping.get(v, v))), name, ids, source, "label"), mapping
    if unknown:
        raise DataError(
            f"{source}: label column {name!r} holds text that is not a yes/no label; the values seen are {shown}. "
            "Logistic regression needs labels 0 and 1; yes/no, true/false, y/n and t/f (any case) are read as 1/0. "
            "Recode the column to 0 and 1 (1 for the class to predict); three or more class names train "
            "one-vs-rest"
        )
    mapping = {v: 1 if low in TRUE_LABELS else 0 for v, low in lowered.items()}
    recoded = text.map(lambda v: str(mapping[v]) if v in mapping else v)
    return _numeric(recoded, name, ids, source, "label"), mapping


@dataclass(frozen=True)
class LabelHints:
    """How a label error tells the user to fix it: CLI flags (``vfl simulate``) or the service's keys (REST)."""

    #: How to choose linear regression for a numeric target.
    linear: str = "--model linear"
    #: Where the label column is named.
    column: str = "--label-column"

    @classmethod
    def for_service(cls, dataset: str) -> LabelHints:
        """A service's answer names the job spec's JSON and the service config's keys, never CLI flags."""
        return cls(linear='"training": {"model": "linear"} in the job spec',
                   column=f"datasets.{dataset}.label_column in the service config")


#: The most classes a label may have to train one-vs-rest (``training.max_classes`` lowers it).
MAX_CLASSES_CEILING = 100


def _recode_hint(values: np.ndarray) -> str:
    """``1 → 0, 2 → 1`` for a two-valued label: the smaller value becomes 0."""
    low, high = (f"{v:g}" for v in values)
    return f"{low} → 0, {high} → 1"


def check_labels(labels: np.ndarray, model: ModelKind, source: str, column: str, *,
                 max_classes: int | None = None, hints: LabelHints | None = None) -> None:
    """Logistic regression needs labels 0 and 1 with both present, or 3 to ``max_classes`` whole-number classes
    (trained one-vs-rest, :mod:`vfl.ml.multiclass`).

    Without ``max_classes`` (loading a table, before the job's config is known) up to
    :data:`MAX_CLASSES_CEILING` classes pass, and a refusal speaks of the default cap.
    """
    if model != "logistic":
        return
    hints = hints or LabelHints()
    cap = DEFAULT_MAX_CLASSES if max_classes is None else max_classes
    values = np.unique(labels)
    if len(values) < 2:
        raise DataError(
            f"{source}: label column {column!r} holds only the class {values[0]:g}; "
            "logistic regression needs rows of at least two classes"
        )
    whole = bool(np.all(values == np.round(values)))
    if len(values) == 2:
        if set(values.tolist()) <= {0.0, 1.0}:
            return
        shown = ", ".join(f"{v:g}" for v in values)
        raise DataError(
            f"{source}: label column {column!r} has the values {shown}; a two-class logistic regression needs "
            f"labels 0 and 1. Recode the label ({_recode_hint(values)}, 1 for the class to predict)"
            + (f", or use {hints.linear} for a numeric target" if not whole else "")
            + f"; if this is the wrong column, check {hints.column}"
        )
    if whole and len(values) <= (MAX_CLASSES_CEILING if max_classes is None else max_classes):
        return  # multi-class: one-vs-rest
    examples = ", ".join(f"{v:g}" for v in values[:: max(1, len(values) // 5)][:5])
    if not whole:
        raise DataError(
            f"{source}: label column {column!r} looks numeric ({len(values)} distinct values, e.g. {examples}); "
            f"logistic regression needs class labels (0 and 1, or 3 to {cap} whole-number classes). "
            f"For a numeric target use {hints.linear}; if this is the wrong column, check {hints.column}"
        )
    raise DataError(
        f"{source}: label column {column!r} has {len(values)} distinct values (e.g. {examples}); one-vs-rest "
        f"logistic regression takes at most {cap} classes (training.max_classes, up to "
        f"{MAX_CLASSES_CEILING}). For a numeric target use {hints.linear}; if this is the wrong column, check "
        f"{hints.column}"
    )


def _check_header(file: Path, source: str) -> None:
    """Refuse repeated column names, which pandas would silently rename to ``name.1``."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{source}: cannot read the header row ({exc}); is this a UTF-8 CSV file?") from exc
    names = [h.strip() for h in header]
    if len(names) == 1:
        seen = [sep for sep in OTHER_SEPARATORS if sep in names[0]]
        if seen:
            shown = names[0] if len(names[0]) <= 80 else names[0][:77] + "..."
            raise DataError(
                f"{source}: the header is one column {shown!r}: the file seems to use "
                f"{' or '.join(OTHER_SEPARATORS[sep] for sep in seen)} between columns, and vfl reads comma-separated "
                f"files. Save it comma-separated (with pandas: pd.read_csv(path, sep={seen[0]!r}, dtype=str)"
                ".to_csv(new_path, index=False))"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{source}: column name(s) {repeated} appear more than once in the header; rename them")


def _require_column(columns: list[str], name: str, what: str, source: str, flag: str) -> None:
    if name not in columns:
        shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise DataError(f"{source}: no {what} column {name!r}; the columns are: {shown}. Fix {flag}")


def _numeric(column: pd.Series, name: str, ids: list[str], source: str, what: str, *,
             allow_missing: bool = False) -> np.ndarray:
    """A column as float64, with a precise error for text, missing (unless allowed: NaN) or infinite cells."""
    raw = column
    if not pd.api.types.is_numeric_dtype(raw):
        text = raw.astype(str).str.strip()
        missing = text.isna() | text.isin(MISSING_TEXT)  # pandas 3 keeps None as NaN
        values = pd.to_numeric(text.where(~missing, None), errors="coerce")
        not_numeric = values.isna() & ~missing
        if not_numeric.any():
            i = int(np.flatnonzero(not_numeric.to_numpy())[0])
            fix = ("the label must be a number" if what == "label" else
                   f"encode it as numbers, leave the column out, or let vfl encode it: Fix --categorical "
                   f"{name}=onehot (or ordinal)")
            raise DataError(
                f"{source}: {what} column {name!r} is not numeric (value {text.iloc[i]!r} for ID {ids[i]!r}); {fix}"
            )
    else:
        values = pd.to_numeric(raw, errors="coerce")
        missing = values.isna()
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if not allow_missing and np.isnan(arr).any():
        i = int(np.flatnonzero(np.isnan(arr))[0])
        count = int(np.isnan(arr).sum())
        raise DataError(
            f"{source}: {what} column {name!r} has {count} missing or NaN value(s), first for ID {ids[i]!r}; "
            + ("the label may never be missing; fill or drop those rows" if what == "label" else
               "fill or drop those rows, or turn on imputation (each party fills its own columns from its own "
               "training rows): Fix --impute mean (or median, constant); a scorecard job keeps them as a bin "
               "of their own")
        )
    if np.isinf(arr).any():
        i = int(np.flatnonzero(np.isinf(arr))[0])
        raise DataError(f"{source}: {what} column {name!r} is infinite for ID {ids[i]!r}; fix or drop that row")
    return arr
