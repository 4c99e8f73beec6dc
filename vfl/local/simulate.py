"""A whole federated job in one process: alignment, encrypted training, evaluation.

All three roles run with real encryption and exchange real wire frames over
the in-memory channel; only the network is missing. This is the Python API for
notebooks::

    from vfl import TrainingConfig, simulate_csv
    result = simulate_csv(["shop.csv", "telco.csv"], "bank.csv", id_column="id", label_column="y",
                          config=TrainingConfig(model="logistic", key_bits=2048))
    result["metrics"]["train"]["auc"]

The first argument is one feature party's CSV or a list of them (k feature
parties, in order); ``id_column_a`` may be one column name or one per file.

and what ``vfl simulate`` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from psi.joint import align_many
from psi.suites import PsiProtocol
from vfl.ml.config import TrainingConfig
from vfl.crypto.keys import PrivateKey, PublicKey
from vfl.data.ids import IdRules, explain_mismatch
from vfl.data.leakage import column_leaks, perfect_model, score_leak
from vfl.data.table import PartyTable, check_labels, fill_for_training, load_csv
from vfl.ml.loss_check import taylor_shortfall
from vfl.ml.prep import PrepConfig
from vfl.errors import ConfigError, DataError
from vfl.incentives import shapley
from vfl.ml.parts import ModelPartA, ModelPartB, evaluate_label_part, label_party_alone
from vfl.compute.engine import Engine, make_engine
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import EpochDecision
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.protocol.role import Envelope
from vfl.protocol.roster import Roster
from vfl.ml.schedule import gradient_lengths
from vfl.ml.curves import curves_for, one_vs_rest_curves
from vfl.ml.multiclass import (
    PROBABILITIES,
    STRATEGY,
    class_name,
    class_values,
    is_multiclass,
    multiclass_metrics,
    normalise,
    one_vs_rest,
)

#: Simulation runs in one process, so no key boundary is crossed: 1024-bit keys
#: are allowed here for quick experiments. Services insist on 2048.
SIMULATION_MIN_KEY_BITS = 1024

ProgressFn = Callable[[int, int, float | None, float | None], None]
StageFn = Callable[[str], None]  # one line saying which long step begins
CoalitionFn = Callable[[int, int, list[str]], None]  # (coalitions done, coalitions to train, this one's parties)


def simulate_csv(
    party_a: str | Sequence[str],
    party_b: str,
    *,
    id_column: str,
    label_column: str,
    config: TrainingConfig,
    id_column_a: str | Sequence[str] | None = None,
    prep: PrepConfig | None = None,
    id_rules: IdRules | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Load each party's CSV separately and run :func:`simulate`.

    ``prep`` is how every party prepares its own columns (missing values, categories: :mod:`vfl.ml.prep`),
    each from its own rows; ``id_rules`` normalise every file's IDs before the PSI.
    """
    files = [party_a] if isinstance(party_a, str) else list(party_a)
    columns = id_column_a if isinstance(id_column_a, (list, tuple)) else [id_column_a] * len(files)
    if len(columns) != len(files):
        raise DataError(f"{len(columns)} ID columns for {len(files)} feature-party files: give one, or one per file")
    preps = _own_categories(prep, [*files, party_b])
    tables = [load_csv(f, id_column=c or id_column, prep=p, id_rules=id_rules) for f, c, p in zip(files, columns, preps)]
    table_b = load_csv(party_b, id_column=id_column, label_column=label_column, model=config.model, prep=preps[-1],
                       id_rules=id_rules)
    return simulate(tables if len(tables) > 1 else tables[0], table_b, config, **kwargs)


def _own_categories(prep: PrepConfig | None, files: list[str]) -> list[PrepConfig | None]:
    """``prep`` for each file, with only the categorical columns that file has (each party encodes its own)."""
    if prep is None or not prep.categorical:
        return [prep] * len(files)
    import pandas as pd

    def header(file: str) -> set[str]:  # only the header row: the load that follows checks the whole file
        try:
            return {str(c).strip() for c in pd.read_csv(file, nrows=0, dtype=str, encoding="utf-8-sig").columns}
        except (OSError, ValueError):
            return set()

    headers = [header(f) for f in files]
    unknown = sorted(c for c in prep.categorical if not any(c in h for h in headers))
    if unknown:
        raise DataError(f"--categorical names column(s) {unknown} that no file has; check the names (they are "
                        "case-sensitive)")
    return [prep.model_copy(update={"categorical": {c: k for c, k in prep.categorical.items() if c in h}})
            for h in headers]


