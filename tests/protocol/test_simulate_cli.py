"""`vfl simulate` end to end on CSV files, as a user runs it."""

import json

import numpy as np
import pandas as pd
import pytest

from vfl.cli import main


@pytest.fixture
def csv_pair(tmp_path, breast):
    X_a, X_b, y = breast
    ids = np.array([f"c{i:04d}" for i in range(len(y))])
    # Party A lacks the first 50 customers, party B the last 30: a partial overlap.
    frame_a = pd.DataFrame(X_a, columns=[f"shop{i}" for i in range(X_a.shape[1])]).assign(id=ids).iloc[50:]
    frame_b = pd.DataFrame(X_b, columns=[f"bank{i}" for i in range(X_b.shape[1])]).assign(id=ids, y=y.astype(int))
    frame_b = frame_b.iloc[:-30]
    path_a, path_b = tmp_path / "a.csv", tmp_path / "b.csv"
    frame_a.sample(frac=1, random_state=0).to_csv(path_a, index=False)  # different row orders on each side
    frame_b.to_csv(path_b, index=False)
    return path_a, path_b, len(y) - 80


def test_simulate_writes_the_result_json(csv_pair, tmp_path, capsys):
    path_a, path_b, overlap = csv_pair
    out = tmp_path / "result.json"

    code = main(["simulate", "--model", "logistic", "--party-a", str(path_a), "--party-b", str(path_b),
                 "--id-column", "id", "--label-column", "y", "--key-bits", "1024", "--epochs", "6",
                 "--validation-fraction", "0.2", "--seed", "3", "--out", str(out),
                 "--report", str(tmp_path / "report.html")])

    assert code == 0
    result = json.loads(out.read_text())
    assert result["aligned_rows"] == overlap
    assert result["epochs_run"] == len(result["loss_history"]) == 6
    assert result["seconds"] > 0
    for split in ("train", "validation"):
        assert set(result["metrics"][split]) >= {"auc", "ks", "accuracy", "precision", "recall", "f1"}
    assert result["metrics"]["train"]["auc"] > 0.95
    err = capsys.readouterr().err
    assert "epoch 1/6" in err and "epoch 6/6" in err and "[####" in err
    # The alignment is announced before it runs, and the training before its first epoch.
    lines = err.splitlines()
    assert lines[0].startswith("aligning: RSA PSI with 1024-bit keys between party B (")
    assert lines[1].startswith(f"aligned: {overlap} rows in ") and "at most 6 epochs" in lines[1]
    page = (tmp_path / "report.html").read_text()
    figures = [f'alt="{name}.png"' for name in ("roc_ks", "gains", "calibration", "loss", "parameters")]
    assert all(f in page for f in figures) and "Alignment (RSA blind-signature PSI)" in page


def test_simulate_a_private_job_reports_the_privacy_spent(csv_pair, tmp_path):
    path_a, path_b, _ = csv_pair
    config = tmp_path / "private.json"
    config.write_text(json.dumps({"privacy": {"epsilon": 2.0}, "epochs": 5}))
    out = tmp_path / "result.json"

    code = main(["simulate", "--model", "logistic", "--party-a", str(path_a), "--party-b", str(path_b),
                 "--id-column", "id", "--key-bits", "1024", "--config", str(config), "--out", str(out), "--quiet"])

    result = json.loads(out.read_text())
    assert code == 0
    assert result["epochs_run"] == 5 and result["config"]["optimizer"] == "adam"
    assert result["privacy"]["epsilon"] <= 2.0 and result["privacy"]["steps"] == 5
    assert result["privacy"]["noise_multiplier"] > 0 and result["metrics"]["train"]["auc"] > 0.6


def test_simulate_linear_reports_regression_metrics(tmp_path, diabetes):
    X_a, X_b, y = diabetes
    ids = [str(i) for i in range(len(y))]
    pd.DataFrame(X_a).add_prefix("a").assign(id=ids).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(X_b).add_prefix("b").assign(id=ids, target=y).to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "r.json"

    code = main(["simulate", "--model", "linear", "--party-a", str(tmp_path / "a.csv"), "--party-b",
                 str(tmp_path / "b.csv"), "--id-column", "id", "--label-column", "target", "--key-bits", "1024",
                 "--epochs", "10", "--out", str(out), "--quiet"])

    metrics = json.loads(out.read_text())["metrics"]["train"]
    assert code == 0
    assert set(metrics) >= {"mse", "rmse", "mae", "r2"}
    assert metrics["r2"] > 0.45


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--label-column": "nope"}, "no label column 'nope'"),
        ({"--id-column": "ID"}, "no ID column 'ID'"),
        ({"--learning-rate": "0"}, "learning_rate"),
        ({"--label-column": "bank0"}, "distinct values, e.g."),
    ],
    ids=["label-column", "id-column", "bad-learning-rate", "non-binary-label"],
)
def test_bad_input_exits_2_with_a_readable_message(csv_pair, tmp_path, capsys, change, message):
    path_a, path_b, _ = csv_pair
    flags = {"--model": "logistic", "--party-a": str(path_a), "--party-b": str(path_b), "--id-column": "id",
             "--label-column": "y", "--key-bits": "1024", "--out": str(tmp_path / "r.json"), **change}

    code = main(["simulate", *[part for pair in flags.items() for part in pair]])

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_no_overlap_is_a_clear_error(tmp_path, capsys):
    pd.DataFrame({"id": ["a", "b"], "f": [1.0, 2.0]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"id": ["c", "d"], "g": [1.0, 2.0], "y": [0, 1]}).to_csv(tmp_path / "b.csv", index=False)

    code = main(["simulate", "--model", "logistic", "--party-a", str(tmp_path / "a.csv"), "--party-b",
                 str(tmp_path / "b.csv"), "--id-column", "id", "--key-bits", "1024", "--out", str(tmp_path / "r.json")])

    assert code == 2
    assert "no ID in common" in capsys.readouterr().err
