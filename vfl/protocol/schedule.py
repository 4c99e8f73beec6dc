"""The training schedule every role derives on its own from the config.

Rows are the aligned rows 0..n−1, ordered identically at A and B by the
alignment step. From ``(n, config)`` alone each role computes the same
validation split, the same seeded shuffle per epoch, and the same list of
batches whose loss is due, so batch membership never crosses the wire and the
arbiter can tell an expected message from one that is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vfl.config import TrainingConfig
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
        return -(-self.n_train // self.batch_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Row indices of every batch of ``epoch`` (a fresh seeded shuffle per epoch)."""
        cached = self._cache.get(epoch)
        if cached is None:
            rows = self.train_rows
            if self.batches_per_epoch > 1:
                rows = rows[np.random.default_rng([self.config.seed, epoch]).permutation(len(rows))]
            size = self.batch_size
            cached = [rows[i : i + size] for i in range(0, len(rows), size)]
            self._cache.clear()  # only the current epoch is ever needed
            self._cache[epoch] = cached
        return cached

    def batch(self, epoch: int, batch: int) -> np.ndarray:
        return self.batches(epoch)[batch]

    def batch_length(self, batch: int) -> int:
        """Rows in batch number ``batch`` (the same in every epoch)."""
        start = batch * self.batch_size
        return min(self.batch_size, self.n_train - start)

    def loss_due(self, batch: int) -> bool:
        """Is the encrypted loss computed for this batch? Always for an epoch's last."""
        last = self.batches_per_epoch - 1
        return batch == last or (batch + 1) % self.config.loss_every == 0

    def due_loss_rows(self) -> int:
        """Training rows whose loss is computed in one epoch (for the weighted mean)."""
        return sum(self.batch_length(b) for b in range(self.batches_per_epoch) if self.loss_due(b))
