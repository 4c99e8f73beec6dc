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
choice) is one direction per model: the same rank budget bounds it. See docs/security.md's
threat model.

With ``[scoring] score_noise`` (:mod:`vfl.ml.score_noise`) the ledger also keeps
what makes the noise the same in every job: the box each feature is clipped to
(taken from the first model that releases it, in a fixed order that places its
noise), every noise multiplier used, and the fingerprint of the noise key
(``<data_dir>/releases/noise.key``, 0600, made on first use and never sent: with a
new key every value would get fresh noise, which B could average away). It keeps
too which jobs released scores *without* noise (every job of a ledger written
before noise existed), for which no ε holds. Its ``noise`` table reports ρ and ε
per person, over all jobs.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vfl.errors import BudgetSpent, JobError, LimitExceeded
from vfl.files import atomic_write, private_folder
from vfl.ml.parts import ModelPartA
from vfl.ml.score_noise import (
    SECRET_BYTES, FeatureBox, ScoreNoise, epsilon, key_fingerprint, rho_per_person, score_sigma,
)
from vfl.service.record import JobRecord
from vfl.files import DamagedFile, atomic_write_json, read_json
from vfl.service.store import JobStore

#: The δ a ledger reports its ε at unless the service's config says otherwise.
DEFAULT_DELTA = 1e-6
#: Directions closer than this (relative to their length) count as one: retraining the same model is no new one.
RANK_TOLERANCE = 1e-6


def budget(n_features: int, configured: int | None) -> int:
    """How many independent directions of a dataset may be released to one partner."""
    return max(0, n_features - 1) if configured is None else min(configured, n_features)


def direction(model: ModelPartA) -> np.ndarray:
    """The model's weights in raw feature units: what its scores are a combination of."""
    return np.asarray(model.weights, dtype=np.float64) / np.asarray(model.scaler.scale, dtype=np.float64)


