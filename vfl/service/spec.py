"""The job spec an orchestrator submits to party B, and what B tells its peers.

A job spec names datasets and peers only by name; each service maps names to
files and URLs in its own config::

    {
      "job_id": "default-risk-2026-11",          # optional; generated when absent
      "feature_parties": [{"peer": "shop", "dataset": "behaviour"},    # one or more; or the two-party
                          {"peer": "telco", "dataset": "usage"}],      # "party_a": {...} (exactly one form)
      "party_b": {"dataset": "credit"},
      "arbiter": {"peer": "arbiter"},            # optional when B has one arbiter peer
      "training": {"model": "logistic", "epochs": 30, "validation_fraction": 0.2},
      "psi": {"key_bits": 2048}
    }
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from vfl.data.ids import MAX_ID_LENGTH
from vfl.errors import ConfigError
from vfl.ml import validation
from vfl.ml.config import DEFAULT_MAX_CLASSES, TrainingConfig
from vfl.ml.prep import JobPrepare
from vfl.ml.scorecard.config import ScorecardConfig, training_problem
from vfl.protocol.messages import JOB_ID_PATTERN
from vfl.protocol.roster import Roster
from vfl.service.config import PARTY_ID_PATTERN

#: One entity ID in a request: text of at most :data:`~vfl.data.ids.MAX_ID_LENGTH` characters, so a
#: request's size bounds what its IDs cost to hash, store and compare.
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeaturePartyRef(_Strict):
    peer: str = Field(pattern=PARTY_ID_PATTERN)
    dataset: str = Field(min_length=1, max_length=128)
    n_features: int | None = Field(
        None, ge=1, le=100_000,
        description="optional: the feature count party A must confirm; A states it at registration otherwise")


class LabelPartyRef(_Strict):
    dataset: str = Field(min_length=1, max_length=128)


class ArbiterRef(_Strict):
    peer: str = Field(pattern=PARTY_ID_PATTERN)


#: Which party of each pair holds the large set in an unbalanced PSI (``psi.large_side``).
LARGE_SIDES = ("label", "feature")


class PsiSettings(_Strict):
    key_bits: int = Field(2048, ge=1024, le=8192, description="RSA PSI: party A's key size (unused by ECDH)")
    protocol: Literal["rsa", "ecdh"] = Field(
        "rsa", description="the PSI's math: RSA blind signatures (the default) or Diffie-Hellman over "
                           "X25519; every feature party must list it in its [psi] protocols")
    unbalanced: bool = Field(
        False, description="ECDH only: one side is much larger (psi.large_side, party B by default). The large "
                           "side encrypts its set once per partner (offline, kept for [psi] offline_key_days) and "
                           "the small side keeps its tags between jobs; a job's online work and bytes then follow "
                           "the small side's set size")
    large_side: Literal["label", "feature"] = Field(
        "label", description="unbalanced jobs: which party holds the large set, keeps the key and the offline set: "
                             "\"label\" (party B, the default) or \"feature\" (each feature party, against B as "
                             "the small side; each pair is its own alignment)")

    @field_validator("large_side", mode="before")
    @classmethod
    def _large_side_known(cls, value: object) -> object:
        # Before pydantic's own check, so the refusal says what each value means.
        if value not in LARGE_SIDES:
            raise ValueError(f"psi.large_side must be \"label\" (party B holds the large set, the default) or "
                             f"\"feature\" (the feature parties do), not {value!r}")
        return value

    @model_validator(mode="after")
    def _unbalanced_is_ecdh(self) -> PsiSettings:
        if self.unbalanced and self.protocol != "ecdh":
            raise ValueError("psi.unbalanced needs \"protocol\": \"ecdh\" (the RSA PSI has no offline set)")
        if self.large_side != "label" and not self.unbalanced:
            raise ValueError("psi.large_side applies to unbalanced jobs only: add \"unbalanced\": true (and "
                             "\"protocol\": \"ecdh\"), or leave psi.large_side out")
        return self


class ContributionSettings(_Strict):
    """How party B measures what each feature party adds (``"contributions": true`` takes the defaults)."""

    permutations: int | None = Field(
        None, ge=2, le=10_000,
        description="sample this many orders of the feature parties (permutation sampling, with standard errors) "
                    "instead of computing exact Shapley values; exact is the default up to 4 feature parties, "
                    "20 orders above")
    seed: int = Field(0, ge=0, description="seeds the sampled orders")


class JobSpec(_Strict):
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN)
    #: The feature parties: ``feature_parties`` (a list) or the two-party ``party_a``; one of the two.
    party_a: FeaturePartyRef | None = None
    feature_parties: list[FeaturePartyRef] | None = Field(None, min_length=1, max_length=64)
    party_b: LabelPartyRef
    arbiter: ArbiterRef | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    psi: PsiSettings = Field(default_factory=PsiSettings)
    contributions: bool | ContributionSettings = Field(
        False, description="after the job, party B trains every coalition of feature parties the Shapley values "
                           "need (with B, through the same protocol, on the job's aligned rows) and reports each "
                           "feature party's Shapley value and leave-one-out figure; true, or the settings")
    reuse_alignment: str | None = Field(
        None, pattern=JOB_ID_PATTERN,
        description="train on the aligned rows of this earlier succeeded job instead of running the PSI again; "
                    "every feature party must have taken part in it with the same dataset (party B's coalition "
                    "trainings use this)")
    one_vs_rest_class: float | None = Field(
        None, description="train this class of party B's label against the rest (1 where the label equals it, "
                          "else 0). Party B sets it on the class trainings of a multi-class job; a label with 3 "
                          "or more classes otherwise trains one-vs-rest by itself (see docs/multiclass.md)")
    scorecard: ScorecardConfig | None = Field(
        None, description="a credit scorecard: every party bins its characteristics (a feature party's event "
                          "counts from party B's encrypted labels), selection by IV and correlation, a logistic "
                          "model on the binned characteristics with constrained signs, points kept by each party, "
                          "reason codes; {} takes the defaults")
    prepare: dict[Annotated[str, Field(pattern=PARTY_ID_PATTERN)], JobPrepare] | None = Field(
        None, description="per party id, how that party prepares its own columns in this job: the keys of a "
                          "[datasets.NAME] table (impute, impute_value, missing_indicator, categorical, "
                          "unseen_category) in place of its dataset's; each party receives only its own entry and "
                          "records what it used in its model part (see docs/data-features.md)")

    @model_validator(mode="after")
    def _scorecard_training(self) -> JobSpec:
        if self.scorecard is not None:
            problem = training_problem(self.training)
            if problem is not None:
                raise ValueError(problem)
            if self.scorecard.selection.stepwise != "none":
                raise ValueError("scorecard.selection.stepwise runs in `vfl simulate --scorecard` only for now; "
                                 "the services select by IV, correlation and VIF: drop \"stepwise\"")
            if self.contributions:
                raise ValueError("a scorecard job does not measure contributions yet: drop \"contributions\"")
            if self.one_vs_rest_class is not None:
                raise ValueError("a scorecard is binary only: drop \"one_vs_rest_class\"")
            if self.prepare:
                raise ValueError("a scorecard keeps missing values as a bin of their own and bins its own "
                                 "characteristics: drop \"prepare\"")
        return self

    @property
    def contribution_settings(self) -> ContributionSettings | None:
        """The contributions asked for, or None."""
        if self.contributions is True:
            return ContributionSettings()
        return self.contributions or None

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
        # Both forms name the same parties from here on: ``party_a`` the first feature party,
        # ``feature_parties`` all of them (see :meth:`stored` for the form a job record keeps).
        object.__setattr__(self, "party_a", parties[0])
        object.__setattr__(self, "feature_parties", list(parties))
        return self

    def stored(self) -> dict[str, Any]:
        """The spec as a job record keeps it: read back by :meth:`parse` unchanged."""
        data = self.model_dump(mode="json")
        if len(self.feature_parties or ()) > 1:
            data.pop("party_a")
        return data

    @classmethod
    def parse(cls, data: Any) -> JobSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid job spec: {describe(exc)}") from exc


def new_job_id() -> str:
    return "job-" + secrets.token_hex(6)


PartyId = Annotated[str, Field(pattern=PARTY_ID_PATTERN)]


class RosterRef(_Strict):
    """The job's parties by role, as ids: the feature parties in order, the label party B, the arbiter C."""

    features: list[PartyId] = Field(min_length=1, max_length=64)
    label: PartyId
    arbiter: PartyId

    @model_validator(mode="after")
    def _distinct(self) -> RosterRef:
        ids = [*self.features, self.label, self.arbiter]
        if len(set(ids)) != len(ids):
            raise ValueError(f"the job's party ids must be distinct, got {ids}")
        return self

    def build(self) -> Roster:
        return Roster(tuple(self.features), self.label, self.arbiter)


