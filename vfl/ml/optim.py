"""Local optimisers: each party updates its own weights with its own gradient.

The arbiter never sees weights, so L2 regularisation, learning-rate decay and
the optimiser state all live at the party. Optimisers are plain objects whose
state round-trips through :meth:`Optimizer.state_dict` for checkpoints.

Three are offered:

``newton`` (default): party-local Newton, i.e. block-diagonal preconditioning.
    The loss is quadratic in the weights (squared loss, or the Taylor
    expansion of the log-loss), with Hessian H = c·XᵀX/n + λ. Each party knows
    its own diagonal block H_pp = c·X_pᵀX_p/n + λ exactly, from its own data,
    and steps along ``H_pp⁻¹ g_p``. Nothing extra crosses the wire. For two
    blocks H ≼ 2·blockdiag(H), so the iteration converges for any step below 1,
    at a rate set only by how correlated A's features are with B's. Within-party
    ill-conditioning (correlated columns, different scales), which stalls plain
    gradient descent, is removed. Heavy-ball momentum (0.3) speeds it further.
``adam``: Adam with bias correction.
``sgd``: gradient descent with optional momentum.

All three divide the learning rate by (1 + decay·epoch), or its square root.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vfl.ml.config import TrainingConfig


class Optimizer:
    """Base: learning-rate decay by epoch, L2 on every weight not masked out."""

    def __init__(self, config: TrainingConfig, penalised: np.ndarray) -> None:
        self.lr = config.step_size
        self.decay = config.decay
        self.decay_sqrt = config.decay_sqrt
        self.l2 = config.l2
        self.penalised = np.asarray(penalised, dtype=np.float64)

    def learning_rate(self, epoch: int) -> float:
        scale = 1.0 + self.decay * epoch
        return self.lr / (np.sqrt(scale) if self.decay_sqrt else scale)

    def regularised(self, weights: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """∇(loss + λ/2‖θ‖²) with the intercept excluded from the penalty."""
        return grad + self.l2 * self.penalised * weights

    def step(self, weights: np.ndarray, grad: np.ndarray, epoch: int, batch_share: float = 1.0) -> np.ndarray:
        """New weights after one batch. ``batch_share`` is the batch's share of the training rows."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Momentum(Optimizer):
    """Heavy-ball steps along a direction given by :meth:`direction`."""

    def __init__(self, config: TrainingConfig, penalised: np.ndarray) -> None:
        super().__init__(config, penalised)
        self.momentum = config.momentum_in_force
        self.velocity = np.zeros(len(self.penalised))

    #: Scale each step by the batch's share of the rows (so lr is per epoch)?
    per_epoch_step = False

    def direction(self, grad: np.ndarray) -> np.ndarray:
        return grad

    def step(self, weights: np.ndarray, grad: np.ndarray, epoch: int, batch_share: float = 1.0) -> np.ndarray:
        direction = self.direction(self.regularised(weights, grad))
        if self.per_epoch_step:
            direction = direction * batch_share
        self.velocity = self.momentum * self.velocity + direction
        return weights - self.learning_rate(epoch) * self.velocity

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": self.velocity.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = np.asarray(state["velocity"], dtype=np.float64)


class SGD(Momentum):
    pass


class LocalNewton(Momentum):
    """Steps along H_pp⁻¹·g with the party's own exact Hessian block.

    With mini-batches each step is scaled by the batch's share of the rows, so
    one epoch takes about one damped Newton step in total whatever the batch
    size: a full-size preconditioned step on a small, noisy batch would amplify
    its noise along the flat directions of H.
    """

    per_epoch_step = True

    def __init__(self, config: TrainingConfig, penalised: np.ndarray, curvature: np.ndarray) -> None:
        super().__init__(config, penalised)
        hessian = np.asarray(curvature, dtype=np.float64) + np.diag(self.l2 * self.penalised)
        # The pseudo-inverse takes no step along a direction with zero curvature
        # (a constant or duplicated column), where the gradient is zero too.
        self.inverse = np.linalg.pinv(hessian, hermitian=True)

    def direction(self, grad: np.ndarray) -> np.ndarray:
        return self.inverse @ grad


class Adam(Optimizer):
    beta1 = 0.9
    beta2 = 0.999
    eps = 1e-8

    def __init__(self, config: TrainingConfig, penalised: np.ndarray) -> None:
        super().__init__(config, penalised)
        size = len(self.penalised)
        self.m = np.zeros(size)
        self.v = np.zeros(size)
        self.t = 0

    def step(self, weights: np.ndarray, grad: np.ndarray, epoch: int, batch_share: float = 1.0) -> np.ndarray:
        g = self.regularised(weights, grad)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return weights - self.learning_rate(epoch) * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self) -> dict[str, Any]:
        return {"m": self.m.tolist(), "v": self.v.tolist(), "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = np.asarray(state["m"], dtype=np.float64)
        self.v = np.asarray(state["v"], dtype=np.float64)
        self.t = int(state["t"])


def make_optimizer(
    config: TrainingConfig, penalised: np.ndarray, design: np.ndarray, curvature_scale: float, *, parties: int = 2,
) -> Optimizer:
    """The configured optimiser for one party.

    ``design`` is the party's training design matrix (B's includes the
    intercept column); ``curvature_scale`` is the model's c, so the party's
    Hessian block is c·XᵀX/n. Only ``newton`` uses it.

    ``parties`` is how many parties train (k feature parties + B). Each takes a
    Newton step on its own block of the Hessian only (block Jacobi), and the
    steps add up: with correlated blocks, m simultaneous full steps can overshoot
    by up to m/2 times what two do, and training diverges. Above two parties each
    block's curvature is therefore scaled by m/2, which leaves two parties as before.
    """
    if config.optimizer == "newton":
        curvature = curvature_scale * (design.T @ design) / max(1, design.shape[0])
        if parties > 2:
            curvature = curvature * (parties / 2)
        return LocalNewton(config, penalised, curvature)
    if config.optimizer == "adam":
        return Adam(config, penalised)
    return SGD(config, penalised)
