"""The label party B as an I/O-free state machine: its side of the table in :mod:`vfl.protocol.training_party`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vfl.compute.engine import Engine
from vfl.crypto.keys import MIN_KEY_BITS
from vfl.crypto.packing import Layout, pack
from vfl.crypto.masking import secret_permutation
from vfl.crypto.vector import EncryptedVector
from vfl.errors import (
    DataError,
    DivergedError,
    ProtocolError,
)
from vfl.ml.config import TrainingConfig
from vfl.ml.convergence import DIVERGED, divergence_message
from vfl.ml.kinds import l2_penalty, penalty_mask, with_intercept
from vfl.ml.parts import ModelPartB, standardised_rows
from vfl.ml.prep import Preparation
from vfl.ml.scaling import Standardizer
from vfl.ml.schedule import Schedule
from vfl.protocol.messages import (
    END_OF_EPOCH,
    Batched,
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedForward,
    EncryptedLoss,
    EncryptedResidual,
    EpochDecision,
    LossShare,
    Message,
    Party,
    PublicKeyMessage,
    ShuffledScores,
    ShuffledSigmoids,
    ValidationForward,
)
from vfl.protocol.role import LOOKAHEAD, Envelope
from vfl.protocol.roster import Roster
from vfl.protocol.training_party import TrainingParty, from_weights, training_rows


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



@dataclass(frozen=True)
class _ScoresAtArbiter:
    """What B keeps of a batch whose scores it sent to C (exact loss)."""

    epoch: int
    batch: int
    #: Row ``order[j]`` of the batch is at place j of the request.
    order: np.ndarray
    enc_scores: EncryptedVector  # in row order
    penalties: float  # B's own: n·λ/2‖θ_B‖² (0 on the validation rows)
    loss_parts: list[CipherVector]  # the feature parties' [[penalty]] when the loss is due


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
        #: How this party prepared its columns (set by whoever built the rows), kept with its model part.
        self.preparation: Preparation | None = None
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
        #: Exact loss: the batch whose scores are with the arbiter (see :meth:`_send_scores`), and then its
        #: encrypted loss, ready once the sigmoids are back.
        self._at_arbiter: _ScoresAtArbiter | None = None
        self._exact_loss: CipherVector | None = None
        self.snapshot = self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "train_losses": list(self.train_losses),
                "validation_losses": list(self.validation_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_losses = list(state["train_losses"])
        self.validation_losses = list(state["validation_losses"])
        self._pending_loss = None
        self._at_arbiter, self._exact_loss = None, None
        self._forwards, self._shares = {}, {}
        super().load_state_dict(state)

    # -- ordering: per batch, k forwards, (exact loss) C's sigmoids, our own [[d]], (k > 1, Taylor loss
    # due) k shares, our gradient. Validation: k forwards, then C's sigmoids or (k > 1) k shares. ------

    @property
    def _sigmoid_slots(self) -> int:
        return 1 if self.config.exact_loss else 0

    def _batch_slots(self, batch: int) -> int:
        k = self.roster.k
        return k + self._sigmoid_slots + 1 + (k if self.shares_loss and self.schedule.loss_due(batch) else 0) + 1

    def _epoch_layout(self) -> tuple[list[int], int, int]:
        """Offsets of each batch within an epoch, of the validation step, and the epoch's length."""
        offsets, at = [], 0
        for b in range(self.schedule.batches_per_epoch):
            offsets.append(at)
            at += self._batch_slots(b)
        validation_at = at
        if self.schedule.has_validation:
            at += self.roster.k * (2 if self.shares_loss else 1) + self._sigmoid_slots
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
            if isinstance(message, ShuffledSigmoids) and self._sigmoid_slots and self.schedule.has_validation:
                return base + validation_at + k
            if isinstance(message, EpochDecision):
                return base + epoch_length - 1
            raise ProtocolError(f"party B does not expect {message.KIND} here")
        start = base + offsets[b]
        if isinstance(message, EncryptedForward):
            return start + self._party_index(message)
        if isinstance(message, ShuffledSigmoids) and self._sigmoid_slots:
            return start + k
        if isinstance(message, EncryptedResidual):
            return start + k + self._sigmoid_slots
        if isinstance(message, LossShare) and self.shares_loss and self.schedule.loss_due(b):
            return start + k + self._sigmoid_slots + 1 + self._party_index(message)
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
            if self.config.exact_loss:
                return self._send_scores(forwards)
            return self._residual(forwards)
        if isinstance(message, ShuffledSigmoids):
            self.cursor += 1
            return self._on_sigmoids(message)
        if isinstance(message, EncryptedResidual):
            rows = self.schedule.batch(message.epoch, message.batch)
            enc_residual = message.enc_residual.to_vector(self.public_key, expected_count=len(rows), what="[[d]]")
            self.cursor += 1
            out = [self._masked_gradient(message.epoch, message.batch, enc_residual)]
            if (self._pending_loss is not None or self._exact_loss is not None) and not self.shares_loss:
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
            if sends != (due and self.sends_loss_part):
                expected = "a loss part" if due and self.sends_loss_part else "no loss part"
                raise ProtocolError(
                    f"{forward.address()}: party {forward.party} {'sent' if sends else 'did not send'} a loss part; "
                    f"the schedule expects {expected} in this forward"
                )

    def _copies(self, epoch: int, batch: int, enc_residual: EncryptedVector) -> list[Envelope]:
        """One freshly re-randomised copy of [[d]], the same for every feature party (our own needs none).

        The re-randomisation hides the copy's link to B's own ciphertexts (without it a feature
        party could divide out its [[u_h]]). One copy is enough: it is under the arbiter's key,
        so no feature party reads it, and one party that passes it to C as its "gradient" is held
        by the same length check as with its own copy. A copy per party would cost B k
        re-randomisations per batch instead of one.
        """
        residual = EncryptedResidual(job_id=self.job_id, epoch=epoch, batch=batch,
                                     enc_residual=CipherVector.from_vector(self.encryptor.rerandomize(enc_residual)))
        return [self.send(party, residual) for party in self.roster.features]

    @from_weights
    def _residual(self, forwards: list[EncryptedForward]) -> list[Envelope]:
        """Step 2: [[d]] = c·Σ_h[[u_h]] + q, one re-randomised copy for the feature parties, ours as it is."""
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
        self.encryptor.prefetch(upcoming)
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
            if (forward.enc_loss_part is not None) != self.validation_loss_part:
                raise ProtocolError(f"{forward.address()}: party {forward.party}'s validation forward "
                                    f"{'must' if self.validation_loss_part else 'must not'} carry a loss part")
        if self.config.exact_loss:
            return self._send_scores(forwards)
        enc_u = self._sum_forwards(forwards, len(rows))
        u_b = self.design[rows] @ self.weights
        y = self.labels[rows]
        q = self.math.q(u_b, y)
        self._pending_loss = (enc_u, q, float(np.sum(self.math.p(u_b, y))), forwards[0].enc_loss_part)
        if not self.shares_loss:
            return [self._loss_message(epoch, END_OF_EPOCH, "validation", len(rows))]
        enc_residual = enc_u.scale_down(self.math.residual_shift).add_plain(q, what="validation residual")
        return self._copies(epoch, END_OF_EPOCH, enc_residual)

    # -- step 2 with the exact loss: the arbiter's sigmoids -------------------------------------------

    @from_weights
    def _send_scores(self, forwards: list[EncryptedForward | ValidationForward]) -> list[Envelope]:
        """[[u]] = Σ_h[[u_h]] + u_B for the whole batch, to C in a fresh secret order.

        The order is drawn from the OS's randomness for every request, so C cannot tell which
        row a score belongs to, nor link two requests row by row. [[u]] needs no re-randomising:
        C has never seen the feature parties' ciphertexts it is made from.
        """
        epoch, batch = forwards[0].epoch, forwards[0].batch
        validation = batch == END_OF_EPOCH
        rows = self.schedule.validation_rows if validation else self.schedule.batch(epoch, batch)
        with_loss = validation or self.schedule.loss_due(batch)
        if not validation:
            self._check_loss_parts(forwards, with_loss)
        u_b = self.design[rows] @ self.weights
        enc_scores = self._sum_forwards(forwards, len(rows)).add_plain(u_b, what="u_B")
        order = secret_permutation(len(rows))
        penalties = 0.0 if validation else len(rows) * l2_penalty(self.weights, self.penalised, self.config.l2)
        parts = [] if validation or not with_loss else [f.enc_loss_part for f in forwards]
        self._at_arbiter = _ScoresAtArbiter(epoch, batch, order, enc_scores, penalties, parts)
        layout = Layout.for_key(self.public_key.bits, enc_scores.frac_bits)
        packed = pack(self.public_key, enc_scores.take(order).ciphertexts, layout, self.engine)
        enc_packed = EncryptedVector(self.public_key, tuple(packed), enc_scores.frac_bits)
        request = ShuffledScores(job_id=self.job_id, epoch=epoch, batch=batch, rows=len(rows), with_loss=with_loss,
                                 enc_scores=CipherVector.from_vector(enc_packed))
        return [self.send(self.roster.arbiter, request)]

    def _on_sigmoids(self, message: ShuffledSigmoids) -> list[Envelope]:
        """Back in row order: [[d]] = [[σ(u)]] − y; the loss [[Σ softplus(u)]] − y·[[u]] + penalties when due."""
        pending, self._at_arbiter = self._at_arbiter, None
        if pending is None or (pending.epoch, pending.batch) != (message.epoch, message.batch):
            raise ProtocolError(f"{message.address()}: party B sent no scores for this batch")
        validation = message.batch == END_OF_EPOCH
        rows = self.schedule.validation_rows if validation else self.schedule.batch(message.epoch, message.batch)
        y = self.labels[rows]
        if (message.enc_softplus_sum is not None) != (validation or self.schedule.loss_due(message.batch)):
            raise ProtocolError(f"{message.address()}: the arbiter's softplus does not match the loss schedule")
        if message.enc_softplus_sum is not None:
            enc_softplus = message.enc_softplus_sum.to_vector(self.public_key, expected_count=1, what="Σ softplus")
            enc_loss = enc_softplus.add(pending.enc_scores.dot(-y, 0, self.engine, what="labels"))
            for part in pending.loss_parts:
                enc_loss = enc_loss.add(part.to_vector(self.public_key, expected_count=1, what="a penalty"))
            self._exact_loss = CipherVector.from_vector(enc_loss.add_plain(np.array([pending.penalties]), what="loss"))
        if validation:
            return [self._loss_message(message.epoch, END_OF_EPOCH, "validation", len(rows))]
        enc_shuffled = message.enc_sigmoid.to_vector(self.public_key, expected_count=len(rows), what="[[σ(u)]]")
        enc_residual = enc_shuffled.take(np.argsort(pending.order)).add_plain(-y, what="residual")
        own = EncryptedResidual(job_id=self.job_id, epoch=message.epoch, batch=message.batch,
                                enc_residual=CipherVector.from_vector(enc_residual))
        return self._copies(message.epoch, message.batch, enc_residual) + [self.send(self.party, own)]

    # -- step 3: the loss ------------------------------------------------------------------------

    @from_weights
    def _encrypted_loss(self) -> CipherVector:
        """[[Σp + q·U + (c/2)·U·U + penalties]] from the parties' ciphertexts and B's plaintexts.

        k = 1: A's part is (c/2)Σu_A² + its penalty. k > 1: the shares add up to
        ½(c·U·U + q·U) + the penalties, so ½·[[q·U]] more gives the same sum.
        """
        if self._exact_loss is not None:
            enc_exact, self._exact_loss = self._exact_loss, None
            return enc_exact
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
            self.row_clip, preparation=self.preparation,
        )


#: The two-party names, kept for code that knows the job has one feature party.
