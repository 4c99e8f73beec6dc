"""k feature parties with partly overlapping IDs score like one model on the pooled data (δ = 0.01)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from tests.conftest import TEST_KEY_BITS, fate_files
from tests.protocol.test_fidelity import DELTA, pooled_score
from vfl.ml.config import TrainingConfig
from vfl.data.table import from_dataframe, load_csv
from vfl.local.simulate import simulate


def overlapping_tables(model: str, X: np.ndarray, y: np.ndarray, k: int, seed: int):
    """B and k feature parties on a random column split; each party misses a random 10% of the people."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(len(y))])
    blocks = np.array_split(rng.permutation(X.shape[1]), k + 1)
    keep = [rng.random(len(y)) > 0.1 for _ in range(k + 1)]

    def frame(block, rows, **extra):
        return pd.DataFrame(X[rows][:, block], columns=[f"x{j}" for j in block]).assign(id=ids[rows], **extra)

    b_rows = keep[0]
    table_b = from_dataframe(frame(blocks[0], b_rows, y=y[b_rows]), id_column="id", label_column="y", model=model)
    tables = [from_dataframe(frame(blocks[h], keep[h]).sample(frac=1.0, random_state=h), id_column="id")
              for h in range(1, k + 1)]
    common = np.logical_and.reduce(keep)
    return tables, table_b, common


@pytest.mark.parametrize("k", [2, pytest.param(3, marks=pytest.mark.slow)])  # k = 3 also in test_multiparty
@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_k_parties_with_partial_overlap_match_pooled_scikit_learn(keypair, model, k):
    X, y = load_breast_cancer(return_X_y=True) if model == "logistic" else load_diabetes(return_X_y=True)
    tables, table_b, common = overlapping_tables(model, X, y.astype(float), k, seed=k)
    config = TrainingConfig(model=model, key_bits=TEST_KEY_BITS, epochs=25)

    result = simulate(tables, table_b, config, keypair=keypair, workers=1)

    assert result["aligned_rows"] == int(common.sum())
    assert len(result["feature_parties"]) == k and len(result["model_parts"]) == k + 1
    assert len(result["loss_history"]) == result["epochs_run"]
    metric = "auc" if model == "logistic" else "r2"
    pooled = pooled_score(model, X[common], y[common].astype(float))
    assert abs(result["metrics"]["train"][metric] - pooled) <= DELTA


def test_fate_motor_trains_as_a_three_party_linear_regression(keypair):
    guest, host_1, host_2 = fate_files("motor_hetero_guest.csv", "motor_hetero_host_1.csv", "motor_hetero_host_2.csv")
    table_b = load_csv(guest, id_column="idx", label_column="motor_speed", model="linear")
    tables = [load_csv(host_1, id_column="idx"), load_csv(host_2, id_column="idx")]
    config = TrainingConfig(model="linear", key_bits=TEST_KEY_BITS, epochs=40, validation_fraction=0.2)

    result = simulate(tables, table_b, config, keypair=keypair)

    rows = [t.rows_for(table_b.ids) for t in tables]
    pooled_X = np.hstack([t.features[r] for t, r in zip(tables, rows)] + [table_b.features])
    assert result["aligned_rows"] == len(table_b.ids)
    assert abs(result["metrics"]["train"]["r2"] - pooled_score("linear", pooled_X, table_b.labels)) <= DELTA
    assert result["validation_loss_history"], "the validation loss is computed with two feature parties"


def test_cli_takes_party_a_once_per_feature_party(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    ids = [f"p{i}" for i in range(n)]
    X = rng.normal(size=(n, 4))
    y = (X.sum(axis=1) + rng.normal(size=n) > 0).astype(int)
    pd.DataFrame({"cid": ids, "b0": X[:, 0], "y": y}).to_csv(tmp_path / "bank.csv", index=False)
    pd.DataFrame({"shop_id": ids, "s0": X[:, 1], "s1": X[:, 2]}).to_csv(tmp_path / "shop.csv", index=False)
    pd.DataFrame({"telco_id": ids, "t0": X[:, 3]}).to_csv(tmp_path / "telco.csv", index=False)
    out = tmp_path / "result.json"

    done = subprocess.run(
        [sys.executable, "-c", "import sys; from vfl.cli import main; sys.exit(main())", "simulate", "--party-b", str(tmp_path / "bank.csv"),
         "--party-a", str(tmp_path / "shop.csv"), "--party-a", str(tmp_path / "telco.csv"),
         "--id-column", "cid", "--id-column", "shop_id", "--id-column", "telco_id",
         "--key-bits", "1024", "--epochs", "3", "--workers", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["aligned_rows"] == n
    assert [p["source"].endswith(name) for p, name in zip(result["feature_parties"], ["shop.csv", "telco.csv"])] == [True, True]
    assert set(result["model_parts"]) == {"party_a1", "party_a2", "party_b"}
    assert set(result) >= {"aligned_rows", "metrics", "loss_history", "stop_reason", "model_parts"}
