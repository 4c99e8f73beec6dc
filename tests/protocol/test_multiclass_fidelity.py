"""|macro AUC_FED − macro AUC_POOLED| ≤ 0.01 on FATE's 4-class vehicle example, trained one-vs-rest.

The reference is scikit-learn's one-vs-rest LogisticRegression on the pooled,
standardised features of the same rows (``OneVsRestClassifier``, which also
normalises the K sigmoids), as :mod:`tests.protocol.test_fidelity` does for binary labels.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from tests.conftest import TEST_KEY_BITS, fate_pair
from vfl.data.table import load_csv
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig

DELTA = 0.01


def test_vehicle_macro_auc_matches_pooled_one_vs_rest_scikit_learn(keypair):
    host, guest = fate_pair("vehicle_scale")
    table_a = load_csv(host, id_column="id")
    table_b = load_csv(guest, id_column="id", label_column="y", model="logistic")
    config = TrainingConfig(key_bits=TEST_KEY_BITS, epochs=10)

    result = simulate(table_a, table_b, config, keypair=keypair, workers=1)

    rows_a = table_a.rows_for(table_b.ids)
    X = StandardScaler().fit_transform(np.hstack([table_a.features[rows_a], table_b.features]))
    pooled = OneVsRestClassifier(LogisticRegression(max_iter=5000)).fit(X, table_b.labels)
    pooled_auc = roc_auc_score(table_b.labels, pooled.predict_proba(X), multi_class="ovr", average="macro")
    train = result["metrics"]["train"]
    assert result["multiclass"]["classes"] == ["0", "1", "2", "3"]
    assert abs(train["macro_auc"] - pooled_auc) <= DELTA
    assert set(train["per_class"]) == {"0", "1", "2", "3"}
    assert len(result["model_parts"]["party_a"]["parts"]) == 4
