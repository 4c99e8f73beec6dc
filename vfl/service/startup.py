"""What ``vfl serve`` checks before it listens, and how a service names the config key to fix.

:func:`check_datasets` loads every configured dataset once, exactly as a job
would (every column, every cell), and refuses to start with one message that
names each bad dataset, its file (or table) and the TOML key to change::

    party-b.toml: 1 dataset cannot be used; fix it and start again:
      datasets.bank.label_column = "defualt": no such column in /data/bank.csv; the columns are: customer_id, ...

The check uses a source of its own and closes it, so nothing it read stays in
memory. The data is checked again whenever a job reads it (files change).

:func:`with_config_hint` rewrites the fix a data error names: the loaders of
:mod:`vfl.data.table` name the CLI's flags (``Fix --label-column``), which mean
nothing to the operator of a service; there the fix is a key of its config.
"""

from __future__ import annotations

import logging
import re
import time

from vfl.errors import ConfigError, DataError, VFLError
from vfl.data.dataset import DatasetSection
from vfl.service.config import ServiceConfig
from vfl.data.sources import open_source

log = logging.getLogger("vfl.service")

#: The fixes vfl.data.table and vfl.data.sources name, by the config key each means.
_HINTS = {
    "id_column": re.compile(r"Fix (?:--id-column|id_column in the config)"),
    "label_column": re.compile(r"Fix --label-column"),
    "impute": re.compile(r"Fix --impute mean \(or median, constant\)"),
    "categorical": re.compile(r"Fix --categorical(?: \S+=onehot \(or ordinal\))?"),
}


def key(name: str, field: str, dataset: DatasetSection) -> str:
    """``datasets.bank.label_column = "defualt"``: the TOML line an operator edits."""
    if field == "impute":
        return f'datasets.{name}.impute = "mean" (or "median", or "constant" with impute_value)'
    if field == "categorical":
        return f'datasets.{name}.categorical = {{ COLUMN = "onehot" }} (or "ordinal")'
    value = getattr(dataset, field)
    return f'datasets.{name}.{field} = "{value}"' if value is not None else f"datasets.{name}.{field}"


def with_config_hint(exc: VFLError, name: str, config: ServiceConfig) -> VFLError:
    """``exc`` with its CLI-flag fix replaced by the config key (and for peers, without our file's name)."""
    if name not in config.datasets:
        return exc
    text, public = str(exc), exc.public
    for field, pattern in _HINTS.items():
        if pattern.search(text):
            where = f" in {config.source}" if config.source is not None else ""
            text = pattern.sub(lambda _: f"Fix {key(name, field, config.datasets[name])}{where}", text)
        if public and pattern.search(public):
            public = pattern.sub(f"Fix datasets.{name}.{field} in the config of party {config.party.id!r}", public)
    if text != str(exc):
        exc.args = (text,)
    if public != exc.public:
        exc.public = public
    return exc


def _columns(dataset: DatasetSection) -> list[str] | None:
    """The column names of a file dataset, read from its header (or schema) only; None if that fails."""
    try:
        if dataset.kind == "csv":
            import pandas as pd

            return [str(c) for c in pd.read_csv(dataset.path, nrows=0, dtype=str, skipinitialspace=True).columns]
        if dataset.kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(dataset.path)
            index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
            return [n for n in schema.names if n not in index]
    except Exception:  # noqa: BLE001 - the full load below reports the problem in its own words
        return None
    return None  # a database table: the full load names its columns


def problem(config: ServiceConfig, name: str) -> str | None:
    """What is wrong with dataset ``name``, as one line naming the key to fix; None if a job could use it."""
    dataset = config.datasets[name]
    columns = _columns(dataset)
    if columns is not None:
        shown = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
        for field in ("id_column", "label_column"):
            wanted = getattr(dataset, field)
            if wanted is not None and wanted not in columns:
                return f"{key(name, field, dataset)}: no such column in {dataset.path}; the columns are: {shown}"
    source = open_source(name, dataset, max_bytes=config.limits.max_csv_bytes)
    started = time.perf_counter()
    try:
        table = source.table(None)
    except (DataError, ConfigError) as exc:
        where = f'datasets.{name}.path = "{dataset.path}"' if dataset.path is not None else \
            f'datasets.{name}.table = "{dataset.table}" (url, table)'
        return f"{where}: {with_config_hint(exc, name, config)}"
    finally:
        source.close()
    log.info("dataset %r (%s): %d rows, %d features%s, checked in %.1fs", name,
             dataset.path if dataset.path is not None else f"table {dataset.table!r}", len(table),
             table.features.shape[1], ", with labels" if table.labels is not None else "",
             time.perf_counter() - started)
    return None


def check_datasets(config: ServiceConfig) -> None:
    """Load every configured dataset; raise ConfigError naming each that cannot be used (and its key)."""
    problems = [p for p in (problem(config, name) for name in config.datasets) if p is not None]
    if problems:
        several = len(problems) > 1
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigError(f"{config.source or 'the config'}: {len(problems)} dataset{'s' if several else ''} cannot "
                          f"be used; fix {'them' if several else 'it'} and start again:\n{lines}")
