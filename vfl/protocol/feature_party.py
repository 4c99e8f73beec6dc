"""A feature party h as an I/O-free state machine: its side of the table in :mod:`vfl.protocol.training_party`."""

from __future__ import annotations

import numpy as np

from vfl.compute.engine import Engine
from vfl.crypto.keys import MIN_KEY_BITS
from vfl.crypto.vector import EncryptedVector
from vfl.errors import (
    DataError,
    ProtocolError,
)
from vfl.ml.config import TrainingConfig
from vfl.ml.kinds import l2_penalty
from vfl.ml.parts import ModelPartA, standardised_rows
from vfl.ml.prep import Preparation
from vfl.ml.scaling import Standardizer
from vfl.ml.score_noise import FeatureBox
from vfl.ml.schedule import Schedule
from vfl.protocol.messages import (
    END_OF_EPOCH,
    Batched,
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedForward,
    EncryptedResidual,
    EpochDecision,
    LossShare,
    Message,
    Party,
    PublicKeyMessage,
    ValidationForward,
)
from vfl.protocol.role import Envelope
from vfl.protocol.roster import Roster
from vfl.protocol.training_party import TrainingParty, from_weights, training_rows


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
        #: Where its rows lie: kept with the model part for noise on released scores (never sent).
        self.feature_box = FeatureBox.fit(features)
        self.feature_names = feature_names or [f"x{i}" for i in range(features.shape[1])]
        #: How this party prepared its columns (set by whoever built the rows), kept with its model part.
        self.preparation: Preparation | None = None
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
        if self.schedule.loss_due(batch) and self.sends_loss_part:
            part = len(rows) * l2_penalty(self.weights, self.penalised, self.config.l2)
            if not self.config.exact_loss:
                part += 0.5 * self.math.c * float(u @ u)
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
        part = self._encrypt_scalar(0.5 * self.math.c * float(u @ u)) if self.validation_loss_part else None
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
        return ModelPartA(self.config.model, self.feature_names, self.scaler, self.weights.copy(), self.row_clip,
                          self.feature_box, self.preparation)
