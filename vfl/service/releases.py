"""What a feature party has released to each label party: budgets that belong to the partner and the dataset.

A feature party's partial scores ``u = X·w + c`` over its rows give away one linear
combination of its features per row. Every model a label party trains with it on
the same dataset adds a direction ``w`` (the model's weights in raw feature units),
and with as many independent directions as the dataset has features, the label
party can solve for every row's features from a handful of rows it knows. It gets
them without trying, by training several models. So a feature party keeps, per
(label party, dataset), in ``<data_dir>/releases/<label party>/<dataset>.json``:

* **the directions** whose scores it has released (evaluation, prediction and batch
  scoring alike), and refuses to release a new one once their rank would pass
  ``[scoring] score_directions``: by default one less than the dataset's feature
  count, so no label party can solve for a feature party's rows, whatever it trains;
* **the IDs scored** for that partner on that dataset across all jobs, bounded by
  ``limits.max_scored_ids``: a new job, or one that reuses an alignment, renews
  nothing.

Both are checked and charged in one step, on the event loop, before any row is read,
so concurrent requests cannot overrun them. What a deviating label party can still
get within one job (labels chosen so that the trained weights carry a direction of its
choice) is one direction per model: the same rank budget bounds it. See the README's
threat model.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vfl.errors import JobError, LimitExceeded
from vfl.ml.parts import ModelPartA
from vfl.service.record import JobRecord
from vfl.service.store import JobStore, _Damaged, atomic_write_json, read_json

#: Directions closer than this (relative to their length) count as one: retraining the same model is no new one.
RANK_TOLERANCE = 1e-6


def budget(n_features: int, configured: int | None) -> int:
    """How many independent directions of a dataset may be released to one partner."""
    return max(0, n_features - 1) if configured is None else min(configured, n_features)


def direction(model: ModelPartA) -> np.ndarray:
    """The model's weights in raw feature units: what its scores are a combination of."""
    return np.asarray(model.weights, dtype=np.float64) / np.asarray(model.scaler.scale, dtype=np.float64)


def rank(directions: list[np.ndarray]) -> int:
    if not directions:
        return 0
    matrix = np.vstack([d / (np.linalg.norm(d) or 1.0) for d in directions])
    return int(np.linalg.matrix_rank(matrix, tol=RANK_TOLERANCE * math.sqrt(matrix.shape[1])))


class Releases:
    """One feature party's ledgers of what it released, one per (label party, dataset), kept in memory.

    Checks and charges happen on the event loop, in memory, in one step. A new direction
    is written to disk before its first score leaves (:meth:`write`, once per model); the
    scored-ID count is written at most once a second (:meth:`write_due`) and at shutdown,
    so a crash forgets at most a second of requests, which ``limits.score_requests_per_minute``
    bounds.
    """

    #: Seconds between writes of a ledger whose only change is its count of scored IDs.
    COUNT_EVERY = 1.0

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._ledgers: dict[tuple[str, str], dict[str, Any]] = {}
        self._written: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def _path(self, key: tuple[str, str]) -> Path:
        return self.store.data_dir / "releases" / key[0] / f"{key[1]}.json"

    def ledger(self, partner: str, dataset: str) -> dict[str, Any]:
        key = (partner, dataset)
        if key not in self._ledgers:
            path = self._path(key)
            data: dict[str, Any] = {}
            if path.is_file():
                try:
                    data = read_json(path)
                except _Damaged as exc:
                    raise JobError(f"{path} {exc}: without it this party cannot tell what it released to {partner}; "
                                   "restore it from a backup (it scores nothing for that partner on that dataset "
                                   "meanwhile)") from None
            self._ledgers[key] = {"directions": dict(data.get("directions") or {}),
                                  "scored_ids": int(data.get("scored_ids", 0))}
        return self._ledgers[key]

    def room_for_a_model(self, partner: str, dataset: str, n_features: int, configured: int | None) -> None:
        """At registration: refuse a job whose model could not score, its partner's directions being used up."""
        released = [np.asarray(d) for d in self.ledger(partner, dataset)["directions"].values()]
        allowed = budget(n_features, configured)
        if rank(released) >= allowed:
            raise LimitExceeded(_spent(partner, dataset, rank(released), allowed, n_features))

    def admit(self, record: JobRecord, model: ModelPartA, count: int, max_ids: int,
              configured: int | None) -> bool:
        """Charge ``count`` scored IDs and the model's direction to the job's partner and dataset, or refuse.

        Synchronous, on the event loop: no other request comes between the checks and the charges.
        Returns whether the model's direction is new (then :meth:`write` before any score leaves).
        """
        partner, dataset = record.party_id("label"), str(record.dataset)
        ledger = self.ledger(partner, dataset)
        if ledger["scored_ids"] + count > max_ids:
            raise LimitExceeded(
                f"{ledger['scored_ids']} IDs of dataset {dataset!r} have been scored for {partner} over all its "
                f"jobs; {count} more would pass this party's limit of {max_ids} (limits.max_scored_ids, per partner "
                "and dataset: a new job does not renew it)")
        new = record.job_id not in ledger["directions"]
        if new:
            weights = direction(model)
            released = [np.asarray(d) for d in ledger["directions"].values()]
            allowed = budget(len(weights), configured)
            if rank([*released, weights]) > max(allowed, rank(released)):
                raise LimitExceeded(_spent(partner, dataset, rank(released), allowed, len(weights)))
            ledger["directions"][record.job_id] = weights.tolist()
        ledger["scored_ids"] += count
        return new

    def write(self, partner: str, dataset: str) -> None:
        """Write the ledger as it is now (from any thread; writes of one ledger never overlap)."""
        key = (partner, dataset)
        with self._locks.setdefault(key, threading.Lock()):
            ledger = self._ledgers.get(key)
            if ledger is None:
                return
            data = {"directions": dict(ledger["directions"]), "scored_ids": ledger["scored_ids"]}
            path = self._path(key)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write_json(path, data)
            self._written[key] = time.monotonic()

    def write_due(self, partner: str, dataset: str) -> bool:
        """Whether the ledger's count has waited long enough to be written (taken as written now)."""
        key = (partner, dataset)
        now = time.monotonic()
        if now - self._written.get(key, 0.0) < self.COUNT_EVERY:
            return False
        self._written[key] = now
        return True

    def write_all(self) -> None:
        """Write every ledger (at shutdown)."""
        for partner, dataset in list(self._ledgers):
            self.write(partner, dataset)


def _spent(partner: str, dataset: str, held: int, allowed: int, n_features: int) -> str:
    return (f"{partner} has the scores of {held} independent combinations of dataset {dataset!r}'s {n_features} "
            f"features already, the most this party releases to one partner ({allowed}: [scoring] "
            "score_directions, by default one less than the feature count, so that no partner can solve for "
            "the features); a new model of this dataset cannot score for it")


__all__ = ["Releases", "budget", "direction", "rank"]
