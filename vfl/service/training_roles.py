"""A job's training roles at a service, and what a service records after each message they handle.

The roles are the I/O-free state machines of :mod:`vfl.protocol`: a
:class:`FeatureParty`, the :class:`LabelParty` or the :class:`Arbiter`, built
here with this service's engine and limits and the job's gradient lengths.
:func:`after_message` is the runtime's ``on_handled`` hook: it turns what a role
did into the job's record (epochs, losses, checkpoints, the arbiter's
decryption ledger) and, when a role is done, into the end of the job here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from vfl.crypto.keys import PrivateKey, PublicKey
from vfl.data.table import PartyTable, fill_for_training
from vfl.errors import ConfigError
from vfl.ml.config import TrainingConfig
from vfl.ml.multiclass import one_vs_rest
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.protocol.messages import EpochDecision, Message
from vfl.protocol.role import Envelope, Role
from vfl.service.config import ServiceConfig
from vfl.service.context import JobContext
from vfl.service.lifecycle import Stage
from vfl.service.psi_roles import PSI_ROLES, key_holder_finished
from vfl.ml.scorecard.card import card_for
from vfl.service.record import model_document
from vfl.service.scorecards import coded, load_encoding, require_scorecard, scaling_of, scorecard_of

TrainingRole = FeatureParty | LabelParty | Arbiter


def check_key_sizes(config: ServiceConfig, training: TrainingConfig, psi_bits: int) -> None:
    """Refuse a job whose keys are smaller than ``limits.min_key_bits`` or larger than ``limits.max_key_bits``.

    The upper bound is a cost bound: a party B could otherwise make each feature party spend seconds of
    CPU per registration on a huge PSI key.
    """
    floor, ceiling = config.limits.min_key_bits, config.limits.max_key_bits
    for what, bits in (("training.key_bits", training.key_bits), ("psi.key_bits", psi_bits)):
        if bits < floor:
            raise ConfigError(f"{what}={bits} is below this service's minimum of {floor} bits")
        if bits > ceiling:
            raise ConfigError(f"{what}={bits} is above this service's maximum of {ceiling} bits (limits.max_key_bits)")


def party_role(ctx: JobContext, aligned: PartyTable) -> FeatureParty | LabelParty:
    """This party's training role for the job, on its aligned rows, with the job's gradient lengths.

    A scorecard job trains on the party's coded characteristics (its binning, stored here), and the
    role projects its own weights onto the scorecard's constraints after every step.
    """
    record = ctx.record
    encoding = None
    config = ctx.training_config()
    if scorecard_of(record) is not None:
        encoding = load_encoding(ctx.store, record.job_id)
        aligned = coded(aligned, encoding)
    else:  # missing numbers filled with this party's own training rows' values (vfl.ml.prep), kept in its model
        aligned = fill_for_training(aligned, config)
    options = dict(feature_names=aligned.feature_names, engine=ctx.engine,
                   min_key_bits=ctx.config.limits.min_key_bits, job_lengths=record.gradient_lengths,
                   roster=ctx.roster)
    role: FeatureParty | LabelParty
    if ctx.kind == "label":
        value = one_vs_rest_class(record)
        labels = aligned.labels if value is None else one_vs_rest(aligned.labels, value)
        role = LabelParty(record.job_id, config, aligned.features, labels, **options)
    else:
        role = FeatureParty(record.job_id, config, aligned.features, party=record.own_id(ctx.me), **options)
    if encoding is None:  # a scorecard's model reads its coded characteristics, not prepared columns
        role.preparation = aligned.preparation
    if encoding is not None:
        extra = int(config.fit_intercept) if ctx.kind == "label" else 0
        role.projection = encoding.projection(role.scaler.scale, extra_columns=extra)
    return role


def one_vs_rest_class(record: Any) -> float | None:
    """Party B: the class this job trains against the rest (a multi-class job trains its first class itself,
    each other class in a class training of its own), or None for a binary or linear job."""
    if record.multiclass is not None:
        return float(record.multiclass["classes"][0])
    value = (record.job_spec or {}).get("one_vs_rest_class")
    return None if value is None else float(value)


def feature_card(ctx: JobContext, model: Any) -> dict[str, Any]:
    """A feature party's scorecard part after training: its bins, points table (with its published reason
    codes) and CSI reference, from its trained weights and its raw aligned rows."""
    record = ctx.record
    config = require_scorecard(record)
    encoding = load_encoding(ctx.store, record.job_id)
    raw = ctx.aligned_table()
    party = record.own_id(ctx.me)
    # The code is always "<party>:<characteristic>" (party B checks whose it is); [scorecard.codes] gives its text.
    codes = {n: f"{ctx.me}:{n}" for n in encoding.names}
    card = card_for(party, raw.features, raw.feature_names, encoding, model.scaler, model.weights,
                    scaling_of(config), codes)
    return card.to_dict()


def arbiter_role(ctx: JobContext, n_rows: int, keypair: tuple[PublicKey, PrivateKey] | None = None) -> Arbiter:
    """The arbiter's role for the job: a fresh key pair, or the one from a checkpoint."""
    record = ctx.record
    return Arbiter(record.job_id, ctx.training_config(), n_rows, gradient_lengths=record.gradient_lengths,
                   keypair=keypair, engine=ctx.engine, min_key_bits=ctx.config.limits.min_key_bits,
                   roster=ctx.roster)