class Registration(_Strict):
    """What B sends the feature parties and C so each can check the job against its own config.

    Two forms. With one feature party, ``parties`` maps the role letters A, B, C
    to the party ids, and the protocol addresses the parties as A, B and C (as it
    always has). With several, ``roster`` lists the party ids by role and the
    protocol addresses the parties by those ids. ``gradient_lengths`` is keyed by
    protocol id in both.
    """

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    parties: dict[str, str] | None = Field(None, description="one feature party: role letter → party id, for A, B, C")
    roster: RosterRef | None = Field(None, description="any number of feature parties: the party ids by role")
    dataset: str | None = Field(None, description="the feature party's dataset name (only in its own copy)")
    training: TrainingConfig
    psi: PsiSettings
    psi_ids: int | None = Field(
        None, ge=1, description="party B's ID count for the alignment: a feature party refuses a count above its "
        "caps at once, and B's declaration in the PSI must match it")
    reuse_alignment: str | None = Field(
        None, pattern=JOB_ID_PATTERN,
        description="train on the aligned IDs of this earlier job, which the receiving party took part in with the "
                    "same dataset and party B: no new PSI")
    measures: str | None = Field(
        None, pattern=JOB_ID_PATTERN,
        description="a coalition training, or a class training of a multi-class job: the job it is part of (a "
                    "feature party's [scoring] reuse_alignment decides whether it takes part)")
    classes: int | None = Field(
        None, ge=3, le=100, description="a multi-class job: how many one-vs-rest models it trains (one per class of "
                                        "party B's label); each is one more scoring direction of the feature party")
    gradient_lengths: dict[str, int] = Field(
        description="each party's gradient length by protocol id: B's (and the feature party's own when the spec "
        "fixes it) in a feature party's copy, all of them in the arbiter's. The arbiter decrypts vectors of "
        "exactly these lengths. A scorecard job trains on coded characteristics: its lengths are fixed again "
        "after the binning (each feature party states its own coded width, B tells the arbiter all of them in "
        "its training start)")
    scorecard: ScorecardConfig | None = Field(
        None, description="a scorecard job: how every party bins, selects and scales (the job spec's section)")
    prepare: JobPrepare | None = Field(
        None, description="the receiving feature party's own entry of the job spec's \"prepare\" (never another "
                          "party's): how it prepares its columns in this job, in place of its dataset's keys")

    @field_validator("gradient_lengths")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        if any(not 1 <= n <= 1_000_000 for n in value.values()):
            raise ValueError("every gradient length must be between 1 and 1,000,000")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Registration:
        if (self.parties is None) == (self.roster is None):
            raise ValueError("name the job's parties once: \"parties\" (role letter → id, one feature party) "
                             "or \"roster\" ({\"features\": [ids], \"label\", \"arbiter\"})")
        if self.parties is not None:
            if set(self.parties) != {"A", "B", "C"}:
                raise ValueError(f"parties must name A, B and C, got {sorted(self.parties)}")
            for party in self.parties.values():
                if not re.match(PARTY_ID_PATTERN, party):
                    raise ValueError(f"party id {party!r} is not a plain name")
        trainers = {"A", "B"} if self.roster is None else {*self.roster.features, self.roster.label}
        unknown = sorted(set(self.gradient_lengths) - trainers)
        if unknown:
            raise ValueError(f"gradient_lengths names {unknown}, which are not parties that train in the job")
        return self

    def wire(self) -> dict[str, Any]:
        """The registration as JSON for a peer, without the fields newer than the peers may be.

        Every model here forbids unknown keys, so a key that a service one
        release older does not know makes it refuse the whole job. Fields
        added since (``psi.protocol``, ``psi.unbalanced``, ``psi.large_side``, ``scorecard``, ``classes``,
        ``training.max_classes``, ``training.loss``, ``prepare``) are sent only
        when they differ from their defaults: a plain RSA job reaches an older
        party exactly as that party's own release would send it, and a job
        that does need the new field is refused, naming it, as it must be.
        """
        body = self.model_dump(mode="json")
        if body["psi"].get("protocol") == "rsa":
            del body["psi"]["protocol"]
        if not body["psi"].get("unbalanced"):
            body["psi"].pop("unbalanced", None)
        if body["psi"].get("large_side") == "label":
            body["psi"].pop("large_side", None)
        if body.get("scorecard") is None:
            body.pop("scorecard", None)
        if body.get("classes") is None:
            body.pop("classes", None)
        if self.prepare is None:
            body.pop("prepare", None)
        else:  # only the keys the job sets: an unset key keeps the party's dataset setting
            body["prepare"] = self.prepare.model_dump(mode="json", exclude_unset=True)
        if body["training"].get("max_classes") == DEFAULT_MAX_CLASSES:  # party B's own cap, at its default
            body["training"].pop("max_classes", None)
        if body["training"].get("loss") == "taylor":
            body["training"].pop("loss", None)
        return body

    def job_roster(self) -> tuple[Roster, dict[str, str]]:
        """The job's roster (protocol ids by role) and each protocol id's party id."""
        if self.roster is None:
            return Roster(), dict(self.parties or {})
        roster = self.roster.build()
        return roster, {party: party for party in roster.all}


