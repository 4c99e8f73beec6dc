"""The feature parties and the label party B as I/O-free state machines.

A job has k ≥ 1 feature parties h (ids in the job's :class:`Roster`), the
label party B and the arbiter C. Per mini-batch (``c`` and ``q`` as in
:mod:`vfl.models`, U = Σ_h u_h):

    h → B   EncryptedForward      [[u_h]]   (k = 1: + [[(c/2)Σu_A² + n·λ/2‖θ_A‖²]] when the loss is due)
    B → h   EncryptedResidual     [[d]] = c·Σ_h[[u_h]] + q, a freshly re-randomised copy per party
    h → C   MaskedGradient        [[X_hᵀd + R_h]]
    h → B   LossShare             [[½·u_hᵀd + n·λ/2‖θ_h‖²]]   (k > 1, when the loss is due)
    B → C   MaskedGradient        [[X_Bᵀd + R_B]]   (X_B with the intercept column)
    B → C   EncryptedLoss         [[Σp + q·U + (c/2)U·U + n·λ/2‖θ‖²]] when due
    C → h,B DecryptedMaskedGradient  g + R mod n; each party unmasks and steps
End of epoch: each h → B ValidationForward when there is a validation split
(k > 1: B → h [[d]] on the validation rows, h → B LossShare), then C → h,B
EpochDecision.

The loss with k > 1. B cannot form the cross terms u_h·u_h′ under additive
encryption, so each party returns one ciphertext [[½·u_hᵀd]]: since
Σ_h u_hᵀd = c·U·U + q·U, B adds ½·[[q·U]] (from [[U]] and its own q) and gets
(c/2)·U·U + q·U, the loss exactly as for k = 1. With one feature party the
shortcut of the two-party protocol stays: A sends (c/2)Σu_A² itself.

B sends the residual to itself as well: computing its own gradient is then the
same step as a feature party's, and a service can answer the others before it
starts.

Why B re-randomises [[d]]: party h sent [[u_h]] and knows its randomness r.
Without fresh randomness [[d]] = [[u_h]]^c · (1 + q·n) (k = 1) would let it
compute (1 + q·n) = [[d]] / [[u_h]]^c and read q, i.e. u_B − y: the labels.
Each party gets its own fresh copy, so no two parties hold the same ciphertext.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from vfl import privacy
from vfl.config import TrainingConfig
from vfl.crypto.keys import MIN_KEY_BITS, PublicKey
from vfl.crypto.masking import mask, seeded_masks, unmask
from vfl.crypto.vector import EncryptedVector, Encryptor
from vfl.engine import Engine, as_engine
from vfl.errors import (
    ConfigError,
    DataError,
    DivergedError,
    EncodingError,
    KeyMismatch,
    OutOfOrderError,
    ProtocolError,
)
from vfl.model_parts import ModelPartA, ModelPartB, standardised_rows
from vfl.models import l2_penalty, model_math, penalty_mask, with_intercept
from vfl.optim import make_optimizer
from vfl.preprocess import Standardizer
from vfl.protocol.convergence import DIVERGED, divergence_message, lower_rate_hint
from vfl.protocol.messages import (
    END_OF_EPOCH,
    Batched,
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedForward,
    EncryptedLoss,
    EncryptedResidual,
    EpochDecision,
    IntVector,
    KeyRequest,
    LossShare,
    MaskedGradient,
    Message,
    Party,
    PublicKeyMessage,
    ValidationForward,
)
from vfl.protocol.role import LOOKAHEAD, Envelope, Role
from vfl.protocol.roster import Roster
from vfl.protocol.schedule import Schedule


def training_rows(X: np.ndarray, schedule: Schedule) -> np.ndarray:
    """The training rows of ``X``: ``X`` itself when every row trains and it is C-ordered (what the copy
    would be, so sums over it are bit for bit the same), else a copy of those rows. At 1M × 50 the copy
    is 400 MB more at the role's peak, for nothing when there is no validation split."""
    if schedule.n_train == X.shape[0] and X.flags.c_contiguous:
        return X
    return X[schedule.train_rows]


def label_design(scaler: Standardizer, features: np.ndarray, row_clip: float | None, fit_intercept: bool,
                 ) -> np.ndarray:
    """B's design: ``with_intercept(standardised_rows(...))`` built in one matrix, not two, when nothing is clipped.

    The values are the same to the bit: the same subtraction and division, element by element.
    """
    if row_clip is not None or not fit_intercept:
        return with_intercept(standardised_rows(scaler, features, row_clip), fit_intercept)
    n, k = features.shape
    design = np.empty((n, k + 1), dtype=np.float64)
    np.subtract(features, scaler.mean, out=design[:, :k])
    design[:, :k] /= scaler.scale
    design[:, k] = 1.0
    return design