async def after_message(ctx: JobContext, role: Role, message: Message, out: list[Envelope]) -> None:
    """Progress after each message a role handled: epochs, losses, checkpoints, and the end of its work."""
    job, record = ctx.job, ctx.record
    if isinstance(role, PSI_ROLES):
        if role.done:
            if role.KIND == "feature":  # a feature party's one alignment (B's end in the align stage)
                key_holder_finished(ctx, role)
            job.aligned.set()
        return
    if isinstance(role, Arbiter) and role.new_ledger_entries:
        # Released decryptions go to disk before the answer leaves: a resume cannot renew the budget.
        ctx.store.append_ledger(record.job_id, role.new_ledger_entries)
        role.new_ledger_entries = []
    decisions = [e.message for e in out if isinstance(e.message, EpochDecision)]
    if isinstance(message, EpochDecision):
        decisions.append(message)
    for decision in decisions:
        record.epoch = decision.epoch + 1
        if decision.train_loss is not None:
            del record.loss_history[decision.epoch :]
            record.loss_history.append(decision.train_loss)
            del record.validation_loss_history[decision.epoch :]
            if decision.validation_loss is not None:
                record.validation_loss_history.append(decision.validation_loss)
        record.stop_reason = decision.reason
    for epoch in sorted({d.epoch for d in decisions}):  # the arbiter sends each party its copy: one line
        copies = [d for d in decisions if d.epoch == epoch]
        _epoch_finished(ctx, next((d for d in copies if d.train_loss is not None), copies[0]))
    if decisions:
        ctx.checkpoint(role)
        ctx.update()
    if role.done and not job.trained.is_set():
        if job.runtime is not None and not isinstance(role, LabelParty):  # B notes its own in its training stage
            record.timings["training_compute"] = round(job.runtime.compute_seconds.get("train", 0.0), 3)
        if isinstance(role, FeatureParty):
            model = role.model()
            if scorecard_of(record) is not None:
                ctx.store.save_card(record.job_id, await asyncio.to_thread(feature_card, ctx, model))
            ctx.store.save_model(record.job_id, model_document(model, record))
            ctx.advance(Stage.DONE, parameters=role.trajectory())
            ctx.event("succeeded after %d epochs: this party's model part is saved", record.epoch)
        elif isinstance(role, Arbiter):
            ctx.advance(Stage.DONE)
            ctx.event("succeeded after %d epochs", record.epoch)
        job.trained.set()


def _epoch_finished(ctx: JobContext, decision: EpochDecision) -> None:
    """The job's story: one line per epoch, with its losses (and why training stops, at the last).

    Party B and the arbiter know the losses; a feature party's copy of the decision carries none.
    """
    if decision.train_loss is None:
        losses = "done (the losses are known to party B)"
    else:
        losses = f"train loss {decision.train_loss:.6f}"
        if decision.validation_loss is not None:
            losses += f", validation loss {decision.validation_loss:.6f}"
    stop = f"; training stops: {decision.reason}" if decision.stop and decision.reason else ""
    ctx.event("epoch %d/%d: %s%s", decision.epoch + 1, ctx.record.max_epochs, losses, stop)
    now = time.monotonic()
    if ctx.job.epoch_began is not None:
        ctx.telemetry.epoch_seconds.observe(now - ctx.job.epoch_began)
    ctx.job.epoch_began = now


def training_started(ctx: JobContext, n_rows: int, resumed_from: int | None = None) -> None:
    """Training (re)starts here: a line of the job's story, and the clock of its first epoch."""
    ctx.job.epoch_began = time.monotonic()
    if resumed_from is None:
        ctx.event("training on %d aligned rows, at most %d epochs", n_rows, ctx.record.max_epochs)
    else:
        ctx.event("resumed after epoch %d (generation %d) on %d aligned rows", resumed_from + 1,
                  ctx.record.generation, n_rows, level=logging.WARNING)


__all__ = ["TrainingRole", "after_message", "arbiter_role", "check_key_sizes", "one_vs_rest_class", "party_role",
           "training_started"]
