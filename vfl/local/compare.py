"""``vfl compare``: the federated model against pooled-data baselines, on one train/test split.

The question the papers behind vfl ask (|V_FED − V_SUM| < δ): does training
across two organisations, encrypted, cost anything against pooling the data?
Every row of the table is trained on the same training rows and scored on
the same held-out rows:

* federated (vfl, encrypted, in-process simulation with real Paillier and PSI);
* the same algorithm on the pooled plaintext data (vfl's Taylor loss and optimiser);
* party B alone (same algorithm, B's features only: what federation adds);
* pooled scikit-learn references: logistic / linear regression, SVM (RBF),
  random forest, decision tree;
* the federated model with differential privacy at a few ε values.

Classification reports accuracy, precision, recall, F1 and AUC; regression
MSE, MAE and R²; every row also its wall time in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np

from vfl.ml.calibration import fit_decision
from vfl.ml.config import TrainingConfig
from vfl.crypto.keys import generate_keypair
from vfl.data.table import PartyTable
from vfl.errors import ConfigError, DataError
from vfl.ml.metrics import model_metrics
from vfl.ml.multiclass import class_values, is_multiclass
from vfl.ml.parts import ModelPartA, ModelPartB
from vfl.ml.plaintext import train_plaintext
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.ml.curves import curves_for
from vfl.local.simulate import simulate

CLASSIFICATION_COLUMNS = ["accuracy", "precision", "recall", "f1", "auc", "log_loss", "brier"]
REGRESSION_COLUMNS = ["mse", "mae", "r2"]


@dataclass
class Row:
    method: str
    metrics: dict[str, Any]
    seconds: float
    note: str = ""


@dataclass
class Comparison:
    dataset: str
    model: str
    train_rows: int
    test_rows: int
    rows: list[Row] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return CLASSIFICATION_COLUMNS if self.model == "logistic" else REGRESSION_COLUMNS

    def markdown(self) -> str:
        head = "| method | " + " | ".join(self.columns) + " | seconds | note |"
        rule = "|---|" + "---|" * len(self.columns) + "---|---|"
        lines = [head, rule]
        for row in self.rows:
            cells = [f"{row.metrics[c]:.4f}" if row.metrics.get(c) is not None else "—" for c in self.columns]
            lines.append(f"| {row.method} | " + " | ".join(cells) + f" | {row.seconds:.1f} | {row.note} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model, "train_rows": self.train_rows,
                "test_rows": self.test_rows, "loss_history": self.loss_history,
                "rows": [{"method": r.method, "metrics": r.metrics, "seconds": r.seconds, "note": r.note}
                         for r in self.rows]}


FEDERATED = "federated (vfl, Paillier-encrypted)"

#: Told of every model before it is trained and after: ("start", name, None) and ("done", name, row).
StepFn = Callable[[str, str, "Row | None"], None]


def _quiet(event: str, name: str, row: Row | None) -> None:
    """No progress wanted."""


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def _plain_parts(
    a: PartyTable, b: PartyTable, config: TrainingConfig, *, use_a: bool = True, noise_seeds: tuple[int, int] = (0, 1)
):
    """vfl's algorithm on pooled plaintext, through the roles' own preprocessing (no protocol run).

    With ``config.privacy`` this replays the private mechanism with the given noise seeds: the
    encrypted run equals it to rounding (tests/protocol/test_privacy_dp.py), so it measures the
    spread of DP utility over noise draws without paying for encryption each time.
    """
    role_a = FeatureParty("plain", config, a.features, feature_names=a.feature_names, min_key_bits=config.key_bits)
    role_b = LabelParty("plain", config, b.features, b.labels, feature_names=b.feature_names,
                    min_key_bits=config.key_bits)
    design_a = role_a.design if use_a else np.zeros((len(b), 0))
    design_b = role_b.design[:, :-1] if config.fit_intercept else role_b.design
    result = train_plaintext(design_a, design_b, role_b.labels, config, noise_seeds=noise_seeds)
    role_a.weights = result.weights_a if use_a else np.zeros(role_a.design.shape[1])
    role_b.weights = result.weights_b
    return role_a.model(), role_b.model()


def _decided(parts: tuple, config: TrainingConfig, a: PartyTable, b: PartyTable) -> tuple:
    """A plaintext model with the decision layer a federated job fits (vfl.ml.calibration.fit_decision), fitted on
    the training rows as a job without a validation split does; a linear model as it is."""
    model_a, model_b = parts
    if model_b.model != "logistic":
        return parts
    u = model_b.scores(b.features, model_a.partial_scores(a.features))
    calibration, threshold, _ = fit_decision(config, b.labels, u, {"train": np.arange(len(u))})
    return model_a, model_b.with_decision(calibration, threshold)


def _threshold(parts: tuple) -> float:
    return parts[1].threshold.value


def _decision_note(parts: tuple) -> str:
    return "Platt-calibrated, as the federated row" if parts[1].calibration is not None else ""


def _predict(parts: tuple, a: PartyTable, b: PartyTable) -> np.ndarray:
    model_a, model_b = parts
    return model_b.predict(b.features, model_a.partial_scores(a.features))


def _sklearn_rows(model: str, X_train, y_train, X_test, y_test, seed: int, step: StepFn = _quiet) -> list[Row]:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    scaler = StandardScaler().fit(X_train)
    Xtr, Xte = scaler.transform(X_train), scaler.transform(X_test)
    if model == "logistic":
        candidates = [
            ("pooled logistic regression (scikit-learn)", LogisticRegression(max_iter=5000)),
            ("pooled SVM, RBF kernel (scikit-learn)", SVC(kernel="rbf", random_state=seed)),
            ("pooled random forest (scikit-learn)", RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=seed)),
            ("pooled decision tree (scikit-learn)", DecisionTreeClassifier(random_state=seed)),
        ]
    else:
        candidates = [
            ("pooled linear regression (scikit-learn)", LinearRegression()),
            ("pooled SVM, RBF kernel (scikit-learn)", SVR(kernel="rbf")),
            ("pooled random forest (scikit-learn)", RandomForestRegressor(n_estimators=200, n_jobs=-1, random_state=seed)),
            ("pooled decision tree (scikit-learn)", DecisionTreeRegressor(random_state=seed)),
        ]
    rows = []
    for name, estimator in candidates:
        step("start", name, None)
        _, seconds = _timed(lambda: estimator.fit(Xtr, y_train))
        if model == "logistic":
            # AUC needs a score; the others need the 0/1 decision. A sigmoid of the SVM's margin
            # puts its decision at 0.5 like the rest.
            if hasattr(estimator, "predict_proba"):
                scores = estimator.predict_proba(Xte)[:, 1]
            else:
                scores = 1.0 / (1.0 + np.exp(-estimator.decision_function(Xte)))
        else:
            scores = estimator.predict(Xte)
        rows.append(Row(name, model_metrics(model, y_test, scores), seconds))
        step("done", name, rows[-1])
    return rows


def compare(
    table_a: PartyTable,
    table_b: PartyTable,
    *,
    model: str,
    dataset: str = "dataset",
    epsilons: tuple[float, ...] = (1.0, 3.0, 10.0),
    test_fraction: float = 0.25,
    seed: int = 0,
    training: dict[str, Any] | None = None,
    key_bits: int = 2048,
    workers: int | None = None,
    dp_draws: int = 5,
    progress: StepFn | None = None,
) -> Comparison:
    """Train every model of the comparison on one split; ``progress(event, name, row)`` hears of each model as it
    starts ("start", row None) and ends ("done", its row), so that a long comparison is never silent."""
    step = progress or _quiet
    if is_multiclass(table_b.labels, model):
        raise ConfigError(f"{table_b.source}: the label has {len(class_values(table_b.labels))} classes; vfl compare "
                          "compares binary and linear models only. Train the multi-class (one-vs-rest) model with "
                          "vfl simulate, or recode the label to 0/1 to compare one class against the rest")
    # Evaluation needs the same rows on both sides and a shared test split, so the tables are
    # joined here; the federated run aligns its training rows with PSI like any job.
    ids_a = set(table_a.ids)
    common = [i for i in table_b.ids if i in ids_a]
    if len(common) < 10:
        raise DataError(f"only {len(common)} IDs in common; a comparison needs at least 10")
    a, b = table_a.take(table_a.rows_for(common)), table_b.take(table_b.rows_for(common))
    order = np.random.default_rng(seed).permutation(len(common))
    n_test = max(1, int(round(len(common) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    a_train, b_train, a_test, b_test = a.take(train), b.take(train), a.take(test), b.take(test)
    y_test = b_test.labels
    settings = {"model": model, "key_bits": key_bits, "seed": seed, **(training or {})}
    config = TrainingConfig.parse(settings)
    keypair = generate_keypair(key_bits, min_bits=min(key_bits, 1024))
    result = Comparison(dataset, model, len(train), len(test))

    def add(row: Row) -> None:
        result.rows.append(row)
        step("done", row.method, row)

    step("start", FEDERATED, None)
    federated, seconds = _timed(lambda: simulate(a_train, b_train, config, keypair=keypair, workers=workers))
    parts = (_part_a(federated), _part_b(federated))
    predictions = _predict(parts, a_test, b_test)
    add(Row(FEDERATED, model_metrics(model, y_test, predictions, threshold=parts[1].threshold.value), seconds,
            f"{federated['epochs_run']} epochs, {config.key_bits}-bit keys"
            + (", exact loss" if config.exact_loss else "")
            + (", Platt-calibrated" if parts[1].calibration is not None else "")))
    result.loss_history = federated["loss_history"]
    result.parameters = federated["parameters"]

    # The plaintext rows get the federated model's decision layer too (Platt calibration and threshold rule,
    # fitted the same way on the training rows), so that a difference in accuracy or log-loss is the
    # algorithm's, not a calibration one row has and the other lacks.
    step("start", "same algorithm, pooled plaintext", None)
    plain, seconds = _timed(lambda: _decided(_plain_parts(a_train, b_train, config), config, a_train, b_train))
    add(Row("same algorithm, pooled plaintext",
            model_metrics(model, y_test, _predict(plain, a_test, b_test), threshold=_threshold(plain)),
            seconds, _decision_note(plain)))
    step("start", "party B alone (same algorithm)", None)
    alone, seconds = _timed(lambda: _decided(_plain_parts(a_train, b_train, config, use_a=False), config,
                                             a_train, b_train))
    alone_predictions = _predict(alone, a_test, b_test)
    add(Row("party B alone (same algorithm)",
            model_metrics(model, y_test, alone_predictions, threshold=_threshold(alone)), seconds,
            _decision_note(alone)))
    result.curves = curves_for(model, y_test, predictions, alone_predictions)

    pooled_train = np.hstack([a_train.features, b_train.features])
    pooled_test = np.hstack([a_test.features, b_test.features])
    result.rows.extend(_sklearn_rows(model, pooled_train, b_train.labels, pooled_test, y_test, seed, step))

    for epsilon in epsilons:
        private = TrainingConfig.parse({**settings, "privacy": {"epsilon": epsilon}})
        step("start", f"federated, DP ε = {epsilon:g}", None)
        run, seconds = _timed(lambda: simulate(a_train, b_train, private, keypair=keypair, workers=workers))
        preds = _predict((_part_a(run), _part_b(run)), a_test, b_test)
        spent = run["privacy"]
        headline = "auc" if model == "logistic" else "r2"
        draws = [
            model_metrics(model, y_test, _predict(_plain_parts(a_train, b_train, private, noise_seeds=(2 * k, 2 * k + 1)),
                                                  a_test, b_test))[headline]
            for k in range(dp_draws)
        ]
        spread = (f"; {headline} over {dp_draws} noise draws: median {np.median(draws):.4f} "
                  f"[{min(draws):.4f}, {max(draws):.4f}]") if dp_draws else ""
        add(Row(f"federated, DP ε = {epsilon:g} (δ = {spent['delta']:g})",
                model_metrics(model, y_test, preds, threshold=_part_b(run).threshold.value),
                seconds, f"σ = {spent['noise_multiplier']:.3g}, ε spent {spent['epsilon']:.3g}{spread}"))
    return result


def _part_a(result: dict[str, Any]) -> ModelPartA:
    return ModelPartA.from_dict(result["model_parts"]["party_a"])


def _part_b(result: dict[str, Any]) -> ModelPartB:
    return ModelPartB.from_dict(result["model_parts"]["party_b"])


def parse_epsilons(text: str) -> tuple[float, ...]:
    """``"1,3,10"`` → (1.0, 3.0, 10.0); empty → no DP rows."""
    try:
        epsilons = tuple(float(e) for e in text.split(",") if e.strip())
    except ValueError as exc:
        raise ConfigError(f"--epsilons {text!r} is not a comma-separated list of numbers, e.g. 1,3,10") from exc
    if any(e <= 0 for e in epsilons):
        raise ConfigError(f"--epsilons {text!r}: every ε must be positive")
    return epsilons
