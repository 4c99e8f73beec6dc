"""The arbiter's stopping rule, as a pure object.

After every epoch the arbiter knows the epoch's training loss (the row-weighted
mean of the batch losses it decrypted) and, with a validation split, the
validation loss. It stops the job when

* the maximum number of epochs is reached ("max_epochs"),
* the training loss moved less than ``tol`` since the previous epoch ("converged"), or
* with early stopping, the validation loss has not improved for
  ``early_stopping_rounds`` epochs ("early_stopping"), or
* the training diverged ("diverged"): the epoch's training loss is more than
  :data:`DIVERGENCE_FACTOR` times the loss training starts from (all weights
  zero: log 2 for logistic regression, ½ for linear regression on B's
  standardised labels; a run that learns only goes down from there), or a loss
  is not a finite number. The parties then end the job as failed
  (:class:`~vfl.errors.DivergedError`, raised by party B, which knows the
  losses), never as a success with a useless model.

With a validation split and early stopping on, the parties keep the weights of
the best validation epoch and end with those, whatever the reason for stopping.
A differentially private job only ever stops at ``epochs`` (see vfl.ml.privacy); it
cannot diverge either, since its weights are projected into a ball after every step.
The reference implementation uses this same class, so both stop identically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vfl.ml.config import ModelKind, TrainingConfig

#: The stop reason of a diverged job.
DIVERGED = "diverged"
#: An epoch whose training loss exceeds this many times the starting loss has diverged.
DIVERGENCE_FACTOR = 1000.0


def start_loss(model: ModelKind) -> float:
    """The mean training loss with every weight zero, where training starts.

    Logistic: the Taylor loss log 2 − ½ỹu + ⅛u² is log 2 at u = 0. Linear: ½(u − y)²
    at u = 0 is ½y², whose mean is ½ on B's labels standardised over the training rows.
    """
    return math.log(2.0) if model == "logistic" else 0.5


def lower_rate_hint(config: TrainingConfig) -> str:
    """What to change after a divergence, with the step size in force."""
    return f"lower the learning rate (now {config.step_size:g}, optimizer {config.optimizer}) and train again"


def divergence_message(train_losses: Sequence[float], config: TrainingConfig,
                       validation_losses: Sequence[float] = ()) -> str:
    """Why a job stopped as diverged, from party B's loss history (one loss per epoch, the last one diverged)."""
    epoch = len(train_losses)
    last = train_losses[-1] if train_losses else float("nan")
    if not math.isfinite(last) or (validation_losses and not math.isfinite(validation_losses[-1])):
        what = f"the {'training' if not math.isfinite(last) else 'validation'} loss of epoch {epoch} is not a finite number"
    else:
        rise = (f"rose from {train_losses[0]:.4g} (epoch 1) to {last:.4g} (epoch {epoch})" if epoch > 1
                else f"of epoch 1 is {last:.4g}")
        what = (f"the training loss {rise}, more than {DIVERGENCE_FACTOR:g} times the loss training starts from "
                f"({start_loss(config.model):.4g}, all weights zero)")
    return f"training diverged: {what}; {lower_rate_hint(config)}"


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
        if not self.private and self.diverged(train_loss, validation_loss):
            reason = DIVERGED
        elif epoch + 1 >= self.config.epochs:
            reason = "max_epochs"
        elif self.private:
            pass
        elif len(self.train_losses) >= 2 and abs(self.train_losses[-1] - self.train_losses[-2]) < self.config.tol:
            reason = "converged"
        elif self.keeps_best and epoch - self.best_epoch >= self.config.early_stopping_rounds:
            reason = "early_stopping"
        return EpochOutcome(epoch, train_loss, validation_loss, reason is not None, reason, improved, self.best_epoch)

    def diverged(self, train_loss: float, validation_loss: float | None) -> bool:
        """Has training blown up: a loss that is not finite, or far above the starting loss?"""
        if not math.isfinite(train_loss) or (validation_loss is not None and not math.isfinite(validation_loss)):
            return True
        return train_loss > DIVERGENCE_FACTOR * start_loss(self.config.model)

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.train_losses, "validation": self.validation_losses, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_losses = list(state["train"])
        self.validation_losses = list(state["validation"])
        self.best_epoch = int(state["best_epoch"])