def simulate(
    table_a: PartyTable | Sequence[PartyTable],
    table_b: PartyTable,
    config: TrainingConfig,
    *,
    workers: int | None = None,
    engine: Engine | str | None = None,
    address: str | None = None,
    job_id: str = "simulation",
    progress: ProgressFn | None = None,
    transcript: list[Envelope] | None = None,
    keypair: tuple[PublicKey, PrivateKey] | None = None,
    psi_key_bits: int | None = None,
    psi_protocol: PsiProtocol = "rsa",
    contributions: bool = False,
    contribution_permutations: int | None = None,
    contribution_seed: int = 0,
    on_coalition: CoalitionFn | None = None,
    ledger: str | Path | None = None,
    on_stage: StageFn | None = None,
) -> dict[str, Any]:
    """Align (RSA PSI, or ECDH PSI with ``psi_protocol="ecdh"``), train and evaluate; return the JSON-ready result.

    ``table_a`` is one feature party's table or a list of them: with k > 1 the
    feature parties are "A1" … "Ak" in the result, in the order given.

    ``keypair`` lets tests reuse one arbiter key; ``transcript`` collects every
    training envelope; ``psi_key_bits`` defaults to the Paillier key size.

    ``engine`` is where every party's crypto runs: an :class:`~vfl.compute.engine.Engine`,
    or ``"local"`` (this machine, ``workers`` processes; the default) or ``"ray"``
    (the Ray cluster at ``address``, or a private local one). All parties share it
    here, as they share the machine.

    ``contributions`` adds what each feature party adds (:mod:`vfl.incentives.shapley`):
    every coalition of feature parties the Shapley values need is trained through
    the same protocol on the same aligned rows (exact for k ≤ 4, else
    ``contribution_permutations`` sampled orders from ``contribution_seed``);
    ``on_coalition(done, total, parties)`` is called before each. ``ledger`` is a
    folder: the job is appended to the hash-chained ledger there (:mod:`vfl.incentives.chain`),
    signed with keys made for the occasion and kept beside it.

    ``on_stage(text)`` hears each long step as it begins ("aligning: ...", "training: ..."), before the first
    epoch's ``progress``, so that nothing runs for long unannounced.
    """
    started = time.perf_counter()
    say = on_stage or (lambda text: None)
    check_label_table(table_b, config)
    if contributions and is_multiclass(table_b.labels, config.model):
        raise ConfigError(f"{table_b.source}: contributions are measured on binary (0/1) labels and numeric targets "
                          f"only; this label has {len(class_values(table_b.labels))} classes. Run without "
                          "contributions, or measure them on one class against the rest (recode the label to 0/1)")
    engine = engine if isinstance(engine, Engine) else make_engine(engine or "local", address=address, workers=workers)
    given = [table_a] if isinstance(table_a, PartyTable) else list(table_a)
    say(f"aligning: {psi_protocol.upper()} PSI with {psi_key_bits or config.key_bits}-bit keys between party B "
        f"({len(table_b)} IDs) and {len(given)} feature part{'y' if len(given) == 1 else 'ies'} "
        f"({', '.join(str(len(t)) for t in given)} IDs)")
    aligned = align_parties(table_a, table_b, config, engine, psi_key_bits, psi_protocol=psi_protocol)
    tables, roster, min_bits, alignment = aligned.tables, aligned.roster, aligned.min_bits, aligned.alignment
    parts, b_rows = aligned.parts, aligned.b_rows
    say(f"aligned: {len(b_rows)} rows in {time.perf_counter() - started:.1f}s; training with "
        f"{config.key_bits}-bit Paillier keys, at most {config.epochs} epochs (the arbiter's key first)")

    warnings = list(aligned.warnings) + _leaks(parts, b_rows, config)
    parts = [fill_for_training(t, config) for t in parts]  # each party's own fill values, from its training rows
    b_rows = fill_for_training(b_rows, config)
    if is_multiclass(b_rows.labels, config.model):
        result = _simulate_one_vs_rest(replace(aligned, parts=parts, b_rows=b_rows), table_b, config, engine=engine,
                                       job_id=job_id, progress=progress, transcript=transcript, keypair=keypair,
                                       started=started, ledger=ledger)
        result["preparation"] = _preparations(parts, b_rows, roster)
        if warnings:
            result["warnings"] = warnings
        return result
    run = train_federated(parts, b_rows, config, roster=roster, engine=engine, job_id=job_id, progress=progress,
                          transcript=transcript, keypair=keypair, min_bits=min_bits)
    warnings += _score_leaks(run, parts, b_rows, roster)
    features, party_b, arbiter, channel = run.features, run.party_b, run.arbiter, run.channel
    models, model_b, metrics, decision, predictions = run.models, run.model_b, run.metrics, run.decision, run.predictions
    schedule, splits, train_seconds = party_b.schedule, run.splits, run.seconds
    curve_split = "validation" if schedule.has_validation else "train"
    curve_rows = splits[curve_split]

    if len(features) == 1:
        parameters = {"party A": features[0].trajectory(), "party B": party_b.trajectory()}
        model_parts = {"party_a": models[0].to_dict(), "party_b": model_b.to_dict()}
    else:
        parameters = {**{f"party {f.party}": f.trajectory() for f in features}, "party B": party_b.trajectory()}
        model_parts = {**{f"party_{f.party.lower()}": m.to_dict() for f, m in zip(features, models)},
                       "party_b": model_b.to_dict()}
    result = {
        "model": config.model,
        "job_id": job_id,
        "aligned_rows": alignment.size,
        "alignment": alignment.summary(),
        "feature_parties": [{"party": f.party, "source": t.source, "features": t.features.shape[1]}
                            for f, t in zip(features, tables)],
        "label_mapping": table_b.label_mapping,  # text labels read as 1/0 (yes → 1, no → 0), or None
        "train_rows": int(schedule.n_train),
        "validation_rows": int(len(schedule.validation_rows)),
        "epochs_run": party_b.epochs_run,
        "stop_reason": party_b.stop_reason,
        "loss_history": party_b.train_losses,
        "validation_loss_history": party_b.validation_losses,
        "metrics": metrics,
        "decision": decision,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {
            "alignment": round(alignment.seconds, 3),
            "training": round(train_seconds, 3),
            "per_role": {k: round(v, 3) for k, v in channel.seconds_by_role.items()},
        },
        "bytes_exchanged": channel.total_bytes,
        "messages": channel.messages_sent,
        "decryptions": arbiter.decryptions,
        "privacy": None if party_b.privacy is None else party_b.privacy.report(),
        "parameters": parameters,
        "curves": curves_for(config.model, b_rows.labels[curve_rows], predictions[curve_rows], None),
        "curve_split": curve_split,
        "config": config.model_dump(),
        "workers": engine.workers,
        "engine": engine.name,
        "model_parts": model_parts,
        "preparation": _preparations(parts, b_rows, roster),
    }
    if warnings:
        result["warnings"] = warnings
    if contributions:
        result["contributions"] = _contributions(
            parts, b_rows, config, run, names=[f.party for f in features], sources=[t.source for t in tables],
            engine=engine, keypair=keypair, min_bits=min_bits, permutations=contribution_permutations,
            seed=contribution_seed, on_coalition=on_coalition)
    if ledger is not None:
        from vfl.incentives.chain import record_simulation

        result["ledger"] = record_simulation(ledger, result, table_b.source)
    return result


