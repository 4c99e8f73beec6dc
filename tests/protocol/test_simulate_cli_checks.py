"""What `vfl simulate` prints and refuses: labelled metrics per split, too few training rows, a missing --out
folder, keys below the minimum."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vfl.cli import main


def write_pair(folder, rows: int, features_a: int = 2, features_b: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"c{i:04d}" for i in range(rows)]
    a = pd.DataFrame(rng.normal(size=(rows, features_a)), columns=[f"a{i}" for i in range(features_a)])
    b = pd.DataFrame(rng.normal(size=(rows, features_b)), columns=[f"b{i}" for i in range(features_b)])
    y = ((a.sum(axis=1) + b.sum(axis=1) + rng.normal(size=rows)) > 0).astype(int)
    a.assign(id=ids).to_csv(folder / "a.csv", index=False)
    b.assign(id=ids, y=y).to_csv(folder / "b.csv", index=False)
    return folder / "a.csv", folder / "b.csv"


def simulate(folder, *flags: str, out=None):
    path_a, path_b = folder / "a.csv", folder / "b.csv"
    return main(["simulate", "--party-a", str(path_a), "--party-b", str(path_b), "--id-column", "id",
                 "--key-bits", "1024", "--quiet", "--out", str(out or folder / "r.json"), *flags])


def test_the_summary_names_each_split_and_its_rows(tmp_path, capsys):
    write_pair(tmp_path, 300)

    code = simulate(tmp_path, "--validation-fraction", "0.2", "--epochs", "3")

    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("300 aligned rows, 3 epochs (max_epochs), ")
    assert lines[1].startswith("  train metrics (240 rows): auc ")
    assert lines[2].startswith("  validation metrics (60 rows): auc ")
    assert "warning" not in err and "warnings" not in json.loads((tmp_path / "r.json").read_text())


def test_too_few_training_rows_are_warned_about(tmp_path, capsys):
    write_pair(tmp_path, 300)

    code = simulate(tmp_path, "--validation-fraction", "0.99", "--epochs", "2")

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "warning: trained on only 3 rows for 4 parameters" in err
    assert "lower --validation-fraction (297 of the 300 aligned rows are held out)" in err
    assert json.loads((tmp_path / "r.json").read_text())["warnings"][0].startswith("trained on only 3 rows")
    assert "  train metrics (3 rows)" in out


def test_fewer_than_ten_rows_per_parameter_are_warned_about(tmp_path, capsys):
    write_pair(tmp_path, 80, features_a=6, features_b=3)  # 6 + 3 weights and an intercept: 10 parameters

    code = simulate(tmp_path, "--epochs", "2")

    _, err = capsys.readouterr()
    assert code == 0, err
    assert "trained on only 80 rows for 10 parameters" in err and "here 100" in err


def test_out_in_a_missing_folder_is_refused_before_any_work(tmp_path, capsys):
    write_pair(tmp_path, 50)
    missing = tmp_path / "results" / "r.json"

    code = simulate(tmp_path, out=missing)
    report = simulate(tmp_path, "--report", str(tmp_path / "nowhere" / "report.html"))

    err = capsys.readouterr().err
    assert code == report == 2
    assert f"--out {missing}: the folder {missing.parent} does not exist" in err and "mkdir -p" in err
    assert "--report" in err and "nowhere does not exist" in err
    assert not missing.parent.exists() and not (tmp_path / "nowhere").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("how", ["flag", "config"])
def test_keys_below_the_minimum_are_a_clear_error(tmp_path, capsys, how):
    write_pair(tmp_path, 50)
    (tmp_path / "training.json").write_text(json.dumps({"key_bits": 512}))
    flags = ["--key-bits", "512"] if how == "flag" else ["--config", str(tmp_path / "training.json")]

    path_a, path_b = tmp_path / "a.csv", tmp_path / "b.csv"
    code = main(["simulate", "--party-a", str(path_a), "--party-b", str(path_b), "--id-column", "id", "--quiet",
                 "--out", str(tmp_path / "r.json"), *flags])

    err = capsys.readouterr().err
    assert code == 2
    given = "--key-bits 512" if how == "flag" else f"key_bits 512 in {tmp_path / 'training.json'}"
    assert f"{given} is too small" in err and "at least 1024 bits" in err and "Traceback" not in err
