"""The same algorithm as the encrypted protocol, in plain numpy, on pooled data.

This is the yardstick of exactness: with the same config (same seed, batches,
Taylor loss, optimiser and stopping rule) the federated weights must equal
these up to fixed-point rounding. It is also the "same model on pooled data"
row of the comparison tables. It uses the schedule, model math, optimisers
and convergence monitor that the roles use, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vfl import privacy
from vfl.config import TrainingConfig
from vfl.models import l2_penalty, model_math, penalty_mask, with_intercept
from vfl.optim import make_optimizer
from vfl.protocol.convergence import ConvergenceMonitor
from vfl.protocol.schedule import Schedule


@dataclass
class PlainResult:
    weights_a: np.ndarray
    weights_b: np.ndarray  # B's features, then the intercept when fitted
    train_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    epochs_run: int = 0
    stop_reason: str | None = None


def train_plaintext(
    X_a: np.ndarray,
    X_b: np.ndarray,
    y: np.ndarray,
    config: TrainingConfig,
    *,
    model_rounding: bool = False,
    noise_seeds: tuple[int, int] = (0, 1),
) -> PlainResult:
    """Train on pooled, already standardised features with the protocol's algorithm.

    ``model_rounding=True`` rounds the features to ``config.feature_frac_bits``
    in the gradient product, as the encrypted product does; what remains between
    the two is then only the far smaller rounding of u_A and the residual.
    With ``config.privacy`` the same clipping, noise (from ``noise_seeds``, one
    per party) and weight projection are applied as in the protocol.
    """
    math = model_math(config.model)
    schedule = Schedule(len(y), config)
    plan = None
    if config.privacy is not None:
        plan = privacy.plan(config, schedule.n_train, schedule.largest_batch, schedule.batches_per_epoch)
        X_a, X_b = privacy.clip_rows(X_a, plan.config.row_clip), privacy.clip_rows(X_b, plan.config.row_clip)
        if config.model == "linear":
            y = np.clip(y, -plan.config.label_clip, plan.config.label_clip)
    Xb = with_intercept(X_b, config.fit_intercept)
    Ga, Gb = X_a, Xb  # the matrices the gradient is taken with
    if model_rounding:
        scale = 2.0**config.feature_frac_bits
        Ga, Gb = np.rint(X_a * scale) / scale, np.rint(Xb * scale) / scale
    pen_a = np.ones(X_a.shape[1])
    pen_b = penalty_mask(X_b.shape[1], config.fit_intercept)
    theta_a, theta_b = np.zeros(X_a.shape[1]), np.zeros(Xb.shape[1])
    best_a, best_b = theta_a.copy(), theta_b.copy()
    train = schedule.train_rows
    opt_a = make_optimizer(config, pen_a, X_a[train], math.c)
    opt_b = make_optimizer(config, pen_b, Xb[train], math.c)
    monitor = ConvergenceMonitor(config, schedule.has_validation)
    reason = None
    epoch = 0
    for epoch in range(config.epochs):
        loss_total, loss_rows = 0.0, 0
        for b, rows in enumerate(schedule.batches(epoch)):
            u_a, u_b = X_a[rows] @ theta_a, Xb[rows] @ theta_b
            if schedule.loss_due(b):
                reg = l2_penalty(theta_a, pen_a, config.l2) + l2_penalty(theta_b, pen_b, config.l2)
                loss_total += math.loss_sum(u_a, u_b, y[rows]) + len(rows) * reg
                loss_rows += len(rows)
            d = math.residual(u_a, u_b, y[rows])
            share = len(rows) / schedule.n_train
            sum_a, sum_b = Ga[rows].T @ d, Gb[rows].T @ d
            if plan is not None:
                sum_a = plan.add_noise(sum_a, noise_seeds[0], epoch, b)
                sum_b = plan.add_noise(sum_b, noise_seeds[1], epoch, b)
            theta_a = opt_a.step(theta_a, sum_a / len(rows), epoch, share)
            theta_b = opt_b.step(theta_b, sum_b / len(rows), epoch, share)
            if plan is not None:
                theta_a, theta_b = plan.bound(theta_a), plan.bound(theta_b)
        val_loss = None
        if schedule.has_validation:
            rows = schedule.validation_rows
            val_loss = math.loss_sum(X_a[rows] @ theta_a, Xb[rows] @ theta_b, y[rows]) / len(rows)
        outcome = monitor.end_epoch(epoch, loss_total / loss_rows, val_loss)
        if outcome.improved:
            best_a, best_b = theta_a.copy(), theta_b.copy()
        if outcome.stop:
            reason = outcome.reason
            break
    if monitor.keeps_best:
        theta_a, theta_b = best_a, best_b
    return PlainResult(theta_a, theta_b, monitor.train_losses, monitor.validation_losses, epoch + 1, reason)
