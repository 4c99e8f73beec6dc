"""Differential privacy for vertical logistic and linear regression.

The mechanism (Gaussian noise on each party's own gradient, as DP-SGD does):

1. **Bound every row.** Each party clips its own standardised feature row to
   L2 norm ``row_clip`` = C (party B's row also carries the intercept's 1),
   and after every step projects its weights onto the ball of radius
   ``weight_bound`` = W. Then |u_A| ≤ C·W and |u_B| ≤ √(C²+1)·W. For linear
   regression party B also clips its standardised label to [−Y, Y].
2. **Bound the residual.** d = c·(u_A + u_B) + (½ − y) for logistic regression
   (c = ¼), d = u_A + u_B − y for linear, so |d| ≤ D with
   D = c·(C + √(C²+1))·W + ½ (logistic) or (C + √(C²+1))·W + Y (linear).
   With the exact log-loss d = σ(u) − y, so D = 1 whatever the bounds.
3. **Sensitivity.** One row i contributes x_{i,A}·d_i to A's gradient sum and
   x_{i,B}·d_i to B's; together its L2 norm is at most
   S = D·√(C² + C² + 1) (without the intercept's 1 when there is none).
   Adding or removing one row therefore moves the joint gradient sum by at
   most S in L2.
4. **Noise.** Each party adds N(0, (σ·S)²) to every coordinate of its own
   gradient sum, then divides by the batch size and takes its step. The two
   parties' noise together is one Gaussian mechanism with noise multiplier σ
   on the joint gradient, applied once per batch.
5. **Accounting.** Google's ``dp_accounting`` library composes the
   ``epochs × batches`` steps with Rényi DP, treating each batch as a Poisson
   sample at rate q = batch size / training rows (the usual DP-SGD
   convention; our batches are shuffled partitions, for which this is the
   standard approximation), and converts to (ε, δ). A target ε is met by
   bisecting on σ.

What the guarantee covers: each party's sequence of weights, hence the
trained model parts and every prediction made with them, is (ε, δ)-DP with
respect to any one training row. Stopping early on the loss would make the
number of epochs depend on the data, so a private job always runs its full
``epochs``. Not covered: the loss values the arbiter decides on (B and C see
them), the metrics computed after training, and each party's view of its own
raw gradient during training, and the standardisation each party applies to
its own features (means and deviations from its training rows, which shape the
model like public preprocessing would).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.ml.config import PrivacyConfig, TrainingConfig
from vfl.errors import ConfigError

def residual_bound(config: TrainingConfig) -> float:
    """D: the largest |d| any row can have under the clipping and projection of ``config.privacy``."""
    p = _privacy(config)
    reach = (p.row_clip + math.sqrt(p.row_clip**2 + (1.0 if config.fit_intercept else 0.0))) * p.weight_bound
    if config.exact_loss:
        return 1.0  # |σ(u) − y| < 1
    if config.model == "logistic":
        return 0.25 * reach + 0.5
    return reach + p.label_clip


def sensitivity(config: TrainingConfig) -> float:
    """S: how far one row can move the joint (A, B) gradient sum, in L2."""
    p = _privacy(config)
    row_norm = math.sqrt(2 * p.row_clip**2 + (1.0 if config.fit_intercept else 0.0))
    return residual_bound(config) * row_norm


def epsilon_spent(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` sampled Gaussian steps: dp_accounting's RDP accountant, with its default orders."""
    import dp_accounting
    from dp_accounting import rdp

    event = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # it warns, harmlessly, when an order below 2 fails to converge
    try:
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
        return float(accountant.get_epsilon(delta))
    finally:
        absl.setLevel(level)


def noise_for_epsilon(target: float, sampling_rate: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose ε is at most ``target``."""
    low, high = 1e-2, 1.0
    while epsilon_spent(high, sampling_rate, steps, delta) > target:
        low, high = high, high * 2
        if high > 1e5:
            raise ConfigError(f"no noise level reaches ε = {target} in {steps} steps; allow a larger ε")
    while high / low > 1.001:
        middle = math.sqrt(low * high)
        if epsilon_spent(middle, sampling_rate, steps, delta) > target:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class PrivacyPlan:
    """What a private job does, worked out once from its config and schedule."""

    noise_multiplier: float
    sensitivity: float
    sampling_rate: float
    steps: int
    delta: float
    epsilon: float
    config: PrivacyConfig

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise each party adds to each coordinate of its gradient sum."""
        return self.noise_multiplier * self.sensitivity

    def add_noise(self, gradient_sum: np.ndarray, seed: int, epoch: int, batch: int) -> np.ndarray:
        """A party's gradient sum with its noise for this step (seeded, so a resumed run repeats it)."""
        return gradient_sum + gaussian_noise(seed, epoch, batch, len(gradient_sum), self.noise_std)

    def bound(self, weights: np.ndarray) -> np.ndarray:
        """Weights projected back into the ball of radius ``weight_bound`` after a step."""
        return project(weights, self.config.weight_bound)

    def report(self) -> dict[str, Any]:
        return {
            "epsilon": round(self.epsilon, 4),
            "delta": self.delta,
            "noise_multiplier": round(self.noise_multiplier, 4),
            "sensitivity": round(self.sensitivity, 4),
            "noise_std": round(self.noise_std, 4),
            "sampling_rate": round(self.sampling_rate, 6),
            "steps": self.steps,
            "row_clip": self.config.row_clip,
            "weight_bound": self.config.weight_bound,
            "label_clip": self.config.label_clip,
            "accountant": "Rényi DP, dp_accounting.rdp.RdpAccountant (Poisson-sampled Gaussian)",
        }


def plan(config: TrainingConfig, n_train: int, batch_size: int, batches_per_epoch: int) -> PrivacyPlan:
    p = _privacy(config)
    q = min(1.0, batch_size / n_train)
    steps = config.epochs * batches_per_epoch
    sigma = p.noise_multiplier if p.noise_multiplier is not None else noise_for_epsilon(p.epsilon, q, steps, p.delta)
    return PrivacyPlan(sigma, sensitivity(config), q, steps, p.delta, epsilon_spent(sigma, q, steps, p.delta), p)


def clip_rows(X: np.ndarray, bound: float) -> np.ndarray:
    """Scale every row whose L2 norm exceeds ``bound`` down to ``bound``."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X * np.minimum(1.0, bound / np.maximum(norms, 1e-300))


def project(weights: np.ndarray, bound: float) -> np.ndarray:
    """The nearest point to ``weights`` in the L2 ball of radius ``bound``."""
    norm = float(np.linalg.norm(weights))
    return weights if norm <= bound else weights * (bound / norm)


def gaussian_noise(seed: int, epoch: int, batch: int, size: int, std: float) -> np.ndarray:
    """The noise a party adds in one step, from its own secret seed (so a resumed run repeats it)."""
    return np.random.default_rng([seed, epoch, batch]).normal(0.0, std, size)


def _privacy(config: TrainingConfig) -> PrivacyConfig:
    if config.privacy is None:
        raise ConfigError("this job has no privacy settings")
    return config.privacy