def check_label_table(table_b: PartyTable, config: TrainingConfig) -> None:
    """Party B's table has labels the model can learn (before any PSI runs)."""
    if table_b.labels is None:
        raise DataError(f"{table_b.source}: party B's table has no label column; pass label_column")
    check_labels(table_b.labels, config.model, table_b.source, table_b.label_name or "label",
                 max_classes=config.max_classes)


def _preparations(parts: list[PartyTable], b_rows: PartyTable, roster: Roster) -> dict[str, Any]:
    """What each party did to its own columns (strategy, indicator and encoded columns, counts), by party."""
    names = [f"party {p}" for p in roster.features] + ["party B"]
    return {name: t.preparation.describe() for name, t in zip(names, [*parts, b_rows]) if t.preparation is not None}


def _leaks(parts: list[PartyTable], b_rows: PartyTable, config: TrainingConfig) -> list[str]:
    """Feature parties' columns that give the label away, on the training rows (every file is local here)."""
    from vfl.ml.schedule import Schedule

    train = Schedule(len(b_rows), config).train_rows
    out: list[str] = []
    for t in parts:
        out += column_leaks(t.feature_names, t.features[train], b_rows.labels[train], b_rows.label_name, t.source,
                            binary=config.model == "logistic")
    return out


def _score_leaks(run: TrainedRun, parts: list[PartyTable], b_rows: PartyTable, roster: Roster) -> list[str]:
    """A feature party whose partial score alone separates the classes, a perfect validation AUC, and a Taylor
    loss that costs the model accuracy (:mod:`vfl.ml.loss_check`)."""
    if run.model_b.model != "logistic":
        return []
    split = "validation" if "validation" in run.splits else "train"
    rows = run.splits[split]
    partials = [m.partial_scores(t.features) for m, t in zip(run.models, parts)]
    out = [w for u, p in zip(partials, roster.features)
           if (w := score_leak(p, u[rows], b_rows.labels[rows], split)) is not None]
    perfect = perfect_model(run.metrics)
    out += [perfect] if perfect and not out else []
    if not run.party_b.config.exact_loss:
        train = run.splits["train"]
        design, u_features = run.party_b.design[train], np.sum(partials, axis=0)[train]
        shortfall = taylor_shortfall(design, u_features, design @ run.party_b.weights + u_features,
                                     b_rows.labels[train], "training", option="--loss exact")
        out += [shortfall] if shortfall else []
    return out