def over_one_space(released: dict[str, list[float]], columns: dict[str, list[str]], new_columns: list[str],
                   new: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray | None, int]:
    """The released directions (and ``new``) as vectors over the union of their models' column names, and the
    narrowest model's width.

    A job's own "prepare" may give a dataset's models other columns (indicators, one-hot or ordinal codes):
    their directions are compared column by column, by name, and the budget is that of the narrowest model, so
    models of several layouts never release more independent directions than one of them alone may. A
    direction of a ledger from before the names were kept has the new model's columns if it is as wide, and
    columns of its own otherwise (each then counts in full).
    """
    names_of = {job: columns.get(job) or (new_columns if len(d) == len(new_columns) else
                                          [f"#{job}:{i}" for i in range(len(d))])
                for job, d in released.items()}
    union: dict[str, int] = {name: i for i, name in enumerate(new_columns)}
    for names in names_of.values():
        for name in names:
            union.setdefault(name, len(union))

    def embed(values: Any, names: list[str]) -> np.ndarray:
        vector = np.zeros(len(union))
        vector[[union[n] for n in names]] = np.asarray(values, dtype=np.float64)
        return vector

    vectors = [embed(d, names_of[job]) for job, d in released.items()]
    widths = [len(new_columns), *(len(d) for d in released.values())]
    return vectors, None if new is None else embed(new, new_columns), min(widths)


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
        self._secret: bytes | None = None

    def _path(self, key: tuple[str, str]) -> Path:
        return self.store.data_dir / "releases" / key[0] / f"{key[1]}.json"

    @property
    def key_path(self) -> Path:
        return self.store.data_dir / "releases" / "noise.key"

    def noise_secret(self) -> bytes:
        """This party's noise key: made on first use, 0600, never sent; the same for every partner and dataset."""
        if self._secret is None:
            path = self.key_path
            if path.is_file():
                secret = path.read_bytes()
                if len(secret) != SECRET_BYTES:
                    raise JobError(f"{path} holds {len(secret)} bytes, not a noise key of {SECRET_BYTES}: restore it "
                                   "from a backup (a new key would give every released score fresh noise)")
            else:
                private_folder(path.parent)
                secret = secrets.token_bytes(SECRET_BYTES)
                atomic_write(path, secret, durable=True)
            self._secret = secret
        return self._secret

    def ledger(self, partner: str, dataset: str) -> dict[str, Any]:
        key = (partner, dataset)
        if key not in self._ledgers:
            path = self._path(key)
            data: dict[str, Any] = {}
            if path.is_file():
                try:
                    data = read_json(path)
                except DamagedFile as exc:
                    raise JobError(f"{path} {exc}: without it this party cannot tell what it released to {partner}; "
                                   "restore it from a backup (it scores nothing for that partner on that dataset "
                                   "meanwhile)") from None
            directions = dict(data.get("directions") or {})
            noise = data.get("noise") or {}
            self._ledgers[key] = {
                "directions": directions,
                # Each direction's column names (a job's "prepare" may give a dataset's models other columns).
                "columns": dict(data.get("columns") or {}),
                "scored_ids": int(data.get("scored_ids", 0)),
                # Scorecard jobs: binning runs answered (each sums the partner's encrypted "labels" per bin).
                "binning_runs": int(data.get("binning_runs", 0)),
                # A ledger from before noise existed: every model in it released exact scores.
                "exact_jobs": list(data.get("exact_jobs", directions)),
                "noise": {"key": noise.get("key"), "features": list(noise.get("features") or []),
                          "multipliers": list(noise.get("multipliers") or []), "delta": noise.get("delta")},
            }
        return self._ledgers[key]

    def room_for_a_model(self, partner: str, dataset: str, n_features: int, configured: int | None,
                         directions: int = 1, columns: list[str] | None = None) -> None:
        """At registration: refuse a job whose model could not score, its partner's directions being used up.

        A multi-class job trains one model per class (one-vs-rest): ``directions`` is its class count, and
        each class's model releases its own direction, so all of them must fit. ``columns`` are the model's
        column names (compared by name with the released models': :func:`over_one_space`).
        """
        ledger = self.ledger(partner, dataset)
        names = list(columns) if columns is not None else [f"x{i}" for i in range(n_features)]
        released, _, narrowest = over_one_space(ledger["directions"], ledger["columns"], names)
        n_features = min(n_features, narrowest)
        allowed = budget(n_features, configured)
        if rank(released) + directions > allowed:
            if directions > 1:
                raise LimitExceeded(
                    f"a multi-class job with {directions} classes trains {directions} models, each scoring dataset "
                    f"{dataset!r} along its own direction; {partner} has {rank(released)} of the {allowed} "
                    f"independent directions this party releases ([scoring] score_directions, by default one less "
                    f"than the dataset's {n_features} features), so {directions} more do not fit. Merge classes, "
                    "or raise [scoring] score_directions at this feature party")
            raise LimitExceeded(_spent(partner, dataset, rank(released), allowed, n_features))

    def admit_binning(self, partner: str, dataset: str, max_runs: int) -> int:
        """Charge one binning run to the partner and dataset, or refuse it: returns the runs used so far.

        A deviating label party can encrypt any 0/1 vector as labels (one customer's
        indicator, say) and learn which fine bin each marked row falls in: every run
        answered is one such vector, so the runs are budgeted per partner and dataset over
        all jobs (``[scorecard] max_binning_runs``). Synchronous, on the event loop.
        """
        ledger = self.ledger(partner, dataset)
        if ledger["binning_runs"] >= max_runs:
            raise BudgetSpent(
                f"{partner} has had {ledger['binning_runs']} binning runs of dataset {dataset!r} answered over all "
                f"its jobs, the most this party allows ([scorecard] max_binning_runs = {max_runs}, per partner and "
                "dataset: a new job does not renew it)")
        ledger["binning_runs"] += 1
        return ledger["binning_runs"]

    def admit_points(self, record: JobRecord, count: int, max_ids: int) -> None:
        """A scorecard model: charge ``count`` released values (points totals and reasons) to the scored-ID budget.

        A points total is a function of the row's bins, not a linear combination of its raw
        features, so no direction is charged; the count is (see :meth:`admit`).
        """
        partner, dataset = record.party_id("label"), str(record.dataset)
        ledger = self.ledger(partner, dataset)
        if ledger["scored_ids"] + count > max_ids:
            raise LimitExceeded(
                f"{ledger['scored_ids']} values of dataset {dataset!r} have been released to {partner} over all its "
                f"jobs; {count} more would pass this party's limit of {max_ids} (limits.max_scored_ids, per partner "
                "and dataset: a new job does not renew it)")
        ledger["scored_ids"] += count

    def admit(self, record: JobRecord, model: ModelPartA, count: int, max_ids: int,
              configured: int | None, noise: float | None = None, noise_delta: float = DEFAULT_DELTA) -> bool:
        """Charge ``count`` scored IDs and the model's direction to the job's partner and dataset, or refuse.

        ``noise`` is the multiplier the scores get (None: exact scores, which the ledger
        notes by job), ``noise_delta`` the δ its ε is reported at. Synchronous, on the
        event loop: no other request comes between the checks and the charges. Returns
        whether the ledger changed in more than its count (a new direction, box,
        multiplier or exact job: then :meth:`write` before any score leaves).
        """
        partner, dataset = record.party_id("label"), str(record.dataset)
        ledger = self.ledger(partner, dataset)
        # Checked before anything is charged: a model that cannot be noised is refused whole.
        noise_entry = None if noise is None else self._noise_entry(ledger, model, noise, partner, dataset)
        if noise_entry is not None:
            noise_entry["delta"] = noise_delta
        if ledger["scored_ids"] + count > max_ids:
            raise LimitExceeded(
                f"{ledger['scored_ids']} IDs of dataset {dataset!r} have been scored for {partner} over all its "
                f"jobs; {count} more would pass this party's limit of {max_ids} (limits.max_scored_ids, per partner "
                "and dataset: a new job does not renew it)")
        new = record.job_id not in ledger["directions"]
        if new:
            own = direction(model)
            released, weights, narrowest = over_one_space(ledger["directions"], ledger["columns"],
                                                          list(model.feature_names), own)
            allowed = budget(narrowest, configured)
            if rank([*released, weights]) > max(allowed, rank(released)):
                raise LimitExceeded(_spent(partner, dataset, rank(released), allowed, narrowest))
            ledger["directions"][record.job_id] = own.tolist()
            ledger["columns"][record.job_id] = list(model.feature_names)
        ledger["scored_ids"] += count
        if noise_entry is None:
            if record.job_id not in ledger["exact_jobs"]:
                ledger["exact_jobs"].append(record.job_id)
                new = True
        elif noise_entry != ledger["noise"]:
            ledger["noise"] = noise_entry
            new = True
        return new

    def _noise_entry(self, ledger: dict[str, Any], model: ModelPartA, multiplier: float, partner: str,
                     dataset: str) -> dict[str, Any]:
        """The ledger's noise table once ``model`` has released with ``multiplier`` (or why it cannot).

        A feature keeps the box of the first model that released it, and its place in the
        list, for good: its noise depends on both.
        """
        current = ledger["noise"]
        fingerprint = key_fingerprint(self.noise_secret())
        if current["key"] not in (None, fingerprint):
            raise JobError(f"the noise key {self.key_path} is not the one the scores released to {partner} on "
                           f"dataset {dataset!r} were noised with: restore it from a backup (a new key would give "
                           "every score fresh noise, which averages away)")
        known = {entry["name"] for entry in current["features"]}
        missing = [j for j, name in enumerate(model.feature_names) if name not in known]
        if missing and model.feature_box is None:
            raise JobError(
                f"this model keeps no feature ranges (it was trained by an older vfl), and {partner} has had no "
                f"noisy scores of {', '.join(model.feature_names[j] for j in missing[:5])} yet: with [scoring] "
                "score_noise its rows cannot be bounded. Train the model again, or turn score_noise off")
        added = [{"name": model.feature_names[j], "lo": float(model.feature_box.lo[j]),
                  "hi": float(model.feature_box.hi[j])} for j in missing] if missing else []
        multipliers = current["multipliers"] + ([] if multiplier in current["multipliers"] else [multiplier])
        return {"key": fingerprint, "features": current["features"] + added, "multipliers": multipliers,
                "delta": current["delta"]}

    def score_noise(self, record: JobRecord, model: ModelPartA, multiplier: float) -> ScoreNoise:
        """The noise of ``model``'s rows for the job's partner (after :meth:`admit` with the same multiplier)."""
        partner, dataset = record.party_id("label"), str(record.dataset)
        features = self.ledger(partner, dataset)["noise"]["features"]
        place = {entry["name"]: n for n, entry in enumerate(features)}
        try:
            columns = np.array([place[name] for name in model.feature_names], dtype=np.int64)
        except KeyError as exc:
            raise JobError(f"feature {exc} has no noise box for {partner}: score through admit() first") from None
        box = FeatureBox(np.array([features[n]["lo"] for n in columns], dtype=np.float64),
                         np.array([features[n]["hi"] for n in columns], dtype=np.float64))
        return ScoreNoise(self.noise_secret(), (partner, dataset, float(multiplier).hex()), multiplier, box, columns)

    def noise_accounting(self, record: JobRecord, model: ModelPartA, multiplier: float,
                         delta: float) -> dict[str, Any]:
        """What the job's partner can learn about one person from all the noisy scores it got on the dataset."""
        partner, dataset = record.party_id("label"), str(record.dataset)
        ledger = self.ledger(partner, dataset)
        noise = self.score_noise(record, model, multiplier)
        return {
            "multiplier": multiplier,
            "score_sigma": score_sigma(direction(model), noise.box.width, multiplier),
            **_per_person(ledger, multiplier, delta),
        }

    def write(self, partner: str, dataset: str) -> None:
        """Write the ledger as it is now (from any thread; writes of one ledger never overlap)."""
        key = (partner, dataset)
        with self._locks.setdefault(key, threading.Lock()):
            ledger = self._ledgers.get(key)
            if ledger is None:
                return
            data = {"directions": dict(ledger["directions"]), "columns": dict(ledger["columns"]),
                    "scored_ids": ledger["scored_ids"],
                    "exact_jobs": list(ledger["exact_jobs"]), "binning_runs": ledger["binning_runs"]}
            if ledger["noise"]["multipliers"]:
                noise = ledger["noise"]
                data["noise"] = {**noise, "features": list(noise["features"]),
                                 **_per_person(ledger, noise["multipliers"][-1], noise["delta"] or DEFAULT_DELTA)}
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