class TrainingStart(_Strict):
    """B → the feature parties and C once the rows are aligned: how many rows the schedule has.

    With several feature parties, a feature party's copy also carries the joint
    IDs: those every party shares with B, a subset of its own pairwise
    intersection, in the order of the PSI. It never carries another feature
    party's feature count: each party vouches to the arbiter only for the
    lengths it registered (its own and B's).
    """

    n_rows: int = Field(ge=2)
    ids: list[EntityId] | None = Field(None, min_length=2)
    gradient_lengths: dict[str, int] | None = Field(
        None, description="a scorecard job, the arbiter's copy only: every party's gradient length after the "
        "binning (the coded widths), which replace the ones registered; each feature party vouches for its own "
        "and B's in its key request, as for any job")


class BinningApply(_Strict):
    """B → a feature party in a scorecard job: how its fine bins merge, which characteristics it keeps, B's width.

    ``result`` is the :class:`vfl.protocol.binning.BinningResult` (merges of fine
    bins and each characteristic's direction, never a count); ``kept`` the
    characteristics B keeps by IV (the feature party then drops its own
    correlated ones); ``label_length`` party B's gradient length on its coded
    characteristics, which the feature party vouches for to the arbiter.
    """

    result: dict[str, Any]
    kept: list[str] = Field(min_length=1, max_length=100_000)
    label_length: int = Field(ge=1, le=1_000_000)


