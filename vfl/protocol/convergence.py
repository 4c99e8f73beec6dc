"""The arbiter's stopping rule, as a pure object.

After every epoch the arbiter knows the epoch's training loss (the row-weighted
mean of the batch losses it decrypted) and, with a validation split, the
validation loss. It stops the job when

* the maximum number of epochs is reached ("max_epochs"),
* the training loss moved less than ``tol`` since the previous epoch ("converged"), or
* with early stopping, the validation loss has not improved for
  ``early_stopping_rounds`` epochs ("early_stopping").

With a validation split and early stopping on, the parties keep the weights of
the best validation epoch and end with those, whatever the reason for stopping.
A differentially private job only ever stops at ``epochs`` (see vfl.privacy).
The reference implementation uses this same class, so both stop identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfl.config import TrainingConfig


@dataclass(frozen=True)
class EpochOutcome:
    epoch: int
    train_loss: float
    validation_loss: float | None
    stop: bool
    reason: str | None
    improved: bool
    best_epoch: int


@dataclass
class ConvergenceMonitor:
    config: TrainingConfig
    has_validation: bool
    train_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def private(self) -> bool:
        """With differential privacy the job runs all its epochs: stopping on the loss would leak."""
        return self.config.privacy is not None

    @property
    def keeps_best(self) -> bool:
        """Do the parties end with the best validation epoch's weights?"""
        return self.config.keeps_best_epoch(self.has_validation)

    def end_epoch(self, epoch: int, train_loss: float, validation_loss: float | None) -> EpochOutcome:
        self.train_losses.append(train_loss)
        improved = False
        if validation_loss is not None:
            self.validation_losses.append(validation_loss)
            best = min(self.validation_losses[:-1], default=float("inf"))
            improved = validation_loss < best
        else:
            improved = True  # without validation the latest weights are the model
        if improved:
            self.best_epoch = epoch
        reason = None
        if epoch + 1 >= self.config.epochs:
            reason = "max_epochs"
        elif self.private:
            pass
        elif len(self.train_losses) >= 2 and abs(self.train_losses[-1] - self.train_losses[-2]) < self.config.tol:
            reason = "converged"
        elif self.keeps_best and epoch - self.best_epoch >= self.config.early_stopping_rounds:
            reason = "early_stopping"
        return EpochOutcome(epoch, train_loss, validation_loss, reason is not None, reason, improved, self.best_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.train_losses, "validation": self.validation_losses, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_losses = list(state["train"])
        self.validation_losses = list(state["validation"])
        self.best_epoch = int(state["best_epoch"])
