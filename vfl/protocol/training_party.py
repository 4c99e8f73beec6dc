"""The feature parties and the label party B as I/O-free state machines.

A job has k ≥ 1 feature parties h (ids in the job's :class:`Roster`), the
label party B and the arbiter C. Per mini-batch (``c`` and ``q`` as in
:mod:`vfl.ml.kinds`, U = Σ_h u_h):

    h → B   EncryptedForward      [[u_h]]   (k = 1: + [[(c/2)Σu_A² + n·λ/2‖θ_A‖²]] when the loss is due)
    B → h   EncryptedResidual     [[d]] = c·Σ_h[[u_h]] + q, a freshly re-randomised copy per party
    h → C   MaskedGradient        [[X_hᵀd + R_h]]
    h → B   LossShare             [[½·u_hᵀd + n·λ/2‖θ_h‖²]]   (k > 1, when the loss is due)
    B → C   MaskedGradient        [[X_Bᵀd + R_B]]   (X_B with the intercept column)
    B → C   EncryptedLoss         [[Σp + q·U + (c/2)U·U + n·λ/2‖θ‖²]] when due
    C → h,B DecryptedMaskedGradient  g + R mod n; each party unmasks and steps
With ``loss = "exact"`` (logistic) step 2 goes through the arbiter: B sends C
the batch's whole scores [[u]] = Σ_h[[u_h]] + u_B in an order secret to B
(ShuffledScores, packed many to a ciphertext), C decrypts them, returns
[[σ(u)]] freshly encrypted in the same order (ShuffledSigmoids, plus
[[Σ softplus(u)]] when the loss is due), and B puts them back in row order:
[[d]] = [[σ(u)]] − y. The loss is [[Σ softplus(u)]] − y·[[u]] + the penalties (each feature party sends [[its
penalty]] as its loss part); there are no loss shares. C sees each batch's
scores, but not which row has which score (see :mod:`vfl.protocol.arbiter`).
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
The feature parties share one re-randomised copy per batch: it hides the link
to B's own ciphertexts, and is under C's key, so sharing it shows a feature
party nothing it could read (a copy each would cost B k re-randomisations).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from vfl.compute.engine import Engine, as_engine
from vfl.crypto.keys import MIN_KEY_BITS, PublicKey
from vfl.crypto.masking import mask, seeded_masks, unmask
from vfl.crypto.vector import EncryptedVector, Encryptor
from vfl.errors import (
    ConfigError,
    DivergedError,
    EncodingError,
    KeyMismatch,
    OutOfOrderError,
    ProtocolError,
)
from vfl.ml import privacy
from vfl.ml.config import TrainingConfig
from vfl.ml.convergence import DIVERGED, lower_rate_hint
from vfl.ml.kinds import model_math
from vfl.ml.optim import make_optimizer
from vfl.ml.schedule import Schedule
from vfl.protocol.messages import (
    END_OF_EPOCH,
    Batched,
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedForward,
    EncryptedResidual,
    EpochDecision,
    IntVector,
    KeyRequest,
    LossShare,
    MaskedGradient,
    Message,
    Party,
    PublicKeyMessage,
    ShuffledSigmoids,
    ValidationForward,
)
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import Roster


def training_rows(X: np.ndarray, schedule: Schedule) -> np.ndarray:
    """The training rows of ``X``: ``X`` itself when every row trains and it is C-ordered (what the copy
    would be, so sums over it are bit for bit the same), else a copy of those rows. At 1M × 50 the copy
    is 400 MB more at the role's peak, for nothing when there is no validation split."""
    if schedule.n_train == X.shape[0] and X.flags.c_contiguous:
        return X
    return X[schedule.train_rows]


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
        #: Keeps the weights in a constrained set after every step (a scorecard's signs and monotone bins,
        #: :func:`vfl.ml.scorecard.constraints.project`). Local to this party: no protocol step changes.
        self.projection: Callable[[np.ndarray], np.ndarray] | None = None
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
        if self.projection is not None:
            self.weights = self.projection(self.weights)
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
        if isinstance(message, ShuffledSigmoids):
            total = [("enc_softplus_sum", message.enc_softplus_sum, 1)] if message.enc_softplus_sum is not None else []
            return [("enc_sigmoid", message.enc_sigmoid, rows)] + total
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
        """With several feature parties the Taylor loss's cross terms come back as :class:`LossShare`s.

        The exact loss has no cross terms: B forms it from the arbiter's [[softplus(u)]].
        """
        return self.roster.k > 1 and not self.config.exact_loss

    @property
    def sends_loss_part(self) -> bool:
        """Does a feature party's forward carry its loss part when the loss is due?

        Taylor, k = 1: (c/2)Σu_A² plus its penalty. Exact (any k): its penalty alone. Taylor, k > 1:
        none, the shares carry it.
        """
        return not self.shares_loss

    @property
    def validation_loss_part(self) -> bool:
        """Only the Taylor loss with one feature party needs A's part on the validation rows."""
        return not self.shares_loss and not self.config.exact_loss
