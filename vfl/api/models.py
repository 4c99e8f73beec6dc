"""What every orchestration route answers, as pydantic models (the service's response models, the client's parsers).

Each model describes the JSON a service sends today. Two rules keep them a
contract that can grow (``docs/api-contract.md``):

* Every answer model allows fields it does not name (``extra="allow"``): a new
  field in a job status or a batch is an addition, which old clients ignore,
  not a break. A generated client keeps them in its ``additional_properties``.
* Fields whose set of values may grow (a job's stage, a prediction's status,
  a metric's name) are plain strings or open dicts, never enums: an enum a
  generated client knows cannot take a value added later. A job's *state* is an
  enum: its seven values are the lifecycle's contract.

Answers are validated with ``exclude_unset`` on the service's side, so a field
a route does not send is not added as ``null``: the JSON stays as it was.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vfl.errors import ContractMismatch

#: A job's states (vfl.service.lifecycle.JobState; tests/unit/test_api_models.py keeps the two equal).
JobStateName = Literal["pending", "aligning", "training", "succeeded", "failed", "cancelled", "damaged"]
#: The states a job never leaves by running.
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "damaged"})
#: A batch's states (vfl.service.serving.batch.BatchState).
BatchStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": list(examples)})


class Answer(BaseModel):
    """An answer of the orchestration API: fields it does not name are kept (additions never break a client)."""

    model_config = ConfigDict(extra="allow")


# -- errors and health ----------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every refusal and failure: the problem and its fix in ``detail``, the error class in ``error``."""

    model_config = _examples({"detail": "no job 'job-0000' at this service; list them with GET /v1/jobs",
                              "error": "UnknownJobError"})

    detail: str = Field(description="what went wrong and how to fix it, in one or two sentences")
    error: str = Field(description="the error's class in vfl's error tree (vfl/errors.py): UnknownJobError, "
                                   "BadToken, ValidationError, PeerRefused, ...; match on it, not on detail")


class Health(Answer):
    """``GET /v1/health``: the service is up."""

    model_config = _examples({"status": "ok", "party": "party-b", "role": "B"})

    status: Literal["ok"]
    party: str = Field(description="this service's party id")
    role: str = Field(description="this service's role: A (features), B (labels) or C (arbiter)")


# -- jobs -----------------------------------------------------------------------------------------------------


class TimelineEntry(Answer):
    """One stage a job entered, and when (``timeline`` of a job status)."""

    at: float = Field(description="Unix seconds")
    stage: str
    state: str


class JobEvent(Answer):
    """One line of this party's event log for the job (``events`` of a job status; the last 500 are kept)."""

    at: float = Field(description="Unix seconds")
    level: str = Field(description="INFO, WARNING or ERROR")
    message: str


class PsiProgress(Answer):
    """One PSI this party runs, while the job aligns (``progress.psi``): party B runs one per feature party."""

    model_config = _examples({"peer": "party-a", "buckets_done": 1, "buckets": 3, "chunks_done": 5, "chunks": 8,
                              "ids_done": 4000, "ids": 12000})

    peer: str = Field(description="the party at the other end")
    buckets_done: int = Field(ge=0, description="buckets finished at both ends")
    buckets: int = Field(ge=0, description="the PSI's buckets ([psi] bucket_ids); 0 until the key holder's key "
                                           "fixes them")
    chunks_done: int = Field(ge=0, description="messages this party handled in the running bucket (party B: the "
                                               "signed chunks and tag chunks it got; a feature party: B's chunks "
                                               "it signed)")
    chunks: int = Field(ge=0, description="messages this party handles in the running bucket (0: not known yet)")
    ids_done: int = Field(ge=0, description="this party's own IDs in finished buckets")
    ids: int = Field(ge=0, description="this party's own IDs")


class Progress(Answer):
    """How far the job is (``progress`` of a job status): 0 to 1, and in words; a succeeded job is always 1."""

    fraction: float = Field(ge=0, le=1)
    text: str
    # Since version 1.3.0:
    psi: list[PsiProgress] | None = Field(None, description="while the job aligns: each PSI's buckets and chunks "
                                                            "(the fraction stays at the epochs')")


class TrainingTimes(Answer):
    """A party's training stage: its seconds, and how many of them it computed and waited for its peers."""

    seconds: float = Field(ge=0)
    compute: float = Field(ge=0, description="seconds its roles spent handling messages (encrypting, "
                                             "decrypting, gradients)")
    waiting: float = Field(ge=0, description="the rest: waiting for the other parties and the network")