@dataclass(frozen=True)
class Aligned:
    """Every party's rows after the PSI, in the joint order (feature parties "A1" … "Ak", or "A")."""

    tables: list[PartyTable]
    roster: Roster
    #: The least key size the simulation accepts for this config (1024 at most: no key boundary is crossed).
    min_bits: int
    alignment: Any
    parts: list[PartyTable]
    b_rows: PartyTable
    #: IDs that did not match but would after a rewrite (leading zeros, '.0', case, ...): both files are local.
    warnings: tuple[str, ...] = ()


def align_parties(table_a: PartyTable | Sequence[PartyTable], table_b: PartyTable, config: TrainingConfig,
                  engine: Engine, psi_key_bits: int | None = None, *, psi_protocol: PsiProtocol = "rsa") -> Aligned:
    """PSI (RSA, or ``psi_protocol="ecdh"``) between B and each feature party; the rows all of them share."""
    tables = [table_a] if isinstance(table_a, PartyTable) else list(table_a)
    min_bits = min(SIMULATION_MIN_KEY_BITS, config.key_bits)
    alignment = align_many(
        table_b.ids, [t.ids for t in tables], key_bits=psi_key_bits or config.key_bits, min_key_bits=min_bits,
        engine=engine, source_b=table_b.source, sources=[t.source for t in tables], protocol=psi_protocol,
    )
    parts = [t.take(rows) for t, rows in zip(tables, alignment.rows)]
    b_rows = table_b.take(alignment.rows_b)
    warnings = tuple(w for t in tables if (w := explain_mismatch(table_b.ids, t.ids, table_b.source, t.source)))
    check_labels(b_rows.labels, config.model, f"{table_b.source} (aligned rows)", table_b.label_name or "label",
                 max_classes=config.max_classes)
    return Aligned(tables, Roster.default(len(tables)), min_bits, alignment, parts, b_rows, warnings)


@dataclass
class TrainedRun:
    """One training of the protocol on aligned rows, and B's evaluation of it."""

    features: list[FeatureParty]
    party_b: LabelParty
    arbiter: Arbiter
    channel: InMemoryChannel
    models: list[ModelPartA]
    model_b: ModelPartB
    metrics: dict[str, Any]
    decision: dict[str, Any] | None
    predictions: Any
    splits: dict[str, Any]
    seconds: float