def _per_person(ledger: dict[str, Any], multiplier: float, delta: float) -> dict[str, Any]:
    """ρ of one release at ``multiplier``, and ρ and ε(δ) per person over every release of the ledger."""
    features = len(ledger["noise"]["features"])
    multipliers = ledger["noise"]["multipliers"]
    rho = rho_per_person(features, multipliers)
    return {
        "n_features": features,
        "rho_per_release": rho_per_person(features, [multiplier]),
        "multipliers_used": list(multipliers),
        "rho_per_person": rho,
        "delta": delta,
        "epsilon_per_person": epsilon(rho, delta),
        "models_released": len(ledger["directions"]),
        "exact_jobs": list(ledger["exact_jobs"]),
        "covers": "every person, over all jobs with this label party on this dataset" if not ledger["exact_jobs"]
        else "only the people never scored by the exact_jobs, whose scores were released without noise",
    }


def _spent(partner: str, dataset: str, held: int, allowed: int, n_features: int) -> str:
    return (f"{partner} has the scores of {held} independent combinations of dataset {dataset!r}'s {n_features} "
            f"features already, the most this party releases to one partner ({allowed}: [scoring] "
            "score_directions, by default one less than the feature count, so that no partner can solve for "
            "the features); a new model of this dataset cannot score for it")


__all__ = ["Releases", "budget", "direction", "rank"]