class ResumeRequest(_Strict):
    """B → A and C: go back to the state after ``epoch`` (−1: before training) under a new generation.

    ``psi_bucket`` is set when the job stopped during alignment: a feature party
    starts a new PSI session at the first bucket unfinished there or at B
    (the arbiter only moves to the new generation).
    """

    epoch: int = Field(ge=-1)
    generation: int = Field(ge=1)
    psi_bucket: int | None = Field(None, ge=0)


class ScoreQuery(_Strict):
    ids: list[EntityId] = Field(min_length=1)


class PartialScoreQuery(ScoreQuery):
    """Party B → a feature party: partial scores (a scorecard job: points totals) for IDs.

    ``evaluation`` is set by B's evaluation of the job on its aligned rows, and only there: those rows are
    not served ones, so they do not count towards the feature party's characteristic stability (CSI).
    """

    evaluation: bool = Field(False, description="party B's evaluation of the job (not serving)")


FeatureValue = float | int | str | bool | None


class PredictQuery(ScoreQuery):
    """IDs to score at party B, and optionally B's own features for some of them.

    ``features`` maps an ID to B's feature values by column name (like
    FATE-Serving's ``featureData``), for an applicant B has not stored yet; the
    other IDs are read from B's dataset. A missing or non-numeric value gives
    that ID the status "invalid features: <columns>".
    """

    features: dict[EntityId, dict[str, FeatureValue]] | None = Field(
        None, description="party B's own feature values per ID, by column name, used instead of its dataset")


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