def train_federated(parts: list[PartyTable], b_rows: PartyTable, config: TrainingConfig, *, roster: Roster,
                    engine: Engine, job_id: str, progress: ProgressFn | None = None,
                    transcript: list[Envelope] | None = None, keypair: tuple[PublicKey, PrivateKey] | None = None,
                    min_bits: int, prepare: Callable[[list[FeatureParty], LabelParty], None] | None = None,
                    ) -> TrainedRun:
    """Train the feature parties ``parts`` with B on the aligned rows, with real encryption; evaluate at B.

    ``prepare(features, party_b)`` sees the roles before training starts (a scorecard sets their projections).
    """
    train_started = time.perf_counter()
    lengths = gradient_lengths({p: t.features.shape[1] for p, t in zip(roster.features, parts)},
                               b_rows.features.shape[1], config, label=roster.label)
    features = [
        FeatureParty(job_id, config, t.features, roster=roster, party=p, feature_names=t.feature_names,
                     engine=engine, min_key_bits=min_bits, job_lengths=lengths)
        for p, t in zip(roster.features, parts)
    ]
    party_b = LabelParty(job_id, config, b_rows.features, b_rows.labels, roster=roster,
                         feature_names=b_rows.feature_names, engine=engine, min_key_bits=min_bits,
                         job_lengths=lengths)
    for role, t in zip([*features, party_b], [*parts, b_rows]):
        role.preparation = t.preparation  # recorded in the party's own model part, for serving
    arbiter = Arbiter(job_id, config, len(b_rows), gradient_lengths=lengths, keypair=keypair,
                      min_key_bits=min_bits, roster=roster, engine=engine)

    def on_deliver(envelope: Envelope) -> None:
        message = envelope.message
        if progress is not None and envelope.recipient == roster.label and isinstance(message, EpochDecision):
            progress(message.epoch, config.epochs, message.train_loss, message.validation_loss)

    if prepare is not None:
        prepare(features, party_b)
    roles = {**{f.party: f for f in features}, roster.label: party_b, roster.arbiter: arbiter}
    channel = InMemoryChannel(roles, transcript=transcript, on_deliver=on_deliver)
    channel.run([e for f in features for e in f.start()] + party_b.start())
    seconds = time.perf_counter() - train_started

    # Evaluation: each feature party sends its plaintext partial scores for the aligned
    # rows to B, exactly as federated prediction does; only B computes the metrics.
    models = [f.model() for f in features]
    u_a = sum(m.partial_scores(t.features) for m, t in zip(models, parts))
    schedule = party_b.schedule
    splits = {"train": schedule.train_rows}
    if schedule.has_validation:
        splits["validation"] = schedule.validation_rows
    model_b, metrics, decision, predictions = evaluate_label_part(
        party_b.model(), config, b_rows.labels, party_b.model().scores(b_rows.features, u_a), splits)
    return TrainedRun(features, party_b, arbiter, channel, models, model_b, metrics, decision, predictions, splits, seconds)


