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

from vfl.ml import privacy
from vfl.ml.config import TrainingConfig
from vfl.ml.kinds import exact_loss_sum, exact_residual, l2_penalty, model_math, penalty_mask, with_intercept
from vfl.ml.optim import make_optimizer
from vfl.errors import DivergedError
from vfl.ml.convergence import DIVERGED, ConvergenceMonitor, divergence_message
from vfl.ml.schedule import Schedule


@dataclass
class PlainResult:
    weights_a: np.ndarray  # every feature party's weights, concatenated in order
    weights_b: np.ndarray  # B's features, then the intercept when fitted
    train_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    epochs_run: int = 0
    stop_reason: str | None = None
    weights_parts: list[np.ndarray] = field(default_factory=list)  # one per feature party


def train_plaintext(
    X_a: np.ndarray | list[np.ndarray],
    X_b: np.ndarray,
    y: np.ndarray,
    config: TrainingConfig,
    *,
    model_rounding: bool = False,
    noise_seeds: tuple[int, ...] | None = None,
) -> PlainResult:
    """Train on pooled, already standardised features with the protocol's algorithm.

    ``X_a`` is one feature party's matrix, or a list of them (k feature parties:
    u = Σ_h X_h·θ_h, each party with its own optimiser, as in the protocol).
    ``noise_seeds`` has one seed per feature party, then B's (default 0, 1, …).

    ``model_rounding=True`` rounds the features to ``config.feature_frac_bits``
    in the gradient product, as the encrypted product does; what remains between
    the two is then only the far smaller rounding of u_A and the residual.
    With ``config.privacy`` the same clipping, noise (from ``noise_seeds``, one
    per party) and weight projection are applied as in the protocol.
    """
    math = model_math(config.model)
    parts = [np.asarray(X_a)] if not isinstance(X_a, list) else [np.asarray(x) for x in X_a]
    k = len(parts)
    noise_seeds = tuple(range(k + 1)) if noise_seeds is None else tuple(noise_seeds)
    seeds_a, seed_b = noise_seeds[:-1], noise_seeds[-1]
    if len(seeds_a) != k:
        raise ValueError(f"noise_seeds needs {k + 1} seeds (one per feature party, then B's), got {len(noise_seeds)}")
    schedule = Schedule(len(y), config)
    plan = None
    if config.privacy is not None:
        plan = privacy.plan(config, schedule.n_train, schedule.largest_batch, schedule.batches_per_epoch)
        parts = [privacy.clip_rows(x, plan.config.row_clip) for x in parts]
        X_b = privacy.clip_rows(X_b, plan.config.row_clip)
        if config.model == "linear":
            y = np.clip(y, -plan.config.label_clip, plan.config.label_clip)
    Xb = with_intercept(X_b, config.fit_intercept)
    grads, Gb = list(parts), Xb  # the matrices the gradient is taken with
    if model_rounding:
        scale = 2.0**config.feature_frac_bits
        grads, Gb = [np.rint(x * scale) / scale for x in parts], np.rint(Xb * scale) / scale
    pens = [np.ones(x.shape[1]) for x in parts]
    pen_b = penalty_mask(X_b.shape[1], config.fit_intercept)
    thetas, theta_b = [np.zeros(x.shape[1]) for x in parts], np.zeros(Xb.shape[1])
    bests, best_b = [t.copy() for t in thetas], theta_b.copy()
    train = schedule.train_rows
    opts = [make_optimizer(config, pen, x[train], math.c, parties=k + 1) for pen, x in zip(pens, parts)]
    opt_b = make_optimizer(config, pen_b, Xb[train], math.c, parties=k + 1)
    monitor = ConvergenceMonitor(config, schedule.has_validation)
    reason = None
    epoch = 0

    def loss_sum(u_a: np.ndarray, u_b: np.ndarray, y_rows: np.ndarray) -> float:
        if config.exact_loss:
            return exact_loss_sum(u_a + u_b, y_rows)
        return math.loss_sum(u_a, u_b, y_rows)

    def u_features(rows: np.ndarray) -> np.ndarray:
        u = parts[0][rows] @ thetas[0]
        for x, theta in zip(parts[1:], thetas[1:]):
            u = u + x[rows] @ theta
        return u

    for epoch in range(config.epochs):
        loss_total, loss_rows = 0.0, 0
        for b, rows in enumerate(schedule.batches(epoch)):
            u_a, u_b = u_features(rows), Xb[rows] @ theta_b
            if schedule.loss_due(b):
                reg = sum(l2_penalty(t, pen, config.l2) for t, pen in zip(thetas, pens)) + l2_penalty(theta_b, pen_b, config.l2)
                loss_total += loss_sum(u_a, u_b, y[rows]) + len(rows) * reg
                loss_rows += len(rows)
            d = exact_residual(u_a + u_b, y[rows]) if config.exact_loss else math.residual(u_a, u_b, y[rows])
            share = len(rows) / schedule.n_train
            sums, sum_b = [g[rows].T @ d for g in grads], Gb[rows].T @ d
            if plan is not None:
                sums = [plan.add_noise(s, seed, epoch, b) for s, seed in zip(sums, seeds_a)]
                sum_b = plan.add_noise(sum_b, seed_b, epoch, b)
            thetas = [opt.step(t, s / len(rows), epoch, share) for opt, t, s in zip(opts, thetas, sums)]
            theta_b = opt_b.step(theta_b, sum_b / len(rows), epoch, share)
            if plan is not None:
                thetas, theta_b = [plan.bound(t) for t in thetas], plan.bound(theta_b)
        val_loss = None
        if schedule.has_validation:
            rows = schedule.validation_rows
            val_loss = loss_sum(u_features(rows), Xb[rows] @ theta_b, y[rows]) / len(rows)
        outcome = monitor.end_epoch(epoch, loss_total / loss_rows, val_loss)
        if outcome.improved:
            bests, best_b = [t.copy() for t in thetas], theta_b.copy()
        if outcome.reason == DIVERGED:  # as the protocol's party B does
            raise DivergedError(divergence_message(monitor.train_losses, config, monitor.validation_losses))
        if outcome.stop:
            reason = outcome.reason
            break
    if monitor.keeps_best:
        thetas, theta_b = bests, best_b
    return PlainResult(np.concatenate(thetas), theta_b, monitor.train_losses, monitor.validation_losses, epoch + 1,
                       reason, thetas)