#: Weights this large on standardised features no longer describe anything: training has blown up.
#: Below it, an overflow in a step computed from the weights is not blamed on them.
SANE_WEIGHT = 1e3

_Step = TypeVar("_Step", bound=Callable[..., Any])


def from_weights(step: _Step) -> _Step:
    """Mark a step that encrypts values computed from this party's weights (u, q, the loss).

    The features are standardised, so when such a value cannot be encoded (it left the
    fixed-point range, or is not a number) it is the weights that blew up: the step then
    fails with :class:`~vfl.errors.DivergedError`, naming the weights and the learning rate,
    instead of an encoding error that reads as if the data were at fault.
    """

    @functools.wraps(step)
    def guarded(self: TrainingParty, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(self, *args, **kwargs)
        except EncodingError as exc:
            largest = float(np.max(np.abs(self.weights))) if self.weights.size else 0.0
            if np.isfinite(largest) and largest < SANE_WEIGHT:
                raise  # not a blow-up: the encoding error's own message stands
            raise DivergedError(
                f"the weights of party {self.party} grew to {largest:.3g} in magnitude, too large to encrypt what "
                f"is computed from them ({exc}): training diverged; {lower_rate_hint(self.config)}"
            ) from exc

    return guarded  # type: ignore[return-value]


class TrainingParty(Role):
    """What the feature parties and B share: the key, masking, local updates and the epoch decision."""

    def __init__(
        self,
        job_id: str,
        config: TrainingConfig,
        design: np.ndarray,
        penalised: np.ndarray,
        *,
        roster: Roster,
        party: Party,
        engine: Engine | int | None = None,
        min_key_bits: int = MIN_KEY_BITS,
        job_lengths: dict[str, int] | None = None,
    ) -> None:
        super().__init__(job_id, roster, party)
        self.config = config
        self.math = model_math(config.model)
        self.schedule = Schedule(design.shape[0], config)
        self.design = design
        self.penalised = penalised
        self.weights = np.zeros(design.shape[1])
        self.best_weights = self.weights.copy()
        self.optimizer = make_optimizer(config, penalised, training_rows(design, self.schedule), self.math.c,
                                        parties=len(roster.trainers))
        self.engine = as_engine(engine)
        self.min_key_bits = min_key_bits
        self.public_key: PublicKey | None = None
        self.encryptor: Encryptor | None = None
        self._masks: list = []
        self._mask_frac_bits = 0
        self.finished = False
        self.stop_reason: str | None = None
        self.epochs_run = 0
        #: With differential privacy: the plan (noise level, ε) and this party's secret noise seed.
        self.privacy = None if config.privacy is None else privacy.plan(
            config, self.schedule.n_train, self.schedule.largest_batch, self.schedule.batches_per_epoch
        )
        self.noise_seed = secrets.randbits(63)
        #: Secret seed of this party's gradient masks (checkpointed: a recomputed step repeats its mask).
        self.mask_seed = secrets.token_bytes(32)
        #: Every party's gradient length as the job fixed it; ours must match our design.
        self.job_lengths = None if job_lengths is None else dict(job_lengths)
        if self.job_lengths is not None and self.job_lengths.get(self.party) != design.shape[1]:
            raise ConfigError(
                f"the job fixes party {self.party}'s gradient at {self.job_lengths.get(self.party)} values, "
                f"but this party's data gives {design.shape[1]}: the dataset changed since registration"
            )
        #: This party's weights after every epoch (its parameter trajectory).
        self.weight_history: list[list[float]] = []
        #: The state at the last epoch boundary (or before training): what a checkpoint saves.
        self.snapshot: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Training ended with a model. A diverged job is finished but not done: it fails, never succeeds."""
        return self.finished and self.stop_reason != DIVERGED

    @property
    def parameter_names(self) -> list[str]:
        return self.feature_names

    def trajectory(self) -> dict[str, Any]:
        """This party's parameter names and its weights after every epoch (for the figures)."""
        return {"names": self.parameter_names, "history": list(self.weight_history)}

    @property
    def keeps_best(self) -> bool:
        return self.config.keeps_best_epoch(self.schedule.has_validation)

    def start(self) -> list[Envelope]:
        """Ask the arbiter for its public key, registering our gradient length."""
        request = KeyRequest(
            job_id=self.job_id, party=self.party, n_params=len(self.weights), model=self.config.model,
            key_bits=self.config.key_bits, config_digest=self.config.digest(), job_lengths=self.job_lengths,
        )
        return [self.send(self.roster.arbiter, request)]

    # -- steps shared by A and B -----------------------------------------------------

    def _receive_key(self, message: PublicKeyMessage) -> None:
        key = message.to_key()
        key.validate(min_bits=self.min_key_bits)
        if key.bits != self.config.key_bits:
            raise KeyMismatch(
                f"the arbiter's key has {key.bits} bits but the job asks for {self.config.key_bits}; "
                "all three parties must run the job with the same key_bits"
            )
        self.public_key = key
        self.encryptor = Encryptor(key, self.config.obfuscation, self.engine)
        self.cursor += 1

    def _masked_gradient(self, epoch: int, batch: int, enc_residual: EncryptedVector) -> Envelope:
        """[[Xᵀd]] for this batch, masked; the mask is kept to remove it later."""
        rows = self.schedule.batch(epoch, batch)
        enc_gradient = enc_residual.matvec_t(self.design[rows], self.config.feature_frac_bits, self.engine)
        masks = seeded_masks(self.mask_seed, f"{self.job_id}/{self.party}/{epoch}/{batch}", self.public_key.n,
                             len(enc_gradient))
        masked_enc_gradient, self._masks = mask(enc_gradient, self.encryptor, masks)
        self._mask_frac_bits = enc_gradient.frac_bits
        payload = IntVector.pack(masked_enc_gradient.ciphertexts, self.public_key.ciphertext_bytes)
        return self.send(
            self.roster.arbiter,
            MaskedGradient(job_id=self.job_id, epoch=epoch, batch=batch, party=self.party, masked_enc_gradient=payload),
        )

    def _apply_gradient(self, message: DecryptedMaskedGradient) -> None:
        """Unmask the arbiter's answer and take one local optimiser step."""
        if message.party != self.party:
            raise ProtocolError(f"party {self.party} received party {message.party}'s gradient")
        rows = len(self.schedule.batch(message.epoch, message.batch))
        width = (int(self.public_key.n).bit_length() + 7) // 8
        residues = message.masked_gradient.unpack(width)
        if len(residues) != len(self._masks):
            raise ProtocolError(f"arbiter returned {len(residues)} gradient values, expected {len(self._masks)}")
        gradient_sum = unmask(residues, self._masks, self.public_key.n, self._mask_frac_bits)
        self._masks = []
        if self.privacy is not None:
            gradient_sum = self.privacy.add_noise(gradient_sum, self.noise_seed, message.epoch, message.batch)
        share = rows / self.schedule.n_train
        self.weights = self.optimizer.step(self.weights, gradient_sum / rows, message.epoch, share)
        if self.privacy is not None:
            self.weights = self.privacy.bound(self.weights)
        if not np.all(np.isfinite(self.weights)):
            raise DivergedError(
                f"the weights of party {self.party} are no longer finite numbers after the step of "
                f"{message.address()}: training diverged; {lower_rate_hint(self.config)}"
            )
        self.cursor += 1

    def _apply_decision(self, message: EpochDecision) -> None:
        self.weight_history.append(self.weights.tolist())
        if message.improved:
            self.best_weights = self.weights.copy()
        self.epochs_run = message.epoch + 1
        self.cursor += 1
        if message.stop:
            self.finished = True
            self.stop_reason = message.reason
            if self.keeps_best:
                self.weights = self.best_weights.copy()
        # Taken here, before any held message of the next epoch is released.
        self.snapshot = self.state_dict()

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from an epoch boundary (or from before training)."""
        return {
            "epoch": self.epochs_run - 1,
            "cursor": self.cursor,
            "weights": self.weights.tolist(),
            "best_weights": self.best_weights.tolist(),
            "optimizer": self.optimizer.state_dict(),
            "finished": self.finished,
            "stop_reason": self.stop_reason,
            "public_key": None if self.public_key is None else self.public_key.to_dict(),
            "noise_seed": self.noise_seed,
            "mask_seed": self.mask_seed.hex(),
            "weight_history": list(self.weight_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a snapshot; anything in flight is forgotten."""
        self.cursor = int(state["cursor"])
        self.epochs_run = int(state["epoch"]) + 1
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.best_weights = np.asarray(state["best_weights"], dtype=np.float64)
        self.optimizer.load_state_dict(state["optimizer"])
        self.finished = bool(state["finished"])
        self.stop_reason = state["stop_reason"]
        self.noise_seed = int(state["noise_seed"])
        self.mask_seed = bytes.fromhex(state["mask_seed"])
        self.weight_history = list(state["weight_history"])
        self.public_key = None if state["public_key"] is None else PublicKey.from_dict(state["public_key"])
        self.encryptor = None if self.public_key is None else Encryptor(self.public_key, self.config.obfuscation, self.engine)
        self._held.clear()
        self._masks = []
        self.snapshot = self.state_dict()

    def resume(self) -> list[Envelope]:
        """What to send after restoring a snapshot, to pick the protocol up again."""
        if self.cursor == 0:
            return self.start()  # before the key exchange: ask for the key again
        return []

    def validate(self, message: Message) -> None:
        """Every ciphertext must be a unit below n², every vector as long as the schedule says."""
        if self.public_key is None or not isinstance(message, Batched):
            return  # checked again when processed, once the key is known
        for name, vector, expected in self._payload(message):
            vector.to_vector(self.public_key, expected_count=expected, what=f"{message.KIND}.{name}")

    def _payload(self, message: Batched) -> list[tuple[str, CipherVector, int | None]]:
        nb = self.schedule.batches_per_epoch
        rows = self.schedule.batch_length(message.batch) if 0 <= message.batch < nb else None
        if message.batch == END_OF_EPOCH:
            rows = len(self.schedule.validation_rows)
        loss_part = [("enc_loss_part", message.enc_loss_part, 1)] if getattr(message, "enc_loss_part", None) else []
        if isinstance(message, (EncryptedForward, ValidationForward)):
            return [("enc_u", message.enc_u, rows)] + loss_part
        if isinstance(message, EncryptedResidual):
            return [("enc_residual", message.enc_residual, rows)]
        if isinstance(message, LossShare):
            return [("enc_share", message.enc_share, 1)]
        return []

    def _batch_index(self, message: Batched) -> None:
        """Refuse an epoch or batch number the schedule does not have."""
        if message.epoch >= self.config.epochs:
            raise OutOfOrderError(f"{message.address()}: the job has only {self.config.epochs} epochs")
        if message.batch != END_OF_EPOCH and not 0 <= message.batch < self.schedule.batches_per_epoch:
            raise OutOfOrderError(
                f"{message.address()}: an epoch has only {self.schedule.batches_per_epoch} batches"
            )

    def _encrypt_scalar(self, value: float) -> CipherVector:
        return CipherVector.from_vector(self.encryptor.encrypt(np.array([value]), self.config.value_frac_bits))

    @property
    def shares_loss(self) -> bool:
        """With several feature parties the loss's cross terms come back as :class:`LossShare`s."""
        return self.roster.k > 1


class FeatureParty(TrainingParty):
    """A feature party: features only. Drives its own batches; never sees a label or a plaintext residual."""

    KIND = "feature"

    def __init__(
        self,
        job_id: str,
        config: TrainingConfig,
        features: np.ndarray,
        *,
        roster: Roster | None = None,
        party: Party | None = None,
        feature_names: list[str] | None = None,
        engine: Engine | int | None = None,
        min_key_bits: int = MIN_KEY_BITS,
        job_lengths: dict[str, int] | None = None,
    ) -> None:
        roster = roster or Roster()
        party = party or roster.features[0]
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] == 0:
            raise DataError(f"feature party {party} has no feature columns; it needs at least one to take part")
        schedule = Schedule(features.shape[0], config)
        self.scaler = Standardizer.fit(training_rows(features, schedule))
        self.feature_names = feature_names or [f"x{i}" for i in range(features.shape[1])]
        self.row_clip = None if config.privacy is None else config.privacy.row_clip
        design = standardised_rows(self.scaler, features, self.row_clip)
        super().__init__(
            job_id, config, design, np.ones(features.shape[1]), roster=roster, party=party, engine=engine,
            min_key_bits=min_key_bits, job_lengths=job_lengths,
        )
        #: u_h as sent in the last forward: the loss share needs the same values.
        self._u_sent: np.ndarray | None = None
        self.snapshot = self.state_dict()

    def resume(self) -> list[Envelope]:
        """A feature party drives its batches: after a restore it starts the next epoch."""
        if self.cursor == 0 or self.finished:
            return super().resume()
        return [self._forward(self.epochs_run, 0)]

    def position(self, message: Message) -> int:
        if isinstance(message, PublicKeyMessage):
            return 0
        if not isinstance(message, Batched):
            raise ProtocolError(f"feature party {self.party} does not expect {message.KIND}")
        self._batch_index(message)
        nb = self.schedule.batches_per_epoch
        validation_residual = 1 if self.shares_loss and self.schedule.has_validation else 0
        base = 1 + message.epoch * (2 * nb + validation_residual + 1)
        if isinstance(message, EncryptedResidual):
            if message.batch == END_OF_EPOCH:
                if not validation_residual:
                    raise ProtocolError(f"feature party {self.party} expects no validation [[d]]")
                return base + 2 * nb
            return base + 2 * message.batch
        if isinstance(message, DecryptedMaskedGradient) and message.batch != END_OF_EPOCH:
            return base + 2 * message.batch + 1
        if isinstance(message, EpochDecision):
            return base + 2 * nb + validation_residual
        raise ProtocolError(f"feature party {self.party} does not expect {message.KIND}")

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, PublicKeyMessage):
            self._receive_key(message)
            return [self._forward(0, 0)]
        if isinstance(message, EncryptedResidual):
            return self._on_residual(message)
        if isinstance(message, DecryptedMaskedGradient):
            self._apply_gradient(message)
            if message.batch + 1 < self.schedule.batches_per_epoch:
                return [self._forward(message.epoch, message.batch + 1)]
            return [self._validation_forward(message.epoch)] if self.schedule.has_validation else []
        if isinstance(message, EpochDecision):
            self._apply_decision(message)
            return [] if self.finished else [self._forward(message.epoch + 1, 0)]
        raise ProtocolError(f"feature party {self.party} does not expect {message.KIND}")

    def _on_residual(self, message: EncryptedResidual) -> list[Envelope]:
        """Step 3: the masked gradient to C and, with several feature parties, the loss share to B."""
        validation = message.batch == END_OF_EPOCH
        rows = self.schedule.validation_rows if validation else self.schedule.batch(message.epoch, message.batch)
        enc_residual = message.enc_residual.to_vector(self.public_key, expected_count=len(rows), what="[[d]]")
        self.cursor += 1
        out = [] if validation else [self._masked_gradient(message.epoch, message.batch, enc_residual)]
        if self.shares_loss and (validation or self.schedule.loss_due(message.batch)):
            penalty = 0.0 if validation else len(rows) * l2_penalty(self.weights, self.penalised, self.config.l2)
            out.append(self._loss_share(message.epoch, message.batch, enc_residual, penalty))
        return out

    @from_weights
    def _loss_share(self, epoch: int, batch: int, enc_residual: EncryptedVector, penalty: float) -> Envelope:
        """[[½·u_hᵀd + penalty]]: the fresh encryption of the penalty re-randomises the product."""
        half_product = enc_residual.dot(self._u_sent, self.config.value_frac_bits, self.engine,
                                        what=f"u of party {self.party}").scale_down(1)
        enc_share = half_product.add(self.encryptor.encrypt(np.array([penalty]), self.config.value_frac_bits))
        share = LossShare(job_id=self.job_id, epoch=epoch, batch=batch, party=self.party,
                          enc_share=CipherVector.from_vector(enc_share))
        return self.send(self.roster.label, share)

    @from_weights
    def _forward(self, epoch: int, batch: int) -> Envelope:
        """Step 2: [[u_h]] for the batch, plus (k = 1) the encrypted loss part when the loss is due."""
        rows = self.schedule.batch(epoch, batch)
        u = self.design[rows] @ self.weights
        self._u_sent = u
        enc_u = self.encryptor.encrypt(u, self.config.value_frac_bits, what="u_A")
        enc_loss_part = None
        if self.schedule.loss_due(batch) and not self.shares_loss:
            part = 0.5 * self.math.c * float(u @ u) + len(rows) * l2_penalty(self.weights, self.penalised, self.config.l2)
            enc_loss_part = self._encrypt_scalar(part)
        self._prefetch_after(epoch, batch)
        message = EncryptedForward(
            job_id=self.job_id, epoch=epoch, batch=batch, party=self.party,
            enc_u=CipherVector.from_vector(enc_u), enc_loss_part=enc_loss_part,
        )
        return self.send(self.roster.label, message)

    @from_weights
    def _validation_forward(self, epoch: int) -> Envelope:
        rows = self.schedule.validation_rows
        u = self.design[rows] @ self.weights
        self._u_sent = u
        enc_u = self.encryptor.encrypt(u, self.config.value_frac_bits, what="u_A")
        part = None if self.shares_loss else self._encrypt_scalar(0.5 * self.math.c * float(u @ u))
        message = ValidationForward(
            job_id=self.job_id, epoch=epoch, batch=END_OF_EPOCH, party=self.party,
            enc_u=CipherVector.from_vector(enc_u), enc_loss_part=part,
        )
        return self.send(self.roster.label, message)

    def _prefetch_after(self, epoch: int, batch: int) -> None:
        """Start making the next batch's obfuscators on spare cores while others compute."""
        nb = self.schedule.batches_per_epoch
        upcoming = self.schedule.batch_length((batch + 1) % nb) + (1 if self.schedule.loss_due((batch + 1) % nb) else 0)
        self.encryptor.prefetch(upcoming)

    def model(self) -> ModelPartA:
        return ModelPartA(self.config.model, self.feature_names, self.scaler, self.weights.copy(), self.row_clip)