def _simulate_one_vs_rest(aligned: Aligned, table_b: PartyTable, config: TrainingConfig, *, engine: Engine,
                          job_id: str, progress: ProgressFn | None, transcript: list[Envelope] | None,
                          keypair: tuple[PublicKey, PrivateKey] | None, started: float,
                          ledger: str | Path | None) -> dict[str, Any]:
    """A label of K ≥ 3 classes: K binary trainings of the unchanged protocol on the one alignment (one-vs-rest).

    The k-th training is an ordinary binary job on B's rows relabelled ``y == class_k``
    (:mod:`vfl.ml.multiclass`); B normalises the K probabilities and measures the model.
    """
    if ledger is not None:
        raise ConfigError("the ledger records binary and linear jobs only; run a multi-class label without --ledger")
    parts, b_rows, roster, min_bits = aligned.parts, aligned.b_rows, aligned.roster, aligned.min_bits
    labels = np.asarray(b_rows.labels, dtype=np.float64)
    classes = class_values(labels)
    runs: list[TrainedRun] = []
    for k, value in enumerate(classes):
        def on_epoch(epoch: int, epochs: int, train: float | None, validation: float | None, k: int = k) -> None:
            if progress is not None:  # one bar over the K trainings
                progress(k * epochs + epoch, len(classes) * epochs, train, validation)

        binary = replace(b_rows, labels=one_vs_rest(labels, value))
        runs.append(train_federated(parts, binary, config, roster=roster, engine=engine, job_id=f"{job_id}.class{k}",
                                    progress=on_epoch, transcript=transcript, keypair=keypair, min_bits=min_bits))
    first = runs[0]
    probabilities = normalise(np.column_stack([r.predictions for r in runs]))
    metrics = {split: multiclass_metrics(labels[rows], probabilities[rows], classes) for split, rows in first.splits.items()}
    schedule = first.party_b.schedule
    curve_split = "validation" if schedule.has_validation else "train"
    curve_rows = first.splits[curve_split]
    names = ["A"] if len(first.features) == 1 else [f.party for f in first.features]
    model_parts = {
        **{("party_a" if len(names) == 1 else f"party_{n.lower()}"): {
            "multiclass": STRATEGY, "classes": classes, "parts": [r.models[i].to_dict() for r in runs]}
           for i, n in enumerate(names)},
        "party_b": {"multiclass": STRATEGY, "classes": classes, "parts": [r.model_b.to_dict() for r in runs]},
    }
    alignment = aligned.alignment
    return {
        "model": config.model,
        "multiclass": {
            "strategy": STRATEGY,
            "classes": [class_name(c) for c in classes],
            "probabilities": PROBABILITIES,
            "per_class": [{"class": class_name(c), "epochs_run": r.party_b.epochs_run,
                           "stop_reason": r.party_b.stop_reason, "loss_history": r.party_b.train_losses,
                           "validation_loss_history": r.party_b.validation_losses, "decision": r.decision,
                           "metrics": r.metrics, "seconds": round(r.seconds, 3),
                           "decryptions": r.arbiter.decryptions}
                          for c, r in zip(classes, runs)],
        },
        "job_id": job_id,
        "aligned_rows": alignment.size,
        "alignment": alignment.summary(),
        "feature_parties": [{"party": f.party, "source": t.source, "features": t.features.shape[1]}
                            for f, t in zip(first.features, aligned.tables)],
        "label_mapping": table_b.label_mapping,  # class names read as 0 … K−1, or None
        "train_rows": int(schedule.n_train),
        "validation_rows": int(len(schedule.validation_rows)),
        "epochs_run": sum(r.party_b.epochs_run for r in runs),
        "stop_reason": "; ".join(f"class {class_name(c)}: {r.party_b.stop_reason}" for c, r in zip(classes, runs)),
        "metrics": metrics,
        "curves": one_vs_rest_curves(labels[curve_rows], probabilities[curve_rows], classes),
        "curve_split": curve_split,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {
            "alignment": round(alignment.seconds, 3),
            "training": round(sum(r.seconds for r in runs), 3),  # each class's: multiclass.per_class
        },
        "bytes_exchanged": sum(r.channel.total_bytes for r in runs),
        "messages": sum(r.channel.messages_sent for r in runs),
        "decryptions": sum(r.arbiter.decryptions for r in runs),
        "privacy": None if first.party_b.privacy is None else [r.party_b.privacy.report() for r in runs],
        "config": config.model_dump(),
        "workers": engine.workers,
        "engine": engine.name,
        "model_parts": model_parts,
    }


def _contributions(parts: list[PartyTable], b_rows: PartyTable, config: TrainingConfig, run: TrainedRun, *,
                   names: list[str], sources: list[str], engine: Engine,
                   keypair: tuple[PublicKey, PrivateKey] | None, min_bits: int, permutations: int | None,
                   seed: int, on_coalition: CoalitionFn | None) -> dict[str, Any]:
    """Shapley values and leave-one-out of the feature parties, from real federated trainings of each coalition.

    Every coalition trains on the job's own aligned rows (the full joint
    intersection) with the same config, so the validation split is the same and
    the values compare. v(∅) is party B alone, trained by B in plaintext (the job's
    bank-only baseline): B alone needs no federation.
    """
    k = len(parts)
    plan = shapley.plan(k, permutations=permutations, seed=seed)
    full = plan.full
    values: dict[frozenset[int], float] = {}
    seconds: dict[frozenset[int], float] = {full: run.seconds}
    values[full], split = shapley.value_of(run.metrics, config.model)
    alone, _ = label_party_alone(run.party_b, b_rows.labels, run.splits)
    values[frozenset()], _ = shapley.value_of(alone["metrics"], config.model)
    todo = plan.to_train()
    for done, coalition in enumerate(todo):
        members = sorted(coalition)
        if on_coalition is not None:
            on_coalition(done, len(todo), [names[i] for i in members])
        sub = train_federated([parts[i] for i in members], b_rows, config, roster=Roster.default(len(members)),
                              engine=engine, job_id=f"coalition-{'-'.join(names[i] for i in members)}",
                              keypair=keypair, min_bits=min_bits)
        values[coalition], _ = shapley.value_of(sub.metrics, config.model)
        seconds[coalition] = sub.seconds
    rows = len(run.splits[split])
    return shapley.table(plan, values, model=config.model, names=names, sources=sources, split=split, rows=rows,
                         seconds=seconds)
