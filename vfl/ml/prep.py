"""What one party does to its own columns before training and before every score: missing values and categories.

Each party prepares only its own columns, with statistics of its own data, and
keeps the result with its own model part; no other party sees any of it.

Two steps, so that every party's width is known before the PSI (the job's
gradient lengths are fixed at registration):

* :meth:`Preparation.plan` (from the party's whole table, at load): which columns
  get a missing-value indicator (those with a missing cell anywhere in the table)
  and each text column's categories (sorted; a missing cell is the category
  ``"(missing)"``). :meth:`Preparation.expand` turns raw columns (numbers, and
  category codes for text columns) into the model's columns: one-hot columns
  ``name=value`` or one ordinal column, and an indicator ``name (missing)``.
  Missing numbers stay NaN here.
* :meth:`Preparation.fitted` (from the training rows only, after the PSI and the
  split): the value that fills each numeric column's missing cells: the mean,
  the median or a constant. :meth:`Preparation.fill` applies it.

Serving and batch scoring read the raw columns (:attr:`Preparation.inputs`),
then expand and fill with the model's own recorded values, so a new row is
treated exactly as the training rows were.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: How missing numbers are filled; None refuses them (the default).
ImputeKind = Literal["mean", "median", "constant"]
EncodingKind = Literal["onehot", "ordinal"]
UnseenRule = Literal["zeros", "refuse"]
#: The category a missing text cell counts as.
MISSING_CATEGORY = "(missing)"
#: The code of a category the preparation does not know (a new value at serving).
UNSEEN_CODE = -1.0


class PrepConfig(BaseModel):
    """How one party prepares its own columns (a ``[datasets.NAME]`` table's keys, or ``vfl simulate`` flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    impute: ImputeKind | None = Field(
        None, description="fill missing numbers with the training rows' mean or median, or with impute_value; "
                          "unset: a missing number refuses the dataset")
    impute_value: float = Field(0.0, description="the value for impute = \"constant\"")
    missing_indicator: bool = Field(
        False, description="add a 0/1 column 'NAME (missing)' for each column with a missing cell in the dataset")
    categorical: dict[str, EncodingKind] = Field(
        default_factory=dict, description="text columns to encode, each \"onehot\" or \"ordinal\"")
    unseen_category: UnseenRule = Field(
        "zeros", description="a category not seen in training, at serving: \"zeros\" (all one-hot columns 0; "
                             "ordinal: the code -1) or \"refuse\" (the ID gets the status 'unseen category: NAME')")

    @model_validator(mode="after")
    def _value_with_constant(self) -> PrepConfig:
        if self.impute != "constant" and "impute_value" in self.model_fields_set and self.impute_value != 0.0:
            raise ValueError('impute_value goes with impute = "constant"')
        return self

    @property
    def active(self) -> bool:
        return self.impute is not None or self.missing_indicator or bool(self.categorical)


#: The keys of a job's ``prepare`` entry that change how missing numbers are filled (see :class:`JobPrepare`).
FILLING_KEYS = ("impute", "impute_value", "missing_indicator")