class PartyTimings(Answer):
    """One party's timings of the job (``party_timings``), rounded to 0.1 s; or why they are not available.

    Party B lists every party (each feature party and the arbiter answer B's request when the job has run its
    stages); a feature party and the arbiter list only themselves.
    """

    model_config = _examples({"party": "party-a", "role": "A", "available": True, "state": "succeeded",
                              "stages": {"registered": 0.2, "psi": 3.1, "aligned": 0.4, "training": 12.6},
                              "training": {"seconds": 12.6, "compute": 4.1, "waiting": 8.5}})

    party: str
    role: str = Field(description="A (features), B (labels) or C (arbiter)")
    available: bool = Field(description="false: the party did not give its timings; reason says why")
    state: str | None = Field(None, description="the job's state at that party when it answered")
    stages: dict[str, float] | None = Field(None, description="seconds spent in each stage at that party "
                                                              "(registered, psi, aligned, binning, training, "
                                                              "evaluating, contributions, ledger, ...)")
    training: TrainingTimes | None = None
    reason: str | None = Field(None, description="why the timings are not available (the peer did not answer, ...)")


class WaitingFor(Answer):
    """A peer that has stopped answering during the job (``waiting_for`` of a job status), seen within ~2 s."""

    peer: str
    state: str = Field(description="what this party is waiting for (unreachable, ...)")
    since: float = Field(description="Unix seconds of the first failed attempt")
    fails_at: float | None = Field(None, description="Unix seconds when the job fails unless the peer comes back")
    problem: str | None = None


class JobStatus(Answer):
    """A job as this party knows it: its record (``job.json``), as ``GET /v1/jobs/{id}`` answers it.

    Party B's record carries the job spec, metrics, curves and the report's material; a feature party's and
    the arbiter's carry B's registration. Fields not listed here are additions of newer services.
    """

    model_config = _examples({
        "job_id": "job-5f0c2a9e41", "role": "B", "state": "training", "stage": "training",
        "created_at": 1765000000.0, "updated_at": 1765000042.5, "epoch": 3, "max_epochs": 8,
        "loss_history": [0.69, 0.52, 0.47], "metrics": None, "error": None, "generation": 0,
    })

    job_id: str
    role: str = Field(description="this party's role in the job: A (features), B (labels) or C (arbiter)")
    state: JobStateName = Field(description="pending, aligning, training, then succeeded, failed or cancelled "
                                            "(damaged: the record could not be read back)")
    stage: str = Field(description="where the job is: registered, psi, aligned, binning, training, interrupted, "
                                   "resuming, evaluating, contributions, ledger, done, stopped, deleting, deleted, "
                                   "damaged (more may be added: treat an unknown stage as 'working')")
    created_at: float | None = Field(None, description="Unix seconds")
    updated_at: float | None = Field(None, description="Unix seconds")
    stopped_at: float | None = None
    epoch: int | None = None
    max_epochs: int | None = None
    loss_history: list[float | None] | None = None
    validation_loss_history: list[float | None] | None = None
    metrics: dict[str, Any] | None = Field(None, description="party B, after evaluation: by split (train, "
                                                             "validation, ...) each metric by name: auc, ks, "
                                                             "accuracy, rmse, ... (the set grows with models)")
    error: str | None = Field(None, description="why the job failed or was cancelled")
    stop_reason: str | None = None
    job_spec: dict[str, Any] | None = Field(None, description="party B: the spec as validated, defaults filled in")
    dataset: str | None = None
    generation: int | None = Field(None, description="bumped at every resume")
    resumes: int | None = None
    idempotency_key: str | None = None
    # Since version 1.1.0 (the dashboard's page per job):
    timeline: list[TimelineEntry] | None = Field(None, description="each stage the job entered, in order")
    events: list[JobEvent] | None = Field(None, description="this party's event log for the job (last 500); "
                                                          "in GET /v1/jobs/{id} only, not in the job list")
    activity: str | None = Field(None, description="what the job does now, in words "
                                                   "(e.g. 'contributions: coalition 1 of 2')")
    progress: Progress | None = None
    waiting_for: list[WaitingFor] | None = Field(None, description="peers that stopped answering (empty: none)")
    # Since version 1.3.0:
    party_timings: list[PartyTimings] | None = Field(
        None, description="how long each stage took at each party, and training's compute and waiting: this "
                          "party's own and, at party B, each other party's (or why not)")


