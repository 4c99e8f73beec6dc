"""The arbiter C: holds the private key, decrypts only what the schedule allows.

C generates the Paillier key pair; every feature party and B ask for the
public key themselves (step 1). Each party's gradient length comes from the
job (the parties' feature counts, agreed at registration, keyed by party id),
never from the party: a
``KeyRequest`` that states another length is refused, and so is a job whose
lengths could hold a batch- or validation-sized vector.

What C decrypts, and nothing else:

* per batch, one masked gradient from each party, of the job's length for
  that party, in schedule order;
* per batch whose loss is due, one encrypted loss from B (length one);
* per epoch with a validation split, one validation loss from B;
* with ``loss = "exact"`` only: per batch, and for the validation rows, B's
  shuffled scores [[u]], exactly the batch's count, packed many to a
  ciphertext (:mod:`vfl.crypto.packing`), in schedule order. C answers with
  [[σ(u)]] per score (and [[Σ softplus(u)]] when the loss is due) freshly
  encrypted, never with plaintext.

What the scores show C: the multiset of the joint model's scores on each
batch, never which row has which (B shuffles every request with fresh OS
randomness, and C never learns the IDs). The ledger digest of a score slot is
taken over the sorted values, so a resumed batch, shuffled anew, matches.

Anything else (a second gradient for a batch, a wrong length, an epoch not
yet opened or after the end, a loss for a batch where none is due) raises
:class:`~vfl.errors.ScheduleViolation` or :class:`~vfl.errors.ReplayError` and
is written to :attr:`Arbiter.audit`. C learns only uniformly masked values and
the loss; it returns each party only its own masked gradient, and the loss
only to B.

Each slot (a party's gradient for one batch, a loss) is decrypted once. C
keeps a digest of every value it released in :attr:`Arbiter.ledger`, which
survives checkpoints and resumes: after a resume, a slot is decrypted again
only if it yields exactly the value released before (honest parties
recompute bit-identical masked values, their masks being seeded), so a
resume never renews the decryption budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from vfl.ml.config import TrainingConfig
from vfl.crypto.codec import byte_width, check_units
from vfl.crypto.encoding import decode
from vfl.crypto.keys import MIN_KEY_BITS, PrivateKey, PublicKey, generate_keypair
from vfl.crypto.packing import Layout, unpack
from vfl.crypto.vector import Encryptor, decrypt_residues
from vfl.compute.engine import Engine, as_engine
from vfl.errors import KeyMismatch, PeerNotAllowed, ProtocolError, ReplayError, ScheduleViolation, VFLError
from vfl.ml.convergence import DIVERGED, ConvergenceMonitor
from vfl.ml.kinds import sigmoid, softplus
from vfl.protocol.messages import (
    END_OF_EPOCH,
    CipherVector,
    DecryptedMaskedGradient,
    EncryptedLoss,
    EpochDecision,
    IntVector,
    KeyRequest,
    MaskedGradient,
    Message,
    Party,
    PublicKeyMessage,
    ShuffledScores,
    ShuffledSigmoids,
)
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import Roster
from vfl.ml.schedule import Schedule, check_gradient_lengths


class Arbiter(Role):
    KIND = "arbiter"

    def __init__(
        self,
        job_id: str,
        config: TrainingConfig,
        n_rows: int,
        *,
        gradient_lengths: Mapping[str, int],
        keypair: tuple[PublicKey, PrivateKey] | None = None,
        min_key_bits: int = MIN_KEY_BITS,
        roster: Roster | None = None,
        engine: Engine | int | None = None,
    ) -> None:
        roster = roster or Roster()
        super().__init__(job_id, roster, roster.arbiter)
        self.config = config
        self.engine = as_engine(engine)  # decryptions of long vectors run on it
        self.schedule = Schedule(n_rows, config)
        if set(gradient_lengths) != set(roster.trainers):
            raise KeyMismatch(
                f"the job must fix the gradient length of parties {sorted(roster.trainers)}, "
                f"got {sorted(gradient_lengths)}"
            )
        #: Each party's gradient length, fixed by the job (see the module docstring).
        self.gradient_lengths: dict[str, int] = {p: int(n) for p, n in gradient_lengths.items()}
        check_gradient_lengths(self.gradient_lengths, self.schedule)
        public, private = keypair or generate_keypair(config.key_bits, min_bits=min_key_bits)
        if public.bits != config.key_bits:
            raise ScheduleViolation(f"arbiter key has {public.bits} bits, the job asks for {config.key_bits}")
        self.public_key, self._private_key = public, private
        self.registered: dict[Party, int] = {}
        self.gradient_cursor: dict[Party, int] = {p: 0 for p in roster.trainers}
        self.epoch = 0  # the open epoch
        self.loss_slots = self._loss_slots()
        self.loss_cursor = 0  # index into loss_slots within the open epoch
        #: Exact loss: the batches whose scores C turns into sigmoids, in order, and the next one due.
        self.score_slots = self._score_slots()
        self.score_cursor = 0
        self._encryptor: Encryptor | None = None
        self._loss_sum = 0.0
        self._loss_rows = 0
        self._validation_loss: float | None = None
        self.monitor = ConvergenceMonitor(config, self.schedule.has_validation)
        self.finished = False
        #: Training stopped because it diverged: the job fails (party B raises), it never succeeds here.
        self.diverged = False
        self.final_epoch: int | None = None
        self.audit: list[str] = []
        self.decryptions = 0
        #: slot → SHA-256 of the plaintext released for it, for every decryption ever made.
        self.ledger: dict[str, str] = {}
        #: Ledger entries not yet persisted by the service (it drains this list after each message).
        self.new_ledger_entries: list[tuple[str, str]] = []
        #: The state at the last epoch boundary (or before training): what a checkpoint saves.
        self.snapshot: dict[str, Any] = self.state_dict()

    @property
    def done(self) -> bool:
        """Training ended with a model, and every party's last gradient is decrypted.

        A diverged job is finished but not done: it waits to be failed. Without a validation
        split B's last loss can reach C before a feature party's last masked gradient (they travel
        on different connections); C's work ends only once that gradient is answered too.
        """
        if not self.finished or self.diverged:
            return False
        end = (self.final_epoch + 1) * self.schedule.batches_per_epoch
        return all(cursor >= end for cursor in self.gradient_cursor.values())

    def _loss_slots(self) -> list[tuple[int, str]]:
        slots = [(b, "train") for b in range(self.schedule.batches_per_epoch) if self.schedule.loss_due(b)]
        if self.schedule.has_validation:
            slots.append((END_OF_EPOCH, "validation"))
        return slots

    def _score_slots(self) -> list[int]:
        if not self.config.exact_loss:
            return []
        return list(range(self.schedule.batches_per_epoch)) + ([END_OF_EPOCH] if self.schedule.has_validation else [])

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The arbiter at an epoch boundary. Holds the private key: store it as a secret."""
        closed = self.final_epoch if self.finished else self.epoch - 1
        return {
            "epoch": closed,
            "private_key": self._private_key.to_dict(),
            "registered": dict(self.registered),
            "monitor": self.monitor.state_dict(),
            "finished": self.finished,
            "diverged": self.diverged,
            "decryptions": self.decryptions,
            "ledger": dict(self.ledger),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from an epoch boundary: both parties restart the next epoch at batch 0."""
        key = PrivateKey.from_dict(state["private_key"])
        if key.public_key != self.public_key:
            self.public_key, self._private_key = key.public_key, key
        closed = int(state["epoch"])
        self.registered = dict(state["registered"])
        self.monitor.load_state_dict(state["monitor"])
        self.finished = bool(state["finished"])
        self.diverged = bool(state.get("diverged", False))
        self.final_epoch = closed if self.finished else None
        self.epoch = closed if self.finished else closed + 1
        opened = self.epoch * self.schedule.batches_per_epoch
        self.gradient_cursor = {p: opened for p in self.roster.trainers}
        self.loss_cursor, self._loss_sum, self._loss_rows, self._validation_loss = 0, 0.0, 0, None
        self.score_cursor, self._encryptor = 0, None
        self.decryptions = int(state["decryptions"])
        self.remember(state.get("ledger", {}))
        self.snapshot = self.state_dict()

    def remember(self, ledger: Mapping[str, str]) -> None:
        """Add decryptions released earlier (from a checkpoint or the service's ledger file)."""
        for slot, digest in ledger.items():
            known = self.ledger.setdefault(slot, digest)
            if known != digest:
                raise ReplayError(f"two different values were released for {slot}; the ledger is inconsistent")

    def _release(self, slot: str, plaintext: bytes, what: str) -> None:
        """Record what this decryption releases; refuse a slot already released with another value."""
        digest = hashlib.sha256(plaintext).hexdigest()
        known = self.ledger.get(slot)
        if known is not None and known != digest:
            raise ScheduleViolation(
                f"{what} was already decrypted with another value; a resumed step must ask for exactly "
                "the value decrypted before (a resume never renews the decryption budget)"
            )
        if known is None:
            self.ledger[slot] = digest
            self.new_ledger_entries.append((slot, digest))

    def resume(self) -> list[Envelope]:
        return []  # the arbiter only ever answers

    def handle(self, message: Message, sender: Party | None = None) -> list[Envelope]:
        try:
            return super().handle(message, sender)
        except VFLError as exc:
            self.audit.append(f"refused {message.address()} from {sender or '?'}: {exc}")
            raise

    # The arbiter keeps one cursor per stream instead of the base class's single
    # sequence, so it does its own ordering: it never holds a message back.
    def position(self, message: Message) -> int:
        return self.cursor

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, KeyRequest):
            return self._register(message)
        if isinstance(message, MaskedGradient):
            return self._decrypt_gradient(message)
        if isinstance(message, EncryptedLoss):
            return self._decrypt_loss(message)
        if isinstance(message, ShuffledScores):
            return self._sigmoids(message)
        raise ProtocolError(f"the arbiter does not expect {message.KIND}")

    def _register(self, message: KeyRequest) -> list[Envelope]:
        config = self.config
        if message.model != config.model or message.key_bits != config.key_bits:
            raise KeyMismatch(
                f"party {message.party} trains a {message.model} model with {message.key_bits}-bit keys; "
                f"the arbiter runs this job as {config.model} with {config.key_bits}-bit keys"
            )
        if message.config_digest != config.digest():
            raise KeyMismatch(
                f"party {message.party}'s training config differs from the arbiter's "
                f"({message.config_digest} vs {config.digest()}); all three must run the job's own config"
            )
        length = self.gradient_lengths.get(message.party)
        if length is None:
            raise PeerNotAllowed(f"{message.party!r} does not train in job {self.job_id}")
        if message.n_params != length:
            raise KeyMismatch(
                f"party {message.party} asks to register a gradient of {message.n_params} values; the job fixes "
                f"{length} (its feature count agreed at registration)"
            )
        # Each party vouches for the lengths it was told at registration: its own and party B's (the
        # label party vouches for all). A feature party is never told another feature party's count.
        told = message.job_lengths
        vouched = {message.party, self.roster.label}
        if told is not None and (not vouched <= set(told)
                                 or any(self.gradient_lengths.get(p) != n for p, n in told.items())):
            raise KeyMismatch(
                f"party {message.party} was registered with gradient lengths {told}; the arbiter "
                f"with {self.gradient_lengths}: party B told the two different jobs"
            )
        self.registered[message.party] = message.n_params
        return [self.send(message.party, PublicKeyMessage.from_key(self.job_id, self.public_key))]

    def _decrypt_gradient(self, message: MaskedGradient) -> list[Envelope]:
        party = message.party
        length = self.registered.get(party)
        if length is None:
            raise ScheduleViolation(f"party {party} sent a gradient before registering its length")
        # Length first: a vector of another length (say, [[u_A]] passed off as a gradient)
        # is refused as such, whatever slot it names.
        if message.masked_enc_gradient.count != length:
            raise ScheduleViolation(
                f"party {party} registered a gradient of length {length}, "
                f"but asked to decrypt {message.masked_enc_gradient.count} values"
            )
        nb = self.schedule.batches_per_epoch
        if not 0 <= message.batch < nb:
            raise ScheduleViolation(f"{message.address()}: an epoch has {nb} batches")
        index = message.epoch * nb + message.batch
        expected = self.gradient_cursor[party]
        if index < expected:
            raise ReplayError(f"party {party}'s gradient for {message.address()} was already decrypted")
        if index > expected:
            raise ScheduleViolation(f"{message.address()} from party {party} skips ahead of the schedule")
        open_epochs = self.epoch + 1 if self.final_epoch is None else self.final_epoch + 1
        if message.epoch >= open_epochs:
            raise ScheduleViolation(f"{message.address()}: epoch {message.epoch} is not open")
        pk = self.public_key
        ciphertexts = message.masked_enc_gradient.unpack(pk.ciphertext_bytes)
        check_units(ciphertexts, pk.nsquare, pk.n, "masked gradient")
        residues = decrypt_residues(self._private_key, ciphertexts, self.engine)
        self.decryptions += len(residues)
        packed = IntVector.pack(residues, byte_width(pk.n + 1))
        self._release(f"gradient/{party}/{message.epoch}/{message.batch}", packed.data,
                      f"party {party}'s gradient for {message.address()}")
        self.gradient_cursor[party] += 1
        answer = DecryptedMaskedGradient(
            job_id=self.job_id, epoch=message.epoch, batch=message.batch, party=party, masked_gradient=packed,
        )
        return [self.send(party, answer)]

    def _take_turn(self, message: Message, slots: list, slot: object, cursor: int, *,
                   not_due: str, replayed: str, schedule: str) -> None:
        """Refuse a loss or scores request outside the open epoch, not on ``slots``, served already, or ahead."""
        if self.finished:
            raise ScheduleViolation(f"{message.address()}: training has ended")
        if message.epoch != self.epoch:
            kind = ReplayError if message.epoch < self.epoch else ScheduleViolation
            raise kind(f"{message.address()}: the open epoch is {self.epoch}")
        if slot not in slots:
            raise ScheduleViolation(not_due)
        index = slots.index(slot)
        if index < cursor:
            raise ReplayError(replayed)
        if index > cursor:
            raise ScheduleViolation(f"{message.address()} skips ahead of {schedule}")

    def _rows(self, batch: int) -> int:
        """Rows of a batch, or of the validation split (``END_OF_EPOCH``)."""
        return len(self.schedule.validation_rows) if batch == END_OF_EPOCH else self.schedule.batch_length(batch)

    def _sigmoids(self, message: ShuffledScores) -> list[Envelope]:
        """Exact loss: decrypt a batch's shuffled scores, answer [[σ(u)]] (and [[softplus(u)]]) in their order."""
        if not self.config.exact_loss:
            raise ScheduleViolation(f"{message.address()}: job {self.job_id} trains on the Taylor loss, for which "
                                    "the arbiter decrypts no scores (only a job with training.loss = 'exact' does)")
        self._take_turn(message, self.score_slots, message.batch, self.score_cursor,
                        not_due=f"{message.address()}: no scores are due for this batch",
                        replayed=f"the scores of {message.address()} were already decrypted", schedule="the schedule")
        rows = self._rows(message.batch)
        with_loss = message.batch == END_OF_EPOCH or self.schedule.loss_due(message.batch)
        if message.with_loss != with_loss:
            raise ScheduleViolation(f"{message.address()}: the loss is {'' if with_loss else 'not '}due for this batch")
        if message.rows != rows:
            raise ScheduleViolation(f"{message.address()} carries {message.rows} scores; the batch has {rows} rows")
        frac_bits = self.config.value_frac_bits
        if message.enc_scores.frac_bits != frac_bits:
            raise ScheduleViolation(f"{message.address()}: scores come at 2^-{frac_bits}, not 2^-{message.enc_scores.frac_bits}")
        pk = self.public_key
        layout = Layout.for_key(pk.bits, frac_bits)
        enc_packed = message.enc_scores.to_vector(pk, expected_count=layout.ciphertexts_for(rows), what="packed scores")
        packed = decrypt_residues(self._private_key, enc_packed.ciphertexts, self.engine)
        self.decryptions += len(packed)
        residues = unpack(packed, rows, layout, pk.n)
        # Sorted: the release is the batch's multiset of scores, whatever order B drew this time.
        self._release(f"scores/{message.epoch}/{message.batch}",
                      IntVector.pack(sorted(residues), byte_width(pk.n + 1)).data, f"the scores of {message.address()}")
        u = decode(residues, frac_bits, pk.n, what="scores")
        if self._encryptor is None:
            self._encryptor = Encryptor(pk, self.config.obfuscation, self.engine)
        enc_sigmoid = self._encryptor.encrypt(sigmoid(u), frac_bits, what="sigmoid")
        # B needs the loss's softplus only summed over the batch: one value, not one per row.
        enc_softplus_sum = (self._encryptor.encrypt(np.array([np.sum(softplus(u))]), frac_bits, what="softplus")
                            if with_loss else None)
        self._encryptor.prefetch(rows)  # the next batch's obfuscators, on spare cores while the others compute
        self.score_cursor += 1
        answer = ShuffledSigmoids(
            job_id=self.job_id, epoch=message.epoch, batch=message.batch,
            enc_sigmoid=CipherVector.from_vector(enc_sigmoid),
            enc_softplus_sum=None if enc_softplus_sum is None else CipherVector.from_vector(enc_softplus_sum),
        )
        return [self.send(self.roster.label, answer)]

    def _decrypt_loss(self, message: EncryptedLoss) -> list[Envelope]:
        self._take_turn(message, self.loss_slots, (message.batch, message.split), self.loss_cursor,
                        not_due=f"{message.address()}: no {message.split} loss is due for this batch",
                        replayed=f"the {message.split} loss for {message.address()} was already decrypted",
                        schedule="the loss schedule")
        expected_rows = self._rows(message.batch)
        if message.rows != expected_rows:
            raise ScheduleViolation(f"{message.address()} claims {message.rows} rows; the batch has {expected_rows}")
        enc_loss = message.enc_loss.to_vector(self.public_key, expected_count=1, what="encrypted loss")
        (residue,) = decrypt_residues(self._private_key, enc_loss.ciphertexts)
        self.decryptions += 1
        self._release(f"loss/{message.split}/{message.epoch}/{message.batch}", int(residue).to_bytes(
            byte_width(self.public_key.n + 1), "big"), f"the {message.split} loss for {message.address()}")
        loss_sum = float(decode([residue], enc_loss.frac_bits, self.public_key.n, what="loss")[0])
        self.loss_cursor += 1
        if message.split == "validation":
            self._validation_loss = loss_sum / message.rows
        else:
            self._loss_sum += loss_sum
            self._loss_rows += message.rows
        if self.loss_cursor < len(self.loss_slots):
            return []
        return self._close_epoch()

    def _close_epoch(self) -> list[Envelope]:
        outcome = self.monitor.end_epoch(self.epoch, self._loss_sum / self._loss_rows, self._validation_loss)
        if outcome.stop:
            self.finished = True
            self.diverged = outcome.reason == DIVERGED
            self.final_epoch = self.epoch
        else:
            self.epoch += 1
        self.loss_cursor, self._loss_sum, self._loss_rows, self._validation_loss = 0, 0.0, 0, None
        self.score_cursor = 0
        self.snapshot = self.state_dict()

        def decision(with_loss: bool) -> EpochDecision:
            return EpochDecision(
                job_id=self.job_id, epoch=outcome.epoch, batch=END_OF_EPOCH,
                train_loss=outcome.train_loss if with_loss else None,
                validation_loss=outcome.validation_loss if with_loss else None,
                stop=outcome.stop, reason=outcome.reason, improved=outcome.improved, best_epoch=outcome.best_epoch,
            )

        # The loss goes to B only: the feature parties hold no labels and have no need of it.
        return [self.send(p, decision(False)) for p in self.roster.features] + [
            self.send(self.roster.label, decision(True))]
