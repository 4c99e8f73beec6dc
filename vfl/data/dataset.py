"""Where one dataset's rows come from: a file or a database table (a ``[datasets.NAME]`` table of a service config).

A peer names a dataset, never a path: the mapping from name to file or table
stays in this party's own config (:mod:`vfl.service.config`), which builds these.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vfl.data.ids import IdRules
from vfl.ml.prep import EncodingKind, ImputeKind, PrepConfig, UnseenRule

#: The largest dataset file read unless a service says otherwise ([limits] max_csv_bytes).
DEFAULT_MAX_BYTES = 2 * 1024**3


class DatasetSection(BaseModel):
    """A file (``path``) or a database table (``url`` + ``table``); see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    path: Path | None = None
    format: Literal["csv", "parquet"] | None = Field(None, description="inferred from the file name when not given")
    url: str | None = Field(None, description="SQLAlchemy URL, e.g. sqlite:///bank.db or postgresql+psycopg://u@h/db")
    table: str | None = Field(None, min_length=1, description="the database table, with url")
    db_schema: str | None = Field(None, alias="schema", min_length=1, description="the table's schema, with url")
    id_column: str
    label_column: str | None = None
    # How this party prepares its own columns (vfl.ml.prep): fitted on its own training rows, kept in its model part.
    impute: ImputeKind | None = Field(None, description="fill missing numbers: mean, median or constant")
    impute_value: float = Field(0.0, description='the value for impute = "constant"')
    missing_indicator: bool = Field(False, description="add a 0/1 'NAME (missing)' column per column with gaps")
    categorical: dict[str, EncodingKind] = Field(default_factory=dict,
                                                 description='text columns to encode: {col = "onehot"} or "ordinal"')
    unseen_category: UnseenRule = Field("zeros", description='a new category at serving: "zeros" or "refuse"')
    ids: IdRules = Field(default_factory=IdRules, description="ID normalisation rules applied before the PSI")

    @model_validator(mode="after")
    def _prep_keys(self) -> DatasetSection:
        if self.impute_value != 0.0 and self.impute != "constant":
            raise ValueError('impute_value goes with impute = "constant"')
        if self.missing_indicator and self.impute is None:
            raise ValueError('missing_indicator goes with impute ("mean", "median" or "constant"): the missing '
                             "cells still need a value")
        return self

    @property
    def prep(self) -> PrepConfig:
        """The column preparation these keys describe."""
        return PrepConfig(impute=self.impute, impute_value=self.impute_value, missing_indicator=self.missing_indicator,
                          categorical=dict(self.categorical), unseen_category=self.unseen_category)

    @model_validator(mode="before")
    @classmethod
    def _infer_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("path") is not None and data.get("format") is None:
            suffix = Path(str(data["path"])).suffix.lower()
            data = {**data, "format": "parquet" if suffix in (".parquet", ".pq") else "csv"}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSection:
        if self.path is not None and (self.url is not None or self.table is not None):
            raise ValueError(
                'a dataset is either a file or a database table: keep path = "file.csv", '
                'or url = "sqlite:///file.db" with table = "customers", not both'
            )
        if self.path is None:
            if self.url is None or self.table is None:
                raise ValueError(
                    'a dataset needs path = "file.csv" (or .parquet), or a database table: '
                    'url = "sqlite:///file.db" (or "postgresql+psycopg://user@host:5432/db") and table = "customers"'
                )
            if not re.match(r"^[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?://", self.url):
                raise ValueError(
                    'url must be a SQLAlchemy URL such as "sqlite:///file.db" or '
                    '"postgresql+psycopg://user@host:5432/db"'
                )
            if self.format is not None:
                raise ValueError("format applies to a file (path); remove it from a database dataset")
            if self.ids.active:
                raise ValueError("ids rules apply to file datasets; for a database table normalise the ID column in "
                                 "a view (e.g. SELECT ltrim(id, '0') AS id, ...) and name the view as table")
        elif self.db_schema is not None:
            raise ValueError("schema applies to a database table (url + table); remove it from a file dataset")
        return self

    @property
    def kind(self) -> Literal["csv", "parquet", "sql"]:
        """Where the rows come from."""
        return "sql" if self.path is None else (self.format or "csv")