class JobList(Answer):
    """``GET /v1/jobs``."""

    jobs: list[JobStatus]


class Stability(Answer):
    """``GET /v1/jobs/{id}/stability``: a scorecard job's stability at this party (its own values only)."""

    job_id: str
    party: str
    bands: dict[str, float] = Field(description="the stability index's watch and alarm thresholds")


# -- models ---------------------------------------------------------------------------------------------------


class ModelPart(Answer):
    """``GET /v1/jobs/{id}/model``: this party's own part of the trained model, as saved (weights, scaler)."""

    model_config = _examples({"model": "logistic", "feature_names": ["x0", "x1"], "weights": [0.41, -0.2],
                              "scaler": {"mean": [0.0, 1.0], "scale": [1.0, 2.0]}, "dataset": "bank",
                              "job_id": "job-5f0c2a9e41", "trained_at": 1765000100.0, "vfl_version": "0.1.0"})

    model: str | None = Field(None, description="logistic, linear, scorecard, ...")
    feature_names: list[str] | None = None
    weights: list[float] | None = None
    job_id: str | None = None
    dataset: str | None = None
    trained_at: float | None = None
    vfl_version: str | None = None


class ScorecardFeature(Answer):
    name: str
    coefficient: float
    raw_coefficient: float
    mean: float
    scale: float


class Scorecard(Answer):
    """``GET /v1/jobs/{id}/scorecard``: this party's model part as plain numbers; party B adds the link."""

    job_id: str
    party: str
    role: str
    model: str
    dataset: str | None = None
    trained_at: str | None = Field(None, description="ISO 8601, UTC")
    vfl_version: str | None = None
    features: list[ScorecardFeature]
    scaler: dict[str, list[float]]
    row_clip: float | None = None
    raw_offset: float
    formula: str
    intercept: float | None = None
    threshold: float | None = None
    calibration: dict[str, Any] | None = None
    link: str | None = None


class Parties(Answer):
    features: list[str]
    label: str
    arbiter: str


class ModelVersion(Answer):
    """One trained model version (a succeeded job) at this party; ``error`` alone when its file fails its check."""

    job_id: str
    names: list[str] = Field(description="party B: the names that serve this version now")
    model: str | None = None
    dataset: str | None = None
    feature_names: list[str] | None = None
    metrics: dict[str, Any] | None = None
    trained_at: str | None = Field(None, description="ISO 8601, UTC")
    vfl_version: str | None = None
    roster: Parties | None = None
    peers: list[str] | None = None
    stage: str | None = None
    error: str | None = None


class Served(Answer):
    job_id: str = Field(description="the version the name serves now")
    history: list[str] = Field(description="versions it served before, oldest first")


class ModelList(Answer):
    """``GET /v1/models``: every version here; at party B also ``served`` (name → version)."""

    models: list[ModelVersion]
    served: dict[str, Served] | None = None


class Promotion(Answer):
    """``POST /v1/models/{name}/promote`` and ``.../rollback``."""

    model_config = _examples({"name": "risk", "job_id": "job-5f0c2a9e41", "history": ["job-1b2c3d4e5f"]})

    name: str
    job_id: str
    history: list[str]


class ServedModel(Promotion):
    """``GET /v1/models/{name}``: the version a name serves, its history, and that version."""

    model: ModelVersion


class Deletion(Answer):
    """``DELETE /v1/jobs/{id}``: ``deleted`` (200) everywhere, or ``partial`` (502): the parties left in ``pending``."""

    model_config = _examples({"job_id": "job-5f0c2a9e41", "status": "deleted",
                              "deleted": ["party-a", "arbiter", "party-b"], "pending": {}})

    job_id: str
    status: Literal["deleted", "partial"]
    deleted: list[str]
    pending: dict[str, str] = Field(description="party id → why it did not delete the job yet")
    detail: str | None = None


# -- predictions ------------------------------------------------------------------------------------------------


class Reason(Answer):
    code: str
    text: str