class LabelParty(TrainingParty):
    """Party B: features and the label; owns the intercept and the loss."""

    KIND = "label"

    def __init__(
        self,
        job_id: str,
        config: TrainingConfig,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        roster: Roster | None = None,
        feature_names: list[str] | None = None,
        engine: Engine | int | None = None,
        min_key_bits: int = MIN_KEY_BITS,
        job_lengths: dict[str, int] | None = None,
    ) -> None:
        roster = roster or Roster()
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64).ravel()
        if features.ndim != 2 or features.shape[1] == 0:
            raise DataError("party B has no feature columns; it needs at least one to take part")
        if labels.shape[0] != features.shape[0]:
            raise DataError(f"party B has {features.shape[0]} feature rows but {labels.shape[0]} labels")
        schedule = Schedule(features.shape[0], config)
        train = schedule.train_rows
        self.scaler = Standardizer.fit(training_rows(features, schedule))
        self.feature_names = feature_names or [f"x{i}" for i in range(features.shape[1])]
        self.label_mean, self.label_scale = 0.0, 1.0
        if config.model == "linear":
            label_scaler = Standardizer.fit(labels[train])
            self.label_mean, self.label_scale = float(label_scaler.mean[0]), float(label_scaler.scale[0])
        self.labels = (labels - self.label_mean) / self.label_scale
        self.row_clip = None if config.privacy is None else config.privacy.row_clip
        if config.privacy is not None and config.model == "linear":
            self.labels = np.clip(self.labels, -config.privacy.label_clip, config.privacy.label_clip)
        design = label_design(self.scaler, features, self.row_clip, config.fit_intercept)
        super().__init__(
            job_id, config, design, penalty_mask(features.shape[1], config.fit_intercept),
            roster=roster, party=roster.label, engine=engine, min_key_bits=min_key_bits, job_lengths=job_lengths,
        )
        # Every feature party's next forward (and share) may arrive while B is still on this step.
        self.lookahead = LOOKAHEAD + 2 * roster.k
        self.train_losses: list[float] = []
        self.validation_losses: list[float] = []
        #: The step's messages gathered so far from the feature parties, by party id.
        self._forwards: dict[Party, EncryptedForward | ValidationForward] = {}
        self._shares: dict[Party, LossShare] = {}
        #: For a batch whose loss is due: [[U]], q, B's plaintext part, and (k = 1) A's loss part.
        self._pending_loss: tuple[EncryptedVector, np.ndarray, float, CipherVector | None] | None = None
        self.snapshot = self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "train_losses": list(self.train_losses),
                "validation_losses": list(self.validation_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_losses = list(state["train_losses"])
        self.validation_losses = list(state["validation_losses"])
        self._pending_loss = None
        self._forwards, self._shares = {}, {}
        super().load_state_dict(state)

    # -- ordering: per batch, k forwards, our own [[d]], (k > 1, loss due) k shares, our gradient ------

    def _batch_slots(self, batch: int) -> int:
        k = self.roster.k
        return k + 1 + (k if self.shares_loss and self.schedule.loss_due(batch) else 0) + 1

    def _epoch_layout(self) -> tuple[list[int], int, int]:
        """Offsets of each batch within an epoch, of the validation step, and the epoch's length."""
        offsets, at = [], 0
        for b in range(self.schedule.batches_per_epoch):
            offsets.append(at)
            at += self._batch_slots(b)
        validation_at = at
        if self.schedule.has_validation:
            at += self.roster.k * (2 if self.shares_loss else 1)
        return offsets, validation_at, at + 1

    def _party_index(self, message: Message) -> int:
        try:
            return self.roster.features.index(message.party)
        except ValueError:
            raise ProtocolError(f"{message.address()} names {message.party!r}, not a feature party of the job") from None

    def position(self, message: Message) -> int:
        if isinstance(message, PublicKeyMessage):
            return 0
        if not isinstance(message, Batched):
            raise ProtocolError(f"party B does not expect {message.KIND}")
        self._batch_index(message)
        offsets, validation_at, epoch_length = self._epoch_layout()
        base = 1 + message.epoch * epoch_length
        k, b = self.roster.k, message.batch
        if b == END_OF_EPOCH:
            if isinstance(message, ValidationForward) and self.schedule.has_validation:
                return base + validation_at + self._party_index(message)
            if isinstance(message, LossShare) and self.shares_loss and self.schedule.has_validation:
                return base + validation_at + k + self._party_index(message)
            if isinstance(message, EpochDecision):
                return base + epoch_length - 1
            raise ProtocolError(f"party B does not expect {message.KIND} here")
        start = base + offsets[b]
        if isinstance(message, EncryptedForward):
            return start + self._party_index(message)
        if isinstance(message, EncryptedResidual):
            return start + k
        if isinstance(message, LossShare) and self.shares_loss and self.schedule.loss_due(b):
            return start + k + 1 + self._party_index(message)
        if isinstance(message, DecryptedMaskedGradient):
            return start + self._batch_slots(b) - 1
        raise ProtocolError(f"party B does not expect {message.KIND} here")

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, PublicKeyMessage):
            self._receive_key(message)
            return []
        if isinstance(message, (EncryptedForward, ValidationForward)):
            self._forwards[message.party] = message
            self.cursor += 1
            if len(self._forwards) < self.roster.k:
                return []
            forwards = [self._forwards[h] for h in self.roster.features]
            self._forwards = {}
            if isinstance(message, ValidationForward):
                return self._on_validation_forwards(forwards)
            return self._residual(forwards)
        if isinstance(message, EncryptedResidual):
            rows = self.schedule.batch(message.epoch, message.batch)
            enc_residual = message.enc_residual.to_vector(self.public_key, expected_count=len(rows), what="[[d]]")
            self.cursor += 1
            out = [self._masked_gradient(message.epoch, message.batch, enc_residual)]
            if self._pending_loss is not None and not self.shares_loss:
                out.append(self._loss_message(message.epoch, message.batch, "train", len(rows)))
            return out
        if isinstance(message, LossShare):
            self._shares[message.party] = message
            self.cursor += 1
            if len(self._shares) < self.roster.k:
                return []
            validation = message.batch == END_OF_EPOCH
            rows = len(self.schedule.validation_rows) if validation else self.schedule.batch_length(message.batch)
            return [self._loss_message(message.epoch, message.batch, "validation" if validation else "train", rows)]
        if isinstance(message, DecryptedMaskedGradient):
            self._apply_gradient(message)
            return []
        if isinstance(message, EpochDecision):
            if message.train_loss is not None:
                self.train_losses.append(message.train_loss)
            if message.validation_loss is not None:
                self.validation_losses.append(message.validation_loss)
            self._apply_decision(message)
            if message.stop and message.reason == DIVERGED:
                # B knows the losses, so B fails the job; the feature parties and C wait to be told.
                raise DivergedError(divergence_message(self.train_losses, self.config, self.validation_losses))
            return []
        raise ProtocolError(f"party B does not expect {message.KIND}")

    # -- step 2: the residual ------------------------------------------------------------------

    def _sum_forwards(self, forwards: list[EncryptedForward | ValidationForward], rows: int) -> EncryptedVector:
        """[[U]] = Σ_h [[u_h]]: ciphertext additions only."""
        enc_u = None
        for forward in forwards:
            vector = forward.enc_u.to_vector(self.public_key, expected_count=rows, what=f"[[u]] of {forward.party}")
            enc_u = vector if enc_u is None else enc_u.add(vector)
        return enc_u

    def _check_loss_parts(self, forwards: list[EncryptedForward], due: bool) -> None:
        for forward in forwards:
            sends = forward.enc_loss_part is not None
            if sends != (due and not self.shares_loss):
                expected = "a loss part" if due and not self.shares_loss else "no loss part"
                raise ProtocolError(
                    f"{forward.address()}: party {forward.party} {'sent' if sends else 'did not send'} a loss part; "
                    f"the schedule expects {expected} in this forward"
                )

    def _copies(self, epoch: int, batch: int, enc_residual: EncryptedVector) -> list[Envelope]:
        """One freshly re-randomised copy of [[d]] per feature party (our own needs none)."""
        out = []
        for party in self.roster.features:
            copy = self.encryptor.rerandomize(enc_residual)
            residual = EncryptedResidual(job_id=self.job_id, epoch=epoch, batch=batch,
                                         enc_residual=CipherVector.from_vector(copy))
            out.append(self.send(party, residual))
        return out

    @from_weights
    def _residual(self, forwards: list[EncryptedForward]) -> list[Envelope]:
        """Step 2: [[d]] = c·Σ_h[[u_h]] + q, a fresh copy to every feature party, and one to ourselves."""
        epoch, batch = forwards[0].epoch, forwards[0].batch
        rows = self.schedule.batch(epoch, batch)
        due = self.schedule.loss_due(batch)
        self._check_loss_parts(forwards, due)
        enc_u = self._sum_forwards(forwards, len(rows))
        u_b = self.design[rows] @ self.weights
        q = self.math.q(u_b, self.labels[rows])
        enc_residual = enc_u.scale_down(self.math.residual_shift).add_plain(q, what="residual")
        out = self._copies(epoch, batch, enc_residual)
        # Make the next batch's fresh zeros on spare cores while the others compute.
        upcoming = self.schedule.batch_length((batch + 1) % self.schedule.batches_per_epoch)
        self.encryptor.prefetch(upcoming * self.roster.k)
        if due:
            plain = float(np.sum(self.math.p(u_b, self.labels[rows])))
            plain += len(rows) * l2_penalty(self.weights, self.penalised, self.config.l2)
            self._pending_loss = (enc_u, q, plain, forwards[0].enc_loss_part)
        else:
            self._pending_loss = None
        own = EncryptedResidual(job_id=self.job_id, epoch=epoch, batch=batch,
                                enc_residual=CipherVector.from_vector(enc_residual))
        return out + [self.send(self.party, own)]

    @from_weights
    def _on_validation_forwards(self, forwards: list[ValidationForward]) -> list[Envelope]:
        epoch, rows = forwards[0].epoch, self.schedule.validation_rows
        for forward in forwards:
            if (forward.enc_loss_part is not None) == self.shares_loss:
                raise ProtocolError(f"{forward.address()}: party {forward.party}'s validation forward "
                                    f"{'must not' if self.shares_loss else 'must'} carry a loss part")
        enc_u = self._sum_forwards(forwards, len(rows))
        u_b = self.design[rows] @ self.weights
        y = self.labels[rows]
        q = self.math.q(u_b, y)
        self._pending_loss = (enc_u, q, float(np.sum(self.math.p(u_b, y))), forwards[0].enc_loss_part)
        if not self.shares_loss:
            return [self._loss_message(epoch, END_OF_EPOCH, "validation", len(rows))]
        enc_residual = enc_u.scale_down(self.math.residual_shift).add_plain(q, what="validation residual")
        return self._copies(epoch, END_OF_EPOCH, enc_residual)

    # -- step 3: the loss ------------------------------------------------------------------------

    @from_weights
    def _encrypted_loss(self) -> CipherVector:
        """[[Σp + q·U + (c/2)·U·U + penalties]] from the parties' ciphertexts and B's plaintexts.

        k = 1: A's part is (c/2)Σu_A² + its penalty. k > 1: the shares add up to
        ½(c·U·U + q·U) + the penalties, so ½·[[q·U]] more gives the same sum.
        """
        enc_u, q, plain, enc_part_a = self._pending_loss
        self._pending_loss = None
        # One column only, so it can afford the finer value precision.
        enc_cross = enc_u.dot(q, self.config.value_frac_bits, self.engine, what="q (party B's part of the residual)")
        if self.shares_loss:
            enc_loss = enc_cross.scale_down(1)
            for party in self.roster.features:
                share = self._shares[party].enc_share
                enc_loss = enc_loss.add(share.to_vector(self.public_key, expected_count=1, what=f"{party}'s loss share"))
            self._shares = {}
        else:
            enc_loss = enc_cross.add(enc_part_a.to_vector(self.public_key, expected_count=1, what="A's loss part"))
        return CipherVector.from_vector(enc_loss.add_plain(np.array([plain]), what="loss"))

    def _loss_message(self, epoch: int, batch: int, split: str, rows: int) -> Envelope:
        message = EncryptedLoss(job_id=self.job_id, epoch=epoch, batch=batch, split=split, rows=rows,
                                enc_loss=self._encrypted_loss())
        return self.send(self.roster.arbiter, message)

    @property
    def parameter_names(self) -> list[str]:
        return self.feature_names + (["intercept"] if self.config.fit_intercept else [])

    def model(self) -> ModelPartB:
        if self.config.fit_intercept:
            weights, intercept = self.weights[:-1].copy(), float(self.weights[-1])
        else:
            weights, intercept = self.weights.copy(), 0.0
        return ModelPartB(
            self.config.model, self.feature_names, self.scaler, weights, intercept, self.label_mean, self.label_scale,
            self.row_clip,
        )


#: The two-party names, kept for code that knows the job has one feature party.
PartyA = FeatureParty
PartyB = LabelParty
