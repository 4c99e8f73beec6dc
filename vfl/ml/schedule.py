"""The training schedule every role derives on its own from the config.

Rows are the aligned rows 0..n−1, ordered identically at A and B by the
alignment step. From ``(n, config)`` alone each role computes the same
validation split, the same seeded shuffle per epoch, and the same list of
batches whose loss is due, so batch membership never crosses the wire and the
arbiter can tell an expected message from one that is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from functools import cached_property

import numpy as np

from vfl.ml.config import TrainingConfig
from vfl.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    n_rows: int
    config: TrainingConfig
    _cache: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_rows < 2:
            raise ConfigError(f"need at least 2 aligned rows to train, got {self.n_rows}")
        if self.n_train < 1:
            raise ConfigError(
                f"validation_fraction={self.config.validation_fraction} leaves no training rows "
                f"out of {self.n_rows}; lower it"
            )

    @cached_property
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        n_val = int(round(self.n_rows * self.config.validation_fraction))
        if n_val == 0:
            return np.arange(self.n_rows), np.arange(0)
        perm = np.random.default_rng([self.config.seed, 0x5EED]).permutation(self.n_rows)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    @property
    def train_rows(self) -> np.ndarray:
        return self._split[0]

    @property
    def validation_rows(self) -> np.ndarray:
        return self._split[1]

    @property
    def n_train(self) -> int:
        n_val = int(round(self.n_rows * self.config.validation_fraction))
        return self.n_rows - n_val

    @property
    def has_validation(self) -> bool:
        return len(self.validation_rows) > 0

    @property
    def batch_size(self) -> int:
        size = self.config.batch_size
        return self.n_train if size is None else min(size, self.n_train)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches; a remainder shorter than half a batch joins the last one.

        A very short last batch gives a noisy step, and a gradient as long as it
        could carry its whole residual past the arbiter (see :func:`check_gradient_lengths`).
        """
        full, rest = divmod(self.n_train, self.batch_size)
        if full == 0:
            return 1
        return full + (1 if 2 * rest >= self.batch_size else 0)

    @property
    def largest_batch(self) -> int:
        """Rows in the longest batch (the last one, when a short remainder joined it)."""
        return max(self.batch_length(b) for b in (0, self.batches_per_epoch - 1))

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Row indices of every batch of ``epoch`` (a fresh seeded shuffle per epoch)."""
        cached = self._cache.get(epoch)
        if cached is None:
            rows = self.train_rows
            if self.batches_per_epoch > 1:
                rows = rows[np.random.default_rng([self.config.seed, epoch]).permutation(len(rows))]
            size, count = self.batch_size, self.batches_per_epoch
            cached = [rows[i * size : (i + 1) * size if i + 1 < count else len(rows)] for i in range(count)]
            self._cache.clear()  # only the current epoch is ever needed
            self._cache[epoch] = cached
        return cached

    def batch(self, epoch: int, batch: int) -> np.ndarray:
        return self.batches(epoch)[batch]

    def batch_length(self, batch: int) -> int:
        """Rows in batch number ``batch`` (the same in every epoch)."""
        start = batch * self.batch_size
        if batch == self.batches_per_epoch - 1:
            return self.n_train - start
        return self.batch_size

    def loss_due(self, batch: int) -> bool:
        """Is the encrypted loss computed for this batch? Always for an epoch's last."""
        last = self.batches_per_epoch - 1
        return batch == last or (batch + 1) % self.config.loss_every == 0

    def due_loss_rows(self) -> int:
        """Training rows whose loss is computed in one epoch (for the weighted mean)."""
        return sum(self.batch_length(b) for b in range(self.batches_per_epoch) if self.loss_due(b))


def gradient_lengths(
    n_features_a: int | Mapping[str, int], n_features_b: int, config: TrainingConfig, *, label: str = "B",
) -> dict[str, int]:
    """How many values each party's gradient has: fixed by the job, never by the party itself.

    ``n_features_a`` is the feature count of each feature party by id (or of the
    one party "A"). A feature party's gradient has one value per feature; party
    B's (id ``label``) also has the intercept. The arbiter decrypts vectors of
    exactly these lengths and nothing else.
    """
    features = {"A": n_features_a} if isinstance(n_features_a, int) else dict(n_features_a)
    lengths = {party: int(n) for party, n in features.items()}
    lengths[label] = int(n_features_b) + (1 if config.fit_intercept else 0)
    return lengths


def check_gradient_lengths(lengths: dict[str, int], schedule: Schedule) -> None:
    """Refuse lengths that could carry a residual vector past the arbiter.

    A party may send the arbiter any vector of its registered length as its
    "gradient". If that length could hold a whole batch (or the validation rows),
    a party could have C decrypt the residual ``[[d]]`` itself, and with it the
    labels. Strictly shorter vectors leave the bound docs/security.md states: at most
    ``length`` residual values per batch, and then that party's own gradient is
    never decrypted.
    """
    shortest = min(schedule.batch_length(b) for b in range(schedule.batches_per_epoch))
    limits = [("the smallest batch", shortest)]
    if schedule.has_validation:
        limits.append(("the validation split", len(schedule.validation_rows)))
    for party, length in sorted(lengths.items()):
        if length < 1:
            raise ConfigError(f"party {party}'s gradient length must be at least 1, got {length}")
        for what, rows in limits:
            if length >= rows:
                raise ConfigError(
                    f"party {party}'s gradient has {length} values but {what} has only {rows} rows: "
                    "a vector that long could carry that many residuals past the arbiter. Use larger "
                    "batches (training.batch_size, and avoid a short last batch), a larger "
                    "validation_fraction, or fewer features"
                )