class Prediction(Answer):
    """One ID's answer. A binary or linear model answers ``score`` (and ``label``); a multi-class model answers
    ``class`` and ``probabilities`` instead."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    id: str | int
    score: float | int | None = Field(None, description="the probability or prediction; a scorecard's integer "
                                                         "score; null when the ID could not be scored (see status)")
    label: int | str | None = Field(None, description="the predicted class: 0 or 1 for a logistic model (a "
                                                     "class name may come with multi-class models)")
    status: str = Field(description="ok, or why the ID has no score (say, 'not available at party-a')")
    probability: float | None = None
    reasons: list[Reason] | None = None
    predicted_class: str | None = Field(None, alias="class",
                                        description="a multi-class model: the most probable class")
    probabilities: dict[str, float] | None = Field(None, description="a multi-class model: each class's "
                                                                     "probability, by class name")


class Predictions(Answer):
    """``POST /v1/jobs/{id}/predict`` and ``POST /v1/models/{name}/predict`` (which adds ``name``)."""

    model_config = _examples({"job_id": "job-5f0c2a9e41", "model": "logistic", "threshold": 0.5, "calibrated": True,
                              "predictions": [{"id": "C000017", "score": 0.83, "label": 1, "status": "ok"}]})

    job_id: str
    model: str
    threshold: float | int | None = None
    calibrated: bool | None = None
    predictions: list[Prediction]
    name: str | None = None
    multiclass: str | None = Field(None, description="a multi-class model: its strategy (one-vs-rest)")
    classes: list[str] | None = Field(None, description="a multi-class model: the class names")
    probabilities: str | None = Field(None, description="a multi-class model: how the probabilities are formed")


# -- batch scoring ----------------------------------------------------------------------------------------------


class BatchStatus(Answer):
    """A background batch at party B (``/v1/jobs/{id}/score-batch...``)."""

    model_config = _examples({"batch_id": "batch-3a9f", "job_id": "job-5f0c2a9e41", "state": "running",
                              "chunks_done": 2, "rows_done": 20000, "rows_total": 100000,
                              "counts": {"ok": 20000}, "output": "/data/out/scores.csv", "format": "csv",
                              "error": None, "runs": 1,
                              "request": {"input": {"path": "ids.csv"}, "output": {"path": "scores.csv"}}})

    batch_id: str
    job_id: str
    state: BatchStateName
    request: dict[str, Any] | None = None
    chunks_done: int
    rows_done: int
    rows_total: int | None = None
    counts: dict[str, int] = Field(description="output rows per status")
    output: str
    format: str
    error: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    runs: int | None = None


class BatchList(Answer):
    batches: list[BatchStatus]


# -- lending ------------------------------------------------------------------------------------------------------


class LendingResult(Answer):
    id: str | int
    found_at: list[str] | None = Field(None, description='answer "lenders": the lenders that hold the ID')
    count: int | None = Field(None, description='answer "count": how many lenders hold it')


class LendingAnswer(Answer):
    """``POST /v1/lending-query``."""

    model_config = _examples({"answer": "lenders", "lenders": ["lender-1", "lender-2"],
                              "results": [{"id": "C000017", "found_at": ["lender-2"]}], "keys": {}, "seconds": 0.21})

    answer: Literal["lenders", "count"]
    lenders: list[str]
    results: list[LendingResult]
    keys: dict[str, Any] | None = None
    seconds: float | None = None


class TagSetSummary(Answer):
    key_id: str
    epoch: int
    key_bits: int | None = None
    size: int | None = None
    published_at: float | None = None
    rotates_at: float | None = None


class LendingStatus(Answer):
    """``GET /v1/lending``: this party's lender side (its tag set, queriers' budgets) and querier side."""

    party: str
    lender: dict[str, Any] | None = None
    querier: dict[str, Any] | None = None


# -- parsing answers (the client's side) ----------------------------------------------------------------------------

AnswerModel = TypeVar("AnswerModel", bound=BaseModel)


def parse(model: type[AnswerModel], data: Any, where: str) -> AnswerModel:
    """``data`` (an answer's JSON) as ``model``; an answer that does not fit is the service's fault, not the caller's."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise ContractMismatch(f"{where} answered JSON that is not a {model.__name__} ({problems}); client and "
                             "service speak different versions of the orchestration API: upgrade the older one "
                             "(docs/api-contract.md)") from None


__all__ = [
    "Answer", "BatchList", "BatchStateName", "BatchStatus", "Deletion", "ErrorBody", "Health", "JobList",
    "JobStateName", "JobStatus", "LendingAnswer", "LendingResult", "LendingStatus", "ModelList", "ModelPart",
    "ModelVersion", "Parties", "PartyTimings", "Prediction", "Predictions", "Promotion", "Reason", "Scorecard", "ScorecardFeature",
    "PsiProgress", "Served", "ServedModel", "Stability", "TERMINAL_STATES", "TagSetSummary", "TrainingTimes",
    "parse",
]
