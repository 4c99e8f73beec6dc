"""|V_FED − V_SUM| < δ: the federated model scores like one trained on pooled data.

The reference is scikit-learn on the pooled, standardised features:
LogisticRegression (training AUC) and LinearRegression (training R²), δ = 0.01.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine, make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from tests.conftest import TEST_KEY_BITS, fate_pair
from vfl.ml.config import TrainingConfig
from vfl.data.table import from_dataframe, load_csv
from vfl.local.simulate import simulate

DELTA = 0.01


def pooled_score(model: str, X: np.ndarray, y: np.ndarray) -> float:
    X = StandardScaler().fit_transform(X)
    if model == "logistic":
        return roc_auc_score(y, LogisticRegression(max_iter=5000).fit(X, y).decision_function(X))
    return r2_score(y, LinearRegression().fit(X, y).predict(X))


def federated_score(model: str, X_a, X_b, y, keypair, **settings) -> tuple[float, dict]:
    ids = [f"id{i}" for i in range(len(y))]
    table_a = from_dataframe(pd.DataFrame(X_a).assign(id=ids), id_column="id")
    table_b = from_dataframe(pd.DataFrame(X_b).assign(id=ids, y=y), id_column="id", label_column="y", model=model)
    config = TrainingConfig(model=model, key_bits=TEST_KEY_BITS, **settings)
    result = simulate(table_a, table_b, config, keypair=keypair, workers=1)
    metric = "auc" if model == "logistic" else "r2"
    return result["metrics"]["train"][metric], result


def split_columns(X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random vertical split: each party gets a random, non-empty share of the columns."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(X.shape[1])
    cut = rng.integers(1, X.shape[1])
    return X[:, order[:cut]], X[:, order[cut:]]


def bundled_cases():
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer", "logistic", X, y.astype(float)
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", "linear", X, y
    X, y = load_wine(return_X_y=True)
    yield "wine_class0", "logistic", X, (y == 0).astype(float)
    X, y = load_digits(return_X_y=True)
    keep = (y == 3) | (y == 8)
    yield "digits_3_vs_8", "logistic", X[keep][:, X[keep].std(axis=0) > 0], (y[keep] == 8).astype(float)
    X, y = make_classification(n_samples=600, n_features=12, n_informative=6, weights=[0.8], random_state=3)
    yield "synthetic_imbalanced", "logistic", X, y.astype(float)
    X, y = make_regression(n_samples=500, n_features=9, noise=25.0, bias=300.0, random_state=4)
    yield "synthetic_regression", "linear", X * np.arange(1, 10), y


CASES = list(bundled_cases())


@pytest.mark.parametrize("name, model, X, y", CASES, ids=[c[0] for c in CASES])
# A second random split of every dataset is `slow` (make test-system); the first keeps each dataset in make test.
@pytest.mark.parametrize("split_seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_federated_matches_pooled_scikit_learn(keypair, name, model, X, y, split_seed):
    X_a, X_b = split_columns(X, split_seed)

    score, result = federated_score(model, X_a, X_b, y, keypair, epochs=25)

    assert abs(score - pooled_score(model, X, y)) < DELTA, result["stop_reason"]


FATE_CASES = [
    ("breast", "logistic", "id", "y", {}),
    # 30,000 rows: the one FATE pair slow enough (about 40 s) to run in make test-system only.
    pytest.param("default_credit", "logistic", "id", "y", {"epochs": 8}, marks=pytest.mark.slow),
    ("motor", "linear", "idx", "motor_speed", {}),
    ("student", "linear", "id", "y", {}),
]


@pytest.mark.parametrize("name, model, id_column, label, settings", FATE_CASES,
                         ids=["breast", "default_credit", "motor", "student"])
def test_fate_pairs_match_pooled_scikit_learn(keypair, name, model, id_column, label, settings):
    host, guest = fate_pair(name)
    table_a = load_csv(host, id_column=id_column)
    table_b = load_csv(guest, id_column=id_column, label_column=label, model=model)
    config = TrainingConfig(model=model, key_bits=TEST_KEY_BITS, **{"epochs": 40, **settings})

    result = simulate(table_a, table_b, config, keypair=keypair)

    rows_a = table_a.rows_for(table_b.ids)
    pooled = pooled_score(model, np.hstack([table_a.features[rows_a], table_b.features]), table_b.labels)
    metric = "auc" if model == "logistic" else "r2"
    assert abs(result["metrics"]["train"][metric] - pooled) < DELTA
