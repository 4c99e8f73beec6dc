"""The job spec an orchestrator submits to party B, and what B tells its peers.

A job spec names datasets and peers only by name; each service maps names to
files and URLs in its own config::

    {
      "job_id": "default-risk-2026-11",          # optional; generated when absent
      "feature_parties": [{"peer": "shop", "dataset": "behaviour"}],   # or "party_a": {...}
      "party_b": {"dataset": "credit"},
      "arbiter": {"peer": "arbiter"},            # optional when B has one arbiter peer
      "training": {"model": "logistic", "epochs": 30, "validation_fraction": 0.2},
      "psi": {"key_bits": 2048}
    }
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vfl.config import TrainingConfig
from vfl.errors import ConfigError
from vfl.protocol.messages import JOB_ID_PATTERN
from vfl.service.config import PARTY_ID_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PartyARef(_Strict):
    peer: str = Field(pattern=PARTY_ID_PATTERN)
    dataset: str = Field(min_length=1, max_length=128)
    n_features: int | None = Field(
        None, ge=1, le=100_000,
        description="optional: the feature count party A must confirm; A states it at registration otherwise")


class PartyBRef(_Strict):
    dataset: str = Field(min_length=1, max_length=128)


class ArbiterRef(_Strict):
    peer: str = Field(pattern=PARTY_ID_PATTERN)


class PsiSettings(_Strict):
    key_bits: int = Field(2048, ge=1024, le=8192)


class JobSpec(_Strict):
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN)
    #: The feature parties: ``feature_parties`` (a list) or the two-party ``party_a``; one of the two.
    party_a: PartyARef | None = None
    feature_parties: list[PartyARef] | None = Field(None, min_length=1, max_length=64)
    party_b: PartyBRef
    arbiter: ArbiterRef | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    psi: PsiSettings = Field(default_factory=PsiSettings)

    @model_validator(mode="after")
    def _one_feature_party_list(self) -> JobSpec:
        both = self.party_a is not None and self.feature_parties is not None
        if (self.party_a is None and self.feature_parties is None) or (both and self.feature_parties != [self.party_a]):
            raise ValueError("name the feature parties once: either \"feature_parties\": [{\"peer\", \"dataset\"}, ...] "
                             "or the two-party \"party_a\": {\"peer\", \"dataset\"}")
        parties = self.feature_parties or [self.party_a]
        peers = [p.peer for p in parties]
        if len(set(peers)) != len(peers):
            raise ValueError(f"feature_parties names a peer twice: {peers}")
        if len(parties) > 1:
            # The protocol, `vfl simulate` and the Python API run k feature parties; the
            # services' registration, alignment and resume do not yet (issue 12).
            raise ValueError(f"this version's services run one feature party per job, got {len(parties)} "
                             f"({', '.join(peers)}); train several with `vfl simulate --party-a F1 --party-a F2 ...` "
                             "for now")
        # Both forms name the same party from here on (a stored spec is read back with both).
        object.__setattr__(self, "party_a", parties[0])
        object.__setattr__(self, "feature_parties", list(parties))
        return self

    @classmethod
    def parse(cls, data: Any) -> JobSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid job spec: {describe(exc)}") from exc


def new_job_id() -> str:
    return "job-" + secrets.token_hex(6)


class Registration(_Strict):
    """What B sends A and C so each can check the job against its own config."""

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    parties: dict[str, str] = Field(description="role letter → party id, for A, B and C")
    dataset: str | None = Field(None, description="party A's dataset name (only in A's copy)")
    training: TrainingConfig
    psi: PsiSettings
    psi_ids: int | None = Field(
        None, ge=1, description="party B's ID count for the alignment: A refuses a count above its caps at once, "
        "and B's declaration in the PSI must match it")
    gradient_lengths: dict[Literal["A", "B"], int] = Field(
        description="each party's gradient length: B's (and A's when the spec fixes it) in A's copy, "
        "both in the arbiter's. The arbiter decrypts vectors of exactly these lengths.")

    @field_validator("gradient_lengths")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        if any(not 1 <= n <= 1_000_000 for n in value.values()):
            raise ValueError("every gradient length must be between 1 and 1,000,000")
        return value


class TrainingStart(_Strict):
    """B → A and C once the rows are aligned: how many rows the schedule has."""

    n_rows: int = Field(ge=2)


class ResumeRequest(_Strict):
    """B → A and C: go back to the state after ``epoch`` (−1: before training) under a new generation."""

    epoch: int = Field(ge=-1)
    generation: int = Field(ge=1)


class ScoreQuery(_Strict):
    ids: list[str] = Field(min_length=1)


class FailureNotice(_Strict):
    """A peer reports that the job failed (or was cancelled, or finished) there.

    ``generation`` is the job's generation at the sender when it stopped: a notice
    sent before a resume, delivered after it, must not fail the resumed job.
    """

    reason: str = Field(max_length=4000)
    generation: int = Field(0, ge=0)


class InterruptionNotice(_Strict):
    """A restarted A or C → B: resume the job. ``generation`` is the restarted party's, moved on at restart."""

    reason: str = Field(max_length=4000)
    generation: int = Field(ge=0)


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
