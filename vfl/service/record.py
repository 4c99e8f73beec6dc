"""What a party knows and reports about one job (its ``job.json``), and who is who in it.

A record changes only through :meth:`JobRecord.advance` (a move of the job's
lifecycle, checked against :mod:`vfl.service.lifecycle`) or plain field updates
that leave state and stage alone; pydantic validates every assignment, so a
misspelt state or stage can never be saved.

The protocol addresses parties by id: ``peers`` maps each protocol id of the
job to a party id (each to itself; records from before k feature parties use the
letters A, B and C as protocol ids), and ``roster`` says which id plays which
role. The methods below answer the questions every part of a service asks of
them: this party's id in the job, its peers of one kind, how to name a peer in a
message.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vfl import __version__

from vfl.errors import JobError, PeerNotAllowed
from vfl.ml.config import TrainingConfig
from vfl.ml.prep import JobPrepare
from vfl.protocol.roster import KINDS, LETTERS, Roster, RoleKind, RoleLetter
from vfl.service.lifecycle import FINAL, JobState, Stage, state_phrase, transition


#: The newest lines of a job's story a record keeps (an epoch is one line; a job of 10,000 epochs keeps its end).
MAX_EVENTS = 500


class JobRecord(BaseModel):
    """What a party knows and reports about one job."""

    model_config = ConfigDict(validate_assignment=True)

    job_id: str
    role: RoleLetter = Field(description="this party's role in the job, by its short name: A, B or C")
    state: JobState = JobState.PENDING
    stage: Stage = Stage.REGISTERED
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    stopped_at: float | None = Field(
        None, description="when the job last reached a final state; the resume window counts from here")
    job_spec: dict[str, Any] | None = Field(
        None, description="party B: the job spec as submitted and validated (defaults filled in)")
    registration: dict[str, Any] | None = Field(
        None, description="a feature party and the arbiter: the registration party B sent for the job")
    dataset: str | None = None
    peers: dict[str, str] = Field(
        default_factory=dict,
        description="protocol id → party id of every party this one deals with in the job (itself included). "
                    "The protocol addresses parties by their party ids, so this maps each id to itself; "
                    "records written before k feature parties map the role letters A, B, C instead")
    roster: dict[str, Any] | None = Field(
        None, description="the job's parties by role: {features: [ids], label: id, arbiter: id}; "
                          "absent in records written before k feature parties (then A, B and C)")
    epoch: int = 0
    max_epochs: int = 0
    loss_history: list[float] = Field(default_factory=list)
    validation_loss_history: list[float] = Field(default_factory=list)
    alignment: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    stop_reason: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    privacy: dict[str, Any] | None = Field(None, description="ε, δ, noise and clipping, for a private job")
    parameters: dict[str, Any] | None = Field(None, description="this party's weights after every epoch")
    party_a_convergence: dict[str, Any] | None = Field(
        None, description="party B: ‖θ_A‖ and ‖Δθ_A‖ per epoch, which A shares for the report (not its weights)")
    feature_convergence: dict[str, Any] | None = Field(
        None, description="party B: each feature party's convergence summary, by party id")
    curves: dict[str, Any] | None = Field(None, description="ROC points, or predicted against actual")
    decision: dict[str, Any] | None = Field(
        None, description="party B, logistic: the calibration map and threshold fitted after training, and the "
                          "metrics before them")
    curve_split: str | None = None
    id_profile: dict[str, Any] | None = Field(
        None, description="a feature party: the coarse profile of its dataset's ID column (shares of formats, no "
                          "ID) it sends party B at registration, for explaining a small intersection")
    peer_id_profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="party B: each feature party's ID profile, by party id")
    warnings: list[str] = Field(
        default_factory=list, description="what looks wrong with the data though the job ran: IDs that may be "
                                          "written differently, a party's part separating the classes (label leakage)")
    generation: int = Field(0, description="bumped at every resume; older messages are ignored")
    n_rows: int | None = Field(None, description="aligned rows the training schedule runs over")
    scored_ids: int = Field(0, description="party A: IDs scored for this job so far (bounded by limits.max_scored_ids)")
    score_noise: dict[str, Any] | None = Field(
        None, description="a feature party with [scoring] score_noise: the noise on this job's released scores "
                          "(multiplier, σ of a score) and ρ, ε(δ) per person over all jobs with its label party "
                          "on the dataset")
    gradient_lengths: dict[str, int] | None = Field(
        None, description="each party's gradient length, fixed by the job at registration (A's and B's feature counts)")
    resumes: int = 0
    idempotency_key: str | None = Field(
        None, description="party B: the Idempotency-Key header the job was submitted with; a repeat returns this job")
    request_digest: str | None = Field(
        None, description="party B: SHA-256 of the submitted spec, to tell a repeated submit from another one")
    contributions: dict[str, Any] | None = Field(
        None, description="party B, a job with \"contributions\": each feature party's Shapley value and leave-one-out, "
                          "every coalition's metric, or the error that stopped them")
    multiclass: dict[str, Any] | None = Field(
        None, description="party B, a multi-class job (one-vs-rest): its classes, each class's training job and "
                          "how the class probabilities are made")
    scorecard: dict[str, Any] | None = Field(
        None, description="party B, a scorecard job: IV of every characteristic of every party, B's own bins and "
                          "points tables, the base points, each partner's observed points range, the score's AUC, KS, "
                          "Gini and bands")
    coalition_of: str | None = Field(
        None, description="party B: the job whose contributions this coalition training measures (no report, no "
                          "ledger entry of its own)")
    ledger: dict[str, Any] | None = Field(
        None, description="the job's entry in the federation's ledger: its index and digest, who signed, whether "
                          "every signature verified, where it was appended, and any party that refused or disagreed")
    timeline: list[dict[str, Any]] = Field(
        default_factory=list,
        description="every move of the job's lifecycle here, oldest first: {at (Unix time), stage, state}; the job "
                    "was registered at created_at (records written before it was kept have none)")
    events: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the job's story at this party, as its log tells it at INFO and above, oldest first: "
                    f"{{at, level, message}} (the last {MAX_EVENTS} lines)")
    peer_timings: dict[str, dict[str, Any]] | None = Field(
        None, description="party B: each feature party's and the arbiter's timings of the job (durations per stage, "
                          "training's compute and waiting, rounded to 0.1 s), by party id, or why they are not "
                          "available; asked once the job has run its stages (vfl.service.timings)")
    activity: str | None = Field(
        None, description="what a long step is doing now, e.g. \"contributions: coalition 1 of 3 (B + shop), "
                          "epoch 4/30\"; null when nothing long runs beyond the stage and epoch")

    @model_validator(mode="before")
    @classmethod
    def _spec_by_role(cls, data: Any) -> Any:
        """Records written before the split kept B's job spec and A's and C's registration in one ``spec``."""
        if isinstance(data, dict) and "spec" in data:
            data = dict(data)
            spec = data.pop("spec")
            data.setdefault("job_spec" if data.get("role") == "B" else "registration", spec or None)
        return data

    # -- the lifecycle ------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def advance(self, to: Stage, *, outcome: JobState | None = None) -> None:
        """Move the job to stage ``to`` (JobError if the lifecycle does not allow it); the caller saves it."""
        before = (self.state, self.stage)
        self.state, self.stage = transition(self.state, self.stage, to, job_id=self.job_id, outcome=outcome)
        if (self.state, self.stage) != before:
            self.timeline.append({"at": time.time(), "stage": str(self.stage), "state": str(self.state)})

    def note(self, level: str, message: str) -> None:
        """One line of the job's story kept in the record (the newest :data:`MAX_EVENTS`); the caller saves it."""
        self.events.append({"at": time.time(), "level": level, "message": message})
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]

    def state_phrase(self, *, already: bool = False) -> str:
        """The job's state as the verb phrase after "job X": "has (already) succeeded", "has (already)
        failed", "is (already) cancelled", "is damaged", "is training" (never "has cancelled")."""
        return state_phrase(self.state, already=already)

    # -- who is who -----------------------------------------------------------------------

    @property
    def kind(self) -> RoleKind:
        """This party's role kind in the job."""
        return KINDS[self.role]

    @property
    def parties(self) -> Roster:
        """The job's parties by role, as protocol ids (A, B and C for records from before k feature parties)."""
        return Roster() if self.roster is None else Roster.from_dict(self.roster)

    def own_id(self, me: str) -> str:
        """This party's protocol id in the job (``me`` is its party id)."""
        return next((pid for pid, peer in self.peers.items() if peer == me), self.role)

    def protocol_id(self, caller: str, me: str) -> str:
        """The protocol id of a calling peer in the job; a caller that takes no part is refused."""
        for pid, peer in self.peers.items():
            if peer == caller and caller != me:
                return pid
        raise PeerNotAllowed(f"{caller!r} takes no part in job {self.job_id}")

    def peer_ids(self, me: str, kind: RoleKind | None = None) -> list[str]:
        """The party ids of the job's other parties this one deals with (of one role kind, if given)."""
        roster = self.parties
        return [peer for pid, peer in self.peers.items()
                if peer != me and (kind is None or roster.kind_of(pid) == kind)]

    def party_id(self, kind: RoleKind) -> str:
        """The party id of the job's label party or arbiter."""
        roster = self.parties
        return self.peers[roster.label if kind == "label" else roster.arbiter]

    def name_of(self, peer_id: str) -> str:
        """How messages name a peer: "party A (shop)", "party C (arbiter)"."""
        pid = next((p for p, peer in self.peers.items() if peer == peer_id), peer_id)
        kind = self.parties.kind_of(pid)
        return f"party {LETTERS[kind] if kind else '?'} ({peer_id})"

    def require_caller(self, caller: str, kind: RoleKind) -> None:
        """Refuse a caller that is not the job's party of ``kind``."""
        pid = next((p for p, peer in self.peers.items() if peer == caller), None)
        if pid is None or self.parties.kind_of(pid) != kind:
            raise PeerNotAllowed(f"{caller!r} is not party {LETTERS[kind]} of job {self.job_id}")

    def takes_part(self, caller: str) -> None:
        """Refuse a caller that takes no part in the job."""
        if caller not in self.peers.values():
            raise PeerNotAllowed(f"{caller!r} takes no part in job {self.job_id}")

    def training_config(self) -> TrainingConfig:
        """The job's training config as this party holds it: B's from its spec, the others' from B's registration."""
        spec = self.job_spec if self.kind == "label" else self.registration
        return TrainingConfig.model_validate((spec or {})["training"])

    def prepare(self, me: str) -> JobPrepare | None:
        """How this party prepares its own columns in the job (its entry of the spec's "prepare"), or None:
        B's from its spec (keyed by party id), a feature party's from B's registration (its entry only)."""
        if self.kind == "label":
            entry = ((self.job_spec or {}).get("prepare") or {}).get(me)
        elif self.kind == "feature":
            entry = (self.registration or {}).get("prepare")
        else:
            return None
        return None if entry is None else JobPrepare.model_validate(entry)

    # -- views ---------------------------------------------------------------------------

    def peer_view(self) -> dict[str, Any]:
        """What a peer endpoint answers about a job: its state, and the lengths the job fixed.

        Never the whole record: that holds this party's weights, metrics and errors.
        """
        view = {"job_id": self.job_id, "state": self.state, "stage": self.stage,
                "gradient_lengths": self.gradient_lengths}
        if self.id_profile is not None:  # a release to party B: counts and shares of ID formats, no ID
            view["id_profile"] = self.id_profile
        return view


class DamagedJobRecord(JobRecord):
    """Stands in for a job whose ``job.json`` cannot be read back: state ``damaged``, with the reason.

    It is listed like any job, but it is read-only: code that tries to move it on (resume
    it, fail it, count an epoch) gets a :class:`JobError` instead of overwriting the damaged
    file, which is the only evidence of what the job was.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        raise JobError(
            f"job {self.job_id}: its record (job.json) is damaged, so the job cannot change: {self.error}"
        )


def model_document(part: Any, record: JobRecord) -> dict[str, Any]:
    """What a party saves as its model: its part, the dataset it scores from, when and by which vfl."""
    return {**part.to_dict(), "dataset": record.dataset, "job_id": record.job_id,
            "trained_at": time.time(), "vfl_version": __version__}


__all__ = ["MAX_EVENTS", "DamagedJobRecord", "JobRecord", "model_document"]
