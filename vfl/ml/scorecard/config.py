"""What a scorecard job asks for: binning, selection, points scaling, reasons and score bands.

A job spec's ``scorecard`` section (and ``vfl simulate --scorecard``'s
``--config``) is parsed into :class:`ScorecardConfig`. Every field has the
default a credit-risk team would start from (Siddiqi; R ``scorecard``):
IV-optimal coarse classing into at most 6 bins with a monotone event rate,
at least 5% of the rows and 5 events in every bin, characteristics with an
IV under 0.02 dropped, 600 points at odds 1:19 and 50 points to double them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vfl.errors import ConfigError
from vfl.ml.config import TrainingConfig
from vfl.ml.validation import describe

Method = Literal["equal_frequency", "chimerge", "iv_optimal"]
Monotone = Literal["none", "increasing", "decreasing", "auto"]


def training_problem(config: TrainingConfig) -> str | None:
    """Why a scorecard cannot be trained with ``config``, or None: it is a logistic model without
    differential privacy (its bins and points are exact, not noised)."""
    if config.model != "logistic":
        return (f"a scorecard is a logistic model, but the job asks for {config.model!r}; "
                "set training.model to \"logistic\" or drop the scorecard section")
    if config.privacy is not None:
        return ("a scorecard job cannot run with differential privacy: its bins and points are exact; "
                "drop training.privacy or the scorecard section")
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BinningSettings(_Strict):
    """How every party classes its characteristics (each party bins its own)."""

    method: Method = Field("iv_optimal", description="coarse classing: equal_frequency, chimerge or iv_optimal")
    fine_bins: int = Field(20, ge=2, le=50, description="equal-frequency fine classes before coarse classing")
    max_bins: int = Field(6, ge=2, le=20, description="at most this many coarse bins per characteristic (plus missing)")
    min_share: float = Field(0.05, gt=0, le=0.5, description="every bin holds at least this share of the rows")
    min_events: int = Field(5, ge=1, description="every coarse bin holds at least this many events and non-events")
    monotone: Monotone = Field("auto", description="the event rate across bins: increasing, decreasing, auto or none")
    monotone_by: dict[str, Monotone] = Field(
        default_factory=dict, description="per characteristic name, overriding `monotone`")

    def monotone_for(self, name: str) -> Monotone:
        return self.monotone_by.get(name, self.monotone)


class SelectionSettings(_Strict):
    """Which characteristics enter the model; each party applies the result to its own."""

    min_iv: float | None = Field(0.02, ge=0, description="drop characteristics under this IV (0.02: unpredictive)")
    top_k: int | None = Field(None, ge=1, description="keep at most this many characteristics per party, by IV")
    max_correlation: float | None = Field(
        0.9, gt=0, le=1, description="within a party: of two characteristics correlated beyond this, keep the higher IV")
    max_vif: float | None = Field(None, gt=1, description="within a party: drop characteristics until every VIF is below")
    stepwise: Literal["none", "backward"] = Field(
        "none", description="backward elimination across every party's characteristics, driven by the federated "
        "training loss (each round trains once per remaining characteristic; a step must lower BIC = 2·n·loss + "
        "columns·ln n); each party keeps at least one characteristic. vfl simulate --scorecard only")
    stepwise_max_steps: int = Field(10, ge=1, le=100, description="at most this many characteristics dropped")


class ScorecardConfig(_Strict):
    """A scorecard job: binning, selection, scaling to points, reasons and bands."""

    binning: BinningSettings = Field(default_factory=BinningSettings,
                                     description="how every party classes its characteristics into bins")
    selection: SelectionSettings = Field(default_factory=SelectionSettings,
                                         description="which characteristics enter the model")
    points0: float = Field(600.0, description="the score at odds0")
    odds0: float = Field(1 / 19, gt=0, description="odds of an event (bad:good) that score points0")
    pdo: float = Field(50.0, gt=0, description="points to double the odds")
    reasons: int = Field(4, ge=0, le=4, description="principal reasons returned for a scored applicant (Reg B: 4)")
    bands: int = Field(10, ge=2, le=50, description="score bands (equal-frequency on the training scores)")

    @model_validator(mode="after")
    def _check(self) -> ScorecardConfig:
        if self.binning.max_bins > self.binning.fine_bins:
            raise ValueError(f"binning.max_bins {self.binning.max_bins} exceeds binning.fine_bins "
                             f"{self.binning.fine_bins}: coarse classes are made by merging fine ones")
        return self

    @classmethod
    def parse(cls, data: dict | None) -> ScorecardConfig:
        """Validate a dict (a job spec's ``scorecard`` section) with a readable error."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            problems = describe(exc, ScorecardConfig, prefix="scorecard")
            raise ConfigError(f"invalid scorecard config: {problems}") from exc
