"""A party's datasets by name, each opened once: whole tables for training, rows by ID for serving.

Peers name datasets, never files: the mapping from a name to a file or a
database table is this party's own config. Errors name the file for this
party's operators, with the config key to fix; each error's ``public`` names
only the dataset, which is what a peer reads (:mod:`vfl.service.redact`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vfl.data.ids import normalize_id
from vfl.data.sources import DataSource, Lookup, open_source
from vfl.data.table import PartyTable
from vfl.errors import ConfigError, DataError
from vfl.ml.prep import FILLING_KEYS, JobPrepare, PrepConfig, Preparation
from vfl.service.config import ServiceConfig
from vfl.service.startup import with_config_hint


class Datasets:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._sources: dict[str, DataSource] = {}

    def source(self, name: str) -> DataSource:
        """Where dataset ``name`` comes from (file or database), opened on first use."""
        source = self._sources.get(name)
        if source is not None:
            return source
        dataset = self.config.datasets.get(name)
        if dataset is None:
            known = ", ".join(sorted(self.config.datasets)) or "none"
            raise DataError(f"party {self.config.party.id!r} has no dataset named {name!r}; it has: {known}")
        opened = open_source(name, dataset, max_bytes=self.config.limits.max_csv_bytes)
        return self._sources.setdefault(name, opened)

    def table(self, name: str, model: str | None = None, prepare: JobPrepare | None = None) -> PartyTable:
        """Dataset ``name``, every row checked strictly; a file is read again when it changes.

        ``prepare`` is the job's own entry of its spec's ``"prepare"`` for this party: the table is prepared
        by the dataset's keys with the entry's in their place (:meth:`job_prep`).
        """
        prep = None if prepare is None else self.job_prep(name, prepare)
        try:
            return self.source(name).table(model, prep)
        except DataError as exc:  # the loaders name CLI flags; a service's fix is a key of its config
            with_config_hint(exc, name, self.config)
            raise

    def job_prep(self, name: str, prepare: JobPrepare) -> PrepConfig:
        """Dataset ``name``'s preparation with a job's ``prepare`` entry in place of its keys, or why not.

        A job may change how missing numbers are filled (impute, impute_value, missing_indicator) only where the
        dataset's own config sets ``impute``: that key is its operator's consent to fill this dataset's gaps at
        all, and the start-up check refuses a dataset with gaps without it. Categories and the unseen-category
        rule may be set by any job.
        """
        self.source(name)  # a name this party has no dataset under: the error naming the ones it has
        dataset = self.config.datasets[name]
        me = self.config.party.id
        if prepare.changes_filling and dataset.impute is None:
            keys = ", ".join(k for k in FILLING_KEYS if k in prepare.given)
            raise ConfigError(
                f"the job's prepare.{me} sets {keys}, but dataset {name!r} of {me!r} sets no impute: a job may "
                "change how missing numbers are filled only where the dataset's config allows filling them. Drop "
                f"{keys} from prepare.{me}, or have {me!r} set datasets.{name}.impute in its config")
        try:
            return prepare.over(dataset.prep)
        except ValidationError as exc:
            problems = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
            raise ConfigError(f"the job's prepare.{me} does not fit dataset {name!r} of {me!r}: {problems}. Fix "
                              f"prepare.{me} in the job spec") from None

    def prepared_lookup(self, name: str, ids: list[str], preparation: Preparation) -> Lookup:
        """Rows of ``ids`` as a model with this preparation reads them: its raw columns, expanded and filled."""
        try:
            return self.source(name).prepared_lookup(ids, preparation)
        except DataError as exc:
            with_config_hint(exc, name, self.config)
            raise

    def model_lookup(self, name: str, ids: list[str], model: Any) -> Lookup:
        """Rows of ``ids`` in a model part's columns (prepared when the model records a preparation)."""
        if getattr(model, "preparation", None) is not None:
            return self.prepared_lookup(name, ids, model.preparation)
        return self.lookup(name, ids, model.feature_names)

    def canonical_ids(self, name: str, ids: list[str]) -> list[str]:
        """``ids`` as dataset ``name``'s ID rules write them (the form the PSI matched); unchanged without rules.

        Party B sends the feature parties the IDs of its own rows in this form, so a request in B's raw
        spelling ("099" where B strips leading zeros) reaches them as the ID the job aligned ("99").
        """
        dataset = self.config.datasets.get(name)
        if dataset is None or not dataset.ids.active:
            return ids
        out = []
        for value in ids:
            try:
                out.append(normalize_id(value, source="request", position=0, rules=dataset.ids))
            except DataError:
                out.append(value)  # not an ID at all: every party answers "unknown id"
        return out

    def lookup(self, name: str, ids: list[str], feature_names: list[str]) -> Lookup:
        """Features of ``ids`` in dataset ``name`` by column name, with a status per ID (serving)."""
        try:
            return self.source(name).lookup(ids, feature_names)
        except DataError as exc:
            with_config_hint(exc, name, self.config)
            raise

    def close(self) -> None:
        """Close every opened source (a database's connection pool)."""
        for source in list(self._sources.values()):
            source.close()
        self._sources.clear()


__all__ = ["Datasets"]
