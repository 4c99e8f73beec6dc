"""Noise on the partial scores a feature party releases, and what it buys: the math, without any I/O.

A feature party (A) releases ``u_A = w · standardise(x)`` for a row ``x`` of its own
features to a label party (B). With ``[scoring] score_noise`` = z it releases instead

    u_A = w · standardise(clip(x) + η),   η_j ~ N(0, (z · width_j)²)

where ``clip`` puts every feature j into a box [lo_j, hi_j] and ``width_j = hi_j − lo_j``.
The box of a feature is its range over the aligned rows of the first job that
released it to that label party, and stays fixed for that (label party, dataset).
The noise is on the *features*, so every score of every model is computed from
one noisy copy of the row; on one model's
score it is a Gaussian of standard deviation ``z · ‖θ ⊙ width‖₂`` (θ the model's
weights in raw units, when the model clips no rows).

**Deterministic.** ``η`` is a function of (A's secret key, B, the dataset, z, the
ID, the feature) alone (:func:`standard_normals`: HMAC-SHA256 mapped to a Gaussian
with Box–Muller). Asking again, in this job or any other, returns the same noisy
value, so averaging repeated answers gains B nothing, and however many models B
trains on the dataset, all it ever gets about a person is one noisy copy of the
row: each later score is a function of it.

**What it guarantees** (zero-concentrated DP, Bun & Steinke 2016): the privacy unit
is one person's feature values at A, anywhere in the box. Two rows in the box
differ by at most ``width_j`` in feature j, so in units of ``width`` the row moves
by at most √n in L2 (n features) and the Gaussian mechanism with σ = z per unit is
ρ-zCDP with ``ρ = n / (2z²)`` (:func:`rho_per_person`). That bounds what B learns
about one person from everything A releases to it on that dataset, over all jobs,
queries and models; it holds as (ε, δ)-DP with ``ε = ρ + 2·√(ρ·ln(1/δ))``
(:func:`epsilon`). If z changes, the new noise is independent of the old and the
ρ of each value used add up.

Assumptions and limits: the box is taken from the data (the min and max of the
aligned rows) and is not itself private, nor are the model's weights and
standardisation (they come from all rows); a value outside the box is clipped,
so a new ID's score is computed from its clipped row; scores released *without*
noise (before the option was on) are not covered. The bound is per person; it
says nothing of what B learns from A's model as a whole.

Why noise on the features and not one fresh draw per model's score: A's direction
budget bounds the *rank* of the models it releases, not their number (a model in
the span of earlier ones is always admitted), so independent noise per model would
compose without bound; here a new model's scores are functions of the same noisy rows.
The price, for a party that only ever releases one model: one fresh draw per score
at the same ρ would need σ = ‖θ ⊙ width‖₁/√(2ρ), against √n·‖θ ⊙ width‖₂/√(2ρ)
here; the two are equal when the weighted widths |θ_j|·width_j are even, and up to
√n apart when one feature dominates.

Utility: ε = 1 at δ = 1e-6 needs z ≈ 5.35·√n (:func:`multiplier_for`), and noise
that large swamps the signal of one row's score (``scripts/score_noise_utility.py``
measures it; docs/security.md quotes the figures).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.errors import ConfigError, DataError

#: Bytes of a feature party's noise key.
SECRET_BYTES = 32
#: Names this construction in every HMAC input, so the key serves no other purpose by accident.
_DOMAIN = b"vfl/score-noise/v1"
_UNIT = 2.0**-53  # one step of a 53-bit uniform


@dataclass(frozen=True)
class FeatureBox:
    """Per feature, the range [lo, hi] its values are clipped to before noise is added (raw units; lo ≤ hi)."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> FeatureBox:
        """The smallest box holding every row of ``X`` (missing values ignored)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or np.isnan(X).all(axis=0).any():
            raise DataError("a feature range needs at least one value of every feature")
        return cls(np.nanmin(X, axis=0), np.nanmax(X, axis=0))

    @property
    def width(self) -> np.ndarray:
        return self.hi - self.lo

    def clip(self, X: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(X, dtype=np.float64), self.lo, self.hi)

    def to_dict(self) -> dict[str, list[float]]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeatureBox | None:
        if data is None:
            return None
        return cls(np.asarray(data["lo"], dtype=np.float64), np.asarray(data["hi"], dtype=np.float64))


# -- accounting ------------------------------------------------------------------------------------------------------


def check_multiplier(multiplier: float) -> float:
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ConfigError(f"a noise multiplier must be a positive number, got {multiplier!r}")
    return float(multiplier)


def rho_per_person(n_features: int, multipliers: Sequence[float]) -> float:
    """ρ (zCDP) of one person's row released once with each of ``multipliers``: Σ n / (2z²).

    One release is the Gaussian mechanism on the row in units of the box's widths
    (L2 sensitivity √n, σ = z); releases with different multipliers use independent
    noise, and zCDP composes by adding ρ.
    """
    if n_features < 0:
        raise ConfigError(f"a feature count cannot be negative, got {n_features}")
    return sum(n_features / (2.0 * check_multiplier(z) ** 2) for z in multipliers)


def epsilon(rho: float, delta: float) -> float:
    """ε of (ε, δ)-DP implied by ρ-zCDP: ρ + 2·√(ρ·ln(1/δ)) (Bun & Steinke 2016, Proposition 1.3)."""
    _check_delta(delta)
    if rho < 0:
        raise ConfigError(f"ρ cannot be negative, got {rho}")
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def multiplier_for(target_epsilon: float, delta: float, n_features: int) -> float:
    """The noise multiplier z whose one release of an n-feature row costs exactly ``target_epsilon`` at ``delta``."""
    _check_delta(delta)
    if not (target_epsilon > 0 and n_features > 0):
        raise ConfigError("a target ε and the feature count must be positive")
    log_term = math.log(1.0 / delta)
    root_rho = math.sqrt(log_term + target_epsilon) - math.sqrt(log_term)  # ρ + 2√(ρL) = ε, solved for √ρ
    return math.sqrt(n_features / (2.0 * root_rho**2))


def score_sigma(direction: np.ndarray, width: np.ndarray, multiplier: float) -> float:
    """Standard deviation of the noise on one model's score: z · ‖θ ⊙ width‖₂ (θ: weights in raw units).

    Exact for a model that clips no rows; with row clipping it is the noise before the clip.
    """
    return check_multiplier(multiplier) * float(np.linalg.norm(np.asarray(direction) * np.asarray(width)))


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"δ must be between 0 and 1, got {delta!r}")


# -- the noise ---------------------------------------------------------------------------------------------------------


def _field(value: str) -> bytes:
    """One length-prefixed field: no two different sequences of fields spell the same bytes."""
    data = value.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def standard_normals(secret: bytes, context: Sequence[str], ids: Sequence[str], count: int) -> np.ndarray:
    """``(len(ids), count)`` standard Gaussian values, each a function of (secret, context, ID, column) alone.

    Per ID, block b of HMAC-SHA256(secret, domain ‖ context ‖ ID ‖ b) gives four 64-bit
    words; their top 53 bits make two pairs of uniforms (u₁ ∈ (0, 1], u₂ ∈ [0, 1)) and
    Box–Muller turns each pair into two Gaussians. Column j of an ID is the same for any
    ``count`` > j and on any machine (to the last bits of ``log``, ``cos``, ``sin``), and
    without the secret it cannot be told from independent Gaussian noise.
    """
    if len(secret) < 16:
        raise ConfigError("the noise key is too short")
    blocks = -(-count // 4)
    prefix = _DOMAIN + _field(str(len(context))) + b"".join(_field(item) for item in context)
    stream = bytearray()
    for item_id in ids:
        head = prefix + _field(item_id)
        for block in range(blocks):
            stream += hmac.digest(secret, head + block.to_bytes(4, "big"), hashlib.sha256)
    words = (np.frombuffer(bytes(stream), dtype=">u8") >> np.uint64(11)).astype(np.float64)
    pairs = words.reshape(len(ids), blocks * 2, 2)
    radius = np.sqrt(-2.0 * np.log((pairs[..., 0] + 1.0) * _UNIT))
    angle = (2.0 * math.pi * _UNIT) * pairs[..., 1]
    normals = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(len(ids), blocks * 4)
    return normals[:, :count]


def key_fingerprint(secret: bytes) -> str:
    """A short public name of a noise key, to notice a key that changed (which would make noise afresh)."""
    return hmac.digest(secret, _DOMAIN + b"/fingerprint", hashlib.sha256).hex()[:16]


@dataclass(frozen=True)
class ScoreNoise:
    """The noise of one model's rows for one label party: what :meth:`perturb` adds is fixed per (ID, feature).

    ``context`` names the label party, the dataset and the multiplier; ``box`` and
    ``columns`` are in the model's feature order, ``columns`` being each feature's
    place in the per-ID noise stream (fixed per label party and dataset, so a
    feature has the same noise in every model).
    """

    secret: bytes
    context: tuple[str, ...]
    multiplier: float
    box: FeatureBox
    columns: np.ndarray

    def perturb(self, ids: Sequence[str], X: np.ndarray) -> np.ndarray:
        """``clip(X) + z · width · η``: each row of raw features clipped to the box, then its fixed noise added."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape != (len(ids), len(self.columns)):
            raise DataError(f"noise for {len(ids)} IDs × {len(self.columns)} features, got a {X.shape} table")
        if not len(ids):
            return X.copy()
        normals = standard_normals(self.secret, self.context, ids, int(self.columns.max()) + 1)
        return self.box.clip(X) + self.multiplier * self.box.width * normals[:, self.columns]


__all__ = [
    "SECRET_BYTES", "FeatureBox", "ScoreNoise", "check_multiplier", "epsilon", "key_fingerprint", "multiplier_for",
    "rho_per_person", "score_sigma", "standard_normals",
]