class BatchInput(_Strict):
    """What a batch scores: a CSV or Parquet file of IDs on party B's host, or every ID of one of B's datasets."""

    path: str | None = Field(None, min_length=1, max_length=4096,
                             description="a .csv or .parquet file in party B's batch input folder ([scoring] "
                                         "batch_inputs), relative to it or absolute inside it; never a symbolic link")
    id_column: str | None = Field(None, min_length=1, max_length=256, description="the file's ID column (default id)")
    dataset: str | None = Field(None, min_length=1, max_length=128, description="one of party B's datasets, by name")

    @model_validator(mode="after")
    def _one_source(self) -> BatchInput:
        if (self.path is None) == (self.dataset is None):
            raise ValueError('name the input once: {"path": "ids.csv", "id_column": "id"} or {"dataset": "name"}')
        if self.dataset is not None and self.id_column is not None:
            raise ValueError("id_column goes with a file path; a dataset's ID column comes from party B's config")
        if self.path is not None and self.id_column is None:
            object.__setattr__(self, "id_column", "id")
        return self


class BatchOutput(_Strict):
    path: str = Field(min_length=1, max_length=4096,
                      description=".csv or .parquet, in party B's batch output folder ([scoring] batch_outputs), "
                                  "relative to it or absolute inside it; its folder must exist")


class BatchRequest(_Strict):
    """``POST /v1/jobs/{job_id}/score-batch`` at party B: score many IDs in the background (vfl.service.serving.batch)."""

    input: BatchInput
    output: BatchOutput
    chunk_rows: int = Field(10_000, ge=1, description="IDs per predict call (at most limits.max_vector_length)")


def describe(exc: ValidationError) -> str:
    """A job spec's problems in one line; a mistyped key names the keys valid there (vfl.ml.validation)."""
    return validation.describe(exc, JobSpec)


class PromoteRequest(_Strict):
    """Orchestrator → party B: serve this succeeded job under the model name in the path."""

    job_id: str = Field(pattern=JOB_ID_PATTERN)


def child_job_id(job_id: str, kind: str, n: int) -> str:
    """The id of a job's n-th child training (``kind`` "c": a coalition, "k": a class), at most 64 characters.

    ``<job>.<kind><n>`` when it fits; a long job id is replaced by a digest of it, so children of two
    long ids never collide.
    """
    candidate = f"{job_id}.{kind}{n}"
    if len(candidate) <= 64:
        return candidate
    return f"{kind}-{hashlib.sha256(job_id.encode()).hexdigest()[:20]}.{kind}{n}"
