"""vfl compare: every baseline on one split, the federated row equal to its plaintext twin."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vfl.cli import main
from vfl.local.compare import compare
from vfl.ml.config import TrainingConfig
from vfl.data.table import from_dataframe


@pytest.fixture(scope="module")
def breast_tables():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    ids = [f"p{i:04d}" for i in range(len(y))]
    frame_a = pd.DataFrame(X[:, :12], columns=[f"a{j}" for j in range(12)]).assign(id=ids)
    frame_b = pd.DataFrame(X[:, 12:], columns=[f"b{j}" for j in range(X.shape[1] - 12)]).assign(id=ids, y=y)
    return frame_a, frame_b


def test_compare_reports_every_baseline_on_the_same_split(breast_tables):
    # Arrange
    frame_a, frame_b = breast_tables
    table_a = from_dataframe(frame_a, id_column="id")
    table_b = from_dataframe(frame_b, id_column="id", label_column="y", model="logistic")

    # Act
    result = compare(table_a, table_b, model="logistic", dataset="breast", epsilons=(3.0,),
                     training={"epochs": 8}, dp_draws=2, key_bits=1024)  # 1024: cheap; metrics do not depend on it

    # Assert
    by_method = {row.method: row for row in result.rows}
    assert result.train_rows + result.test_rows == len(frame_a)
    assert len(result.rows) == 8  # federated, pooled plaintext, B alone, 4 x scikit-learn, 1 DP row
    federated = by_method["federated (vfl, Paillier-encrypted)"].metrics
    plaintext = by_method["same algorithm, pooled plaintext"].metrics
    # Encryption costs no accuracy: the federated row equals the same algorithm on pooled data.
    assert federated["auc"] == pytest.approx(plaintext["auc"], abs=1e-6)
    # Both rows have the same decision layer (Platt calibration, threshold), so they agree in every metric, not
    # only in the ranking: a difference in accuracy or log-loss would read as a cost of encryption.
    for metric in ("accuracy", "log_loss", "brier", "f1"):
        assert federated[metric] == pytest.approx(plaintext[metric], abs=1e-3), metric
    assert "Platt-calibrated" in by_method["same algorithm, pooled plaintext"].note
    assert federated["auc"] > 0.95
    assert abs(federated["auc"] - by_method["pooled logistic regression (scikit-learn)"].metrics["auc"]) < 0.03
    private = next(row for row in result.rows if row.method.startswith("federated, DP ε = 3"))
    assert "ε spent" in private.note and "noise draws" in private.note
    for row in result.rows:
        assert set(result.columns) <= set(row.metrics) and row.seconds >= 0
    table = result.markdown()
    assert table.count("\n") == len(result.rows) + 1
    assert len(result.loss_history) == 8 and len(result.parameters["party A"]["history"]) == 8


def test_vfl_compare_cli_writes_the_table_and_json(tmp_path, breast_tables, capsys):
    # Arrange
    frame_a, frame_b = breast_tables
    frame_a.to_csv(tmp_path / "a.csv", index=False)
    frame_b.to_csv(tmp_path / "b.csv", index=False)

    # Act
    code = main(["compare", "--party-a", str(tmp_path / "a.csv"), "--party-b", str(tmp_path / "b.csv"),
                 "--id-column", "id", "--epsilons", "", "--epochs", "3", "--name", "cancer", "--key-bits", "1024",
                 "--out", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")])

    # Assert
    assert code == 0
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["dataset"] == "cancer" and len(saved["rows"]) == 7
    assert "pooled random forest (scikit-learn)" in (tmp_path / "t.md").read_text()
    said = capsys.readouterr()
    assert "cancer:" in said.out
    assert np.isfinite([row["metrics"]["auc"] for row in saved["rows"]]).all()
    # Each model says when it starts and how it ended, on stderr (a comparison on real data takes minutes).
    progress = [line for line in said.err.splitlines() if line.startswith("compare: [")]
    assert progress[0] == "compare: [1/7] federated (vfl, Paillier-encrypted) ..."
    assert len(progress) == 14 and progress[-1].startswith("compare: [7/7] pooled decision tree (scikit-learn): auc ")


def test_compare_and_figures_for_linear_regression(diabetes):
    # Arrange
    from vfl.report.figures import figures_for
    from vfl.report.html import render
    from vfl.report.summary import summary_from_simulation
    from vfl.local.simulate import simulate

    X_a, X_b, y = diabetes
    ids = [f"d{i:03d}" for i in range(len(y))]
    table_a = from_dataframe(pd.DataFrame(X_a, columns=["a0", "a1", "a2", "a3"]).assign(id=ids), id_column="id")
    frame_b = pd.DataFrame(X_b, columns=[f"b{j}" for j in range(X_b.shape[1])]).assign(id=ids, y=y)
    table_b = from_dataframe(frame_b, id_column="id", label_column="y", model="linear")

    # Act
    result = compare(table_a, table_b, model="linear", dataset="diabetes", epsilons=(), training={"epochs": 20},
                     key_bits=1024)
    simulated = simulate(table_a, table_b, TrainingConfig(model="linear", epochs=5, key_bits=1024))
    summary = summary_from_simulation(simulated, title="diabetes")
    figures = figures_for(summary)
    page = render(summary, figures)

    # Assert
    federated, sklearn = result.rows[0].metrics, result.rows[3].metrics
    assert result.columns == ["mse", "mae", "r2"]
    assert abs(federated["r2"] - sklearn["r2"]) < 0.02 and federated["r2"] > 0.3
    assert set(figures) == {"loss.png", "parameters.png", "residuals.png"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    assert summary["curves"]["kind"] == "scatter" and page.count('class="figure"') == 3


def test_a_bad_epsilon_list_is_a_clear_usage_error(capsys):
    code = main(["compare", "--party-a", "a.csv", "--party-b", "b.csv", "--id-column", "id", "--epsilons", "1,x"])

    assert code == 2
    assert "not a comma-separated list of numbers" in capsys.readouterr().err


def test_vfl_compare_with_the_exact_loss_keeps_the_federated_row_equal_to_its_plaintext_twin(tmp_path, breast_tables):
    frame_a, frame_b = breast_tables
    frame_a.to_csv(tmp_path / "a.csv", index=False)
    frame_b.to_csv(tmp_path / "b.csv", index=False)

    code = main(["compare", "--party-a", str(tmp_path / "a.csv"), "--party-b", str(tmp_path / "b.csv"),
                 "--id-column", "id", "--epsilons", "", "--epochs", "3", "--key-bits", "1024", "--loss", "exact",
                 "--quiet", "--json", str(tmp_path / "t.json")])

    assert code == 0
    rows = {row["method"]: row for row in json.loads((tmp_path / "t.json").read_text())["rows"]}
    federated = rows["federated (vfl, Paillier-encrypted)"]
    assert "exact loss" in federated["note"]
    assert federated["metrics"]["auc"] == pytest.approx(rows["same algorithm, pooled plaintext"]["metrics"]["auc"],
                                                        abs=1e-4)
