"""Jobs and models on disk, one folder per job under the service's data directory::

    <data_dir>/jobs/<job_id>/job.json                 the job's record (state, progress, metrics, error)
    <data_dir>/jobs/<job_id>/model.json               this party's model part, once trained
    <data_dir>/jobs/<job_id>/report.html              party B's report of the job
    <data_dir>/jobs/<job_id>/alignment.json           the aligned IDs, in the shared order
    <data_dir>/jobs/<job_id>/checkpoints/epoch-N.json  the role's state after epoch N (−1: before training)
    <data_dir>/jobs/<job_id>/audit.log                requests this party refused, one per line

Every file is written atomically (a temporary file in the same folder, flushed,
then renamed over the old one), so a crash leaves either the old or the new
version, never half of one; a restarted service lists every job it had.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from vfl.errors import ConfigError, JobError

JobState = Literal["pending", "aligning", "training", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobRecord(BaseModel):
    """What a party knows and reports about one job."""

    job_id: str
    role: Literal["A", "B", "C"]
    state: JobState = "pending"
    stage: str = "registered"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    spec: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    peers: dict[str, str] = Field(default_factory=dict, description="role → party id")
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
    curves: dict[str, Any] | None = Field(None, description="ROC points, or predicted against actual")
    curve_split: str | None = None
    generation: int = Field(0, description="bumped at every resume; older messages are ignored")
    n_rows: int | None = Field(None, description="aligned rows the training schedule runs over")
    resumes: int = 0

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True), mode)


class JobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.root}: {exc}") from exc

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def exists(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "job.json").is_file()

    def create(self, record: JobRecord) -> None:
        if self.exists(record.job_id):
            raise JobError(f"a job with id {record.job_id!r} already exists here; choose another job_id")
        self.save(record)

    def save(self, record: JobRecord) -> None:
        record.updated_at = time.time()
        atomic_write_json(self.job_dir(record.job_id) / "job.json", record.model_dump(mode="json"))

    def load_all(self) -> dict[str, JobRecord]:
        records: dict[str, JobRecord] = {}
        for file in sorted(self.root.glob("*/job.json")):
            try:
                record = JobRecord.model_validate_json(file.read_text())
            except (OSError, ValueError):
                continue  # an unreadable record is skipped, not fatal: the others still load
            records[record.job_id] = record
        return records

    def delete(self, job_id: str) -> None:
        """Remove every trace of a job (used when a submission is refused half-way)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def save_model(self, job_id: str, model: dict[str, Any]) -> None:
        atomic_write_json(self.job_dir(job_id) / "model.json", model)

    def load_model(self, job_id: str) -> dict[str, Any] | None:
        return self._load(job_id, "model.json")

    def save_report(self, job_id: str, page: str) -> None:
        atomic_write_text(self.job_dir(job_id) / "report.html", page)

    def load_report(self, job_id: str) -> str | None:
        file = self.job_dir(job_id) / "report.html"
        return file.read_text() if file.is_file() else None

    def save_alignment(self, job_id: str, ids: list[str]) -> None:
        atomic_write_json(self.job_dir(job_id) / "alignment.json", {"ids": ids}, mode=0o600)

    def load_alignment(self, job_id: str) -> list[str] | None:
        data = self._load(job_id, "alignment.json")
        return None if data is None else list(data["ids"])

    # -- checkpoints: kept for the start and the last two epochs ---------------------------------

    KEEP_EPOCHS = 2

    def save_checkpoint(self, job_id: str, epoch: int, state: dict[str, Any]) -> None:
        """Write the state after ``epoch`` (0600: the arbiter's holds its private key)."""
        folder = self.job_dir(job_id) / "checkpoints"
        atomic_write_json(folder / f"epoch-{epoch}.json", state, mode=0o600)
        for old in self.checkpoints(job_id)[1:-self.KEEP_EPOCHS]:
            (folder / f"epoch-{old}.json").unlink(missing_ok=True)

    def checkpoints(self, job_id: str) -> list[int]:
        """Epochs with a checkpoint, ascending (−1 is the state before training)."""
        folder = self.job_dir(job_id) / "checkpoints"
        epochs = []
        for file in folder.glob("epoch-*.json"):
            try:
                epochs.append(int(file.stem.removeprefix("epoch-")))
            except ValueError:
                continue
        return sorted(epochs)

    def load_checkpoint(self, job_id: str, epoch: int) -> dict[str, Any]:
        data = self._load(job_id, f"checkpoints/epoch-{epoch}.json")
        if data is None:
            raise JobError(f"job {job_id} has no checkpoint for epoch {epoch} here")
        return data

    def drop_checkpoints(self, job_id: str) -> None:
        """Remove checkpoints once they cannot be needed (they may hold private keys)."""
        shutil.rmtree(self.job_dir(job_id) / "checkpoints", ignore_errors=True)

    def audit(self, job_id: str, line: str) -> None:
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "audit.log", "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")

    def _load(self, job_id: str, name: str) -> Any:
        file = self.job_dir(job_id) / name
        if not file.is_file():
            return None
        return json.loads(file.read_text())