class JobPrepare(BaseModel):
    """One party's entry in a job spec's ``"prepare"``: the dataset's preparation keys this job sets otherwise.

    Each key given replaces the dataset's own (``categorical`` adds to or changes the dataset's encodings, column
    by column); a key not given keeps the dataset's. ID normalisation (``ids``) stays a dataset key: every model
    of a dataset, and party B's requests, must name a customer by the same ID.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    impute: ImputeKind | None = Field(
        None, description="fill missing numbers with the training rows' mean or median, or with impute_value; "
                          "only where the party's dataset sets impute itself (docs/data-features.md)")
    impute_value: float | None = Field(None, description="the value for impute = \"constant\" (as impute)")
    missing_indicator: bool | None = Field(
        None, description="add a 0/1 column 'NAME (missing)' for each column with a missing cell in the dataset "
                          "(as impute)")
    categorical: dict[str, EncodingKind] | None = Field(
        None, description="columns to encode, each \"onehot\" or \"ordinal\", added to the dataset's own")
    unseen_category: UnseenRule | None = Field(
        None, description="a category not seen in training, at serving: \"zeros\" or \"refuse\"")

    @model_validator(mode="before")
    @classmethod
    def _no_id_rules(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ids" in data:
            raise ValueError("ids (ID normalisation) is set per dataset only, in [datasets.NAME] ids = {...} of the "
                             "party's config: every model of a dataset must find a customer under the same ID. "
                             "Drop \"ids\" from the job's prepare entry")
        return data

    @model_validator(mode="after")
    def _value_with_constant(self) -> JobPrepare:
        if self.impute_value is not None and self.impute is not None and self.impute != "constant":
            raise ValueError('impute_value goes with impute = "constant"')
        return self

    @property
    def given(self) -> dict[str, Any]:
        """The keys this entry sets, with their values."""
        return {name: getattr(self, name) for name in self.model_fields_set if getattr(self, name) is not None}

    @property
    def changes_filling(self) -> bool:
        """Does this entry change how missing numbers are filled (impute, impute_value, missing_indicator)?"""
        return any(key in self.given for key in FILLING_KEYS)

    def over(self, base: PrepConfig) -> PrepConfig:
        """``base`` (the dataset's preparation) with this entry's keys in place of its own."""
        given = self.given
        settings = base.model_dump()
        settings.update({k: v for k, v in given.items() if k != "categorical"})
        settings["categorical"] = {**base.categorical, **given.get("categorical", {})}
        if "impute" in given and given["impute"] != "constant" and "impute_value" not in given:
            settings["impute_value"] = 0.0  # the dataset's constant goes with the dataset's "constant"
        return PrepConfig(**settings)


@dataclass(frozen=True)
class Preparation:
    """One party's column preparation: planned from its whole table, filled from its training rows."""

    inputs: list[str]
    #: Text columns → their categories (the code of a category is its index).
    categories: dict[str, list[str]] = field(default_factory=dict)
    encodings: dict[str, EncodingKind] = field(default_factory=dict)
    #: Columns that get a "(missing)" indicator.
    indicators: list[str] = field(default_factory=list)
    impute: ImputeKind | None = None
    impute_value: float = 0.0
    unseen_category: UnseenRule = "zeros"
    #: Output column → the value that fills its missing cells (set by :meth:`fitted`).
    fills: dict[str, float] | None = None
    #: Output column → missing cells on the training rows (what :meth:`fitted` saw; a count, no values).
    missing_on_training: dict[str, int] = field(default_factory=dict)

    @classmethod
    def plan(cls, inputs: list[str], raw: np.ndarray, config: PrepConfig,
             categories: dict[str, list[str]] | None = None) -> Preparation:
        """The layout from the party's whole table: ``raw`` holds numbers, and codes for the text columns."""
        raw = np.asarray(raw, dtype=np.float64)
        categories = dict(categories or {})
        indicators: list[str] = []
        if config.missing_indicator:
            indicators = [n for j, n in enumerate(inputs) if n not in categories and np.isnan(raw[:, j]).any()]
        return cls(list(inputs), categories, {n: config.categorical[n] for n in categories}, indicators,
                   config.impute, float(config.impute_value), config.unseen_category)

    @property
    def outputs(self) -> list[str]:
        """The model's columns, in order: each input's own column(s), then the indicators."""
        names: list[str] = []
        for name in self.inputs:
            if self.encodings.get(name) == "onehot":
                names.extend(f"{name}={value}" for value in self.categories[name])
            else:
                names.append(name)
        return names + [f"{name} (missing)" for name in self.indicators]

    def expand(self, raw: np.ndarray) -> np.ndarray:
        """Raw columns (numbers; codes for text columns, −1 unseen) → the model's columns, missing numbers NaN."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} raw columns, got {raw.shape[-1] if raw.ndim else 0}")
        blocks: list[np.ndarray] = []
        for j, name in enumerate(self.inputs):
            column = raw[:, j]
            if self.encodings.get(name) == "onehot":
                values = np.arange(len(self.categories[name]), dtype=np.float64)
                blocks.append((column[:, None] == values[None, :]).astype(np.float64))  # −1: all zeros
            else:
                blocks.append(column[:, None])
        for name in self.indicators:
            blocks.append(np.isnan(raw[:, self.inputs.index(name)])[:, None].astype(np.float64))
        return np.hstack(blocks) if blocks else np.empty((raw.shape[0], 0))

    def fitted(self, expanded_train: np.ndarray) -> Preparation:
        """The fill values from the training rows (the model's columns, missing numbers NaN)."""
        X = np.asarray(expanded_train, dtype=np.float64)
        fills: dict[str, float] = {}
        missing: dict[str, int] = {}
        for j, name in enumerate(self.outputs):
            column = X[:, j]
            absent = np.isnan(column)
            if absent.any():
                missing[name] = int(absent.sum())
            if self.impute is None:
                continue
            seen = column[~absent]
            if self.impute == "constant":
                fills[name] = self.impute_value
            elif seen.size == 0:  # missing on every training row: a constant column, which carries nothing
                fills[name] = 0.0
            else:
                fills[name] = float(seen.mean() if self.impute == "mean" else np.median(seen))
        return replace(self, fills=fills, missing_on_training=missing)

    def fill(self, expanded: np.ndarray) -> np.ndarray:
        """Missing cells filled with the recorded values (a new array); cells of columns without a value stay NaN."""
        out = np.array(expanded, dtype=np.float64)
        if not self.fills:
            return out
        for j, name in enumerate(self.outputs):
            value = self.fills.get(name)
            if value is not None:
                column = out[:, j]
                column[np.isnan(column)] = value
        return out

    def encode(self, name: str, texts: list[str | None]) -> np.ndarray:
        """Codes of one text column's cells by this preparation's categories (missing → "(missing)", unseen → −1)."""
        index = {value: float(i) for i, value in enumerate(self.categories.get(name, []))}
        return np.array([index.get(MISSING_CATEGORY if t is None else t, UNSEEN_CODE) for t in texts],
                        dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """What the preparation does, for the result and the report (column names and counts, never values of rows)."""
        return {
            "impute": self.impute,
            "impute_value": self.impute_value if self.impute == "constant" else None,
            "indicators": list(self.indicators),
            "categorical": {n: {"encoding": self.encodings[n], "categories": len(self.categories[n])}
                            for n in self.categories},
            "unseen_category": self.unseen_category if self.categories else None,
            "missing_on_training_rows": dict(self.missing_on_training),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs), "categories": {k: list(v) for k, v in self.categories.items()},
            "encodings": dict(self.encodings), "indicators": list(self.indicators), "impute": self.impute,
            "impute_value": self.impute_value, "unseen_category": self.unseen_category,
            "fills": None if self.fills is None else dict(self.fills),
            "missing_on_training": dict(self.missing_on_training),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Preparation | None:
        if not data:
            return None
        return cls(list(data["inputs"]), {k: list(v) for k, v in data.get("categories", {}).items()},
                   dict(data.get("encodings", {})), list(data.get("indicators", [])), data.get("impute"),
                   float(data.get("impute_value", 0.0)), data.get("unseen_category", "zeros"),
                   None if data.get("fills") is None else {k: float(v) for k, v in data["fills"].items()},
                   {k: int(v) for k, v in data.get("missing_on_training", {}).items()})


__all__ = ["FILLING_KEYS", "MISSING_CATEGORY", "UNSEEN_CODE", "JobPrepare", "PrepConfig", "Preparation"]
