"""What each feature party adds (Shapley values, leave-one-out) through `vfl.local.simulate`, with real encryption.

Every coalition is trained through the protocol on the job's aligned rows; the
data is made here: party B holds a weak feature, an "informative" party holds
most of the signal, a "noise" party holds columns unrelated to the label.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_KEY_BITS
from vfl.cli import main
from vfl.ml.config import TrainingConfig
from vfl.data.table import from_dataframe
from vfl.local.simulate import simulate

ROWS = 800
SETTINGS = dict(key_bits=TEST_KEY_BITS, epochs=8, validation_fraction=0.4, seed=1)


def parties(seed=7, rows=ROWS):
    rng = np.random.default_rng(seed)
    ids = [f"c{i:05d}" for i in range(rows)]
    x_b, x_a, x_n = rng.normal(size=(rows, 2)), rng.normal(size=(rows, 2)), rng.normal(size=(rows, 2))
    logit = 0.6 * x_b[:, 0] + 1.6 * x_a[:, 0] - 1.2 * x_a[:, 1]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    bank = pd.DataFrame({"id": ids, "income": x_b[:, 0], "tenure": x_b[:, 1], "y": y})
    shop = pd.DataFrame({"id": ids, "basket": x_a[:, 0], "returns": x_a[:, 1]})
    noise = pd.DataFrame({"id": ids, "n1": x_n[:, 0], "n2": x_n[:, 1]})
    return bank, shop, noise


def table(frame, source, label=None):
    return from_dataframe(frame, id_column="id", label_column=label, source=source)


def test_an_informative_party_is_clearly_positive_a_noise_party_near_zero_and_the_values_add_up(keypair):
    bank, shop, noise = parties()
    result = simulate([table(shop, "shop.csv"), table(noise, "noise.csv")], table(bank, "bank.csv", "y"),
                      TrainingConfig(**SETTINGS), keypair=keypair, contributions=True)
    c = result["contributions"]
    assert c["metric"] == "auc" and c["split"] == "validation" and c["method"] == "exact"
    assert [(p["party"], p["source"]) for p in c["parties"]] == [("A1", "shop.csv"), ("A2", "noise.csv")]
    assert c["full"] == result["metrics"]["validation"]["auc"]
    assert c["trainings"] == 2 and len(c["coalitions"]) == 3
    informative, noisy = c["parties"]
    assert informative["shapley"] > 0.1 and informative["leave_one_out"] > 0.1
    assert abs(noisy["shapley"]) < 0.02 and abs(noisy["leave_one_out"]) < 0.02
    # efficiency: by construction the Shapley values add up to what all parties add over B alone
    assert informative["shapley"] + noisy["shapley"] == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)
    # v(∅) is the bank alone on the same rows: below every coalition that holds the informative party
    with_shop = [x["value"] for x in c["coalitions"] if "A1" in x["parties"]]
    assert all(v > c["label_party_alone"] + 0.1 for v in with_shop)


def test_two_parties_with_the_same_columns_share_equally(keypair):
    bank, shop, _ = parties(seed=11, rows=600)
    twin = shop.rename(columns={"basket": "basket_copy", "returns": "returns_copy"})
    result = simulate([table(shop, "shop.csv"), table(twin, "twin.csv")], table(bank, "bank.csv", "y"),
                      TrainingConfig(**SETTINGS), keypair=keypair, contributions=True)
    first, second = result["contributions"]["parties"]
    assert first["shapley"] == pytest.approx(second["shapley"], abs=1e-12)
    assert first["shapley"] > 0.05
    assert first["leave_one_out"] == pytest.approx(second["leave_one_out"], abs=1e-12)
    c = result["contributions"]
    assert first["shapley"] + second["shapley"] == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)


def test_linear_regression_measures_r2_on_the_training_rows_without_a_split(keypair):
    bank, shop, _ = parties(seed=5, rows=300)
    bank = bank.assign(y=bank["income"] + 2 * shop["basket"] + 0.1)
    result = simulate(table(shop, "shop.csv"), table(bank, "bank.csv", "y"),
                      TrainingConfig(model="linear", key_bits=TEST_KEY_BITS, epochs=5), keypair=keypair,
                      contributions=True)
    c = result["contributions"]
    assert c["metric"] == "r2" and c["split"] == "train" and c["trainings"] == 0
    assert c["full"] == result["metrics"]["train"]["r2"]
    assert c["parties"][0]["shapley"] == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)
    assert c["parties"][0]["shapley"] > 0.5


def test_vfl_simulate_contributions_and_ledger_from_the_command_line(tmp_path, capsys):
    bank, shop, noise = parties(seed=3, rows=400)
    for name, frame in (("bank", bank), ("shop", shop), ("noise", noise)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    out, ledger = tmp_path / "result.json", tmp_path / "ledger"
    args = ["simulate", "--party-b", str(tmp_path / "bank.csv"), "--party-a", str(tmp_path / "shop.csv"),
            "--party-a", str(tmp_path / "noise.csv"), "--id-column", "id", "--key-bits", "1024", "--epochs", "5",
            "--validation-fraction", "0.3", "--contributions", "--ledger", str(ledger), "--out", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    c = result["contributions"]
    assert set(c) >= {"metric", "full", "label_party_alone", "parties"}
    assert [set(p) >= {"party", "source", "shapley", "leave_one_out"} for p in c["parties"]] == [True, True]
    assert [p["source"] for p in c["parties"]] == [str(tmp_path / "shop.csv"), str(tmp_path / "noise.csv")]
    printed = capsys.readouterr().out
    assert "shapley" in printed and "leave-one-out" in printed and "ledger: entry 0" in printed

    assert main(args) == 0  # a second job chains onto the first, with the same keys
    assert main(["ledger", "verify", str(ledger)]) == 0
    assert "2 entries, chain intact, 8 signatures verified" in capsys.readouterr().out
    assert main(["ledger", "show", str(ledger)]) == 0
    shown = capsys.readouterr().out
    assert "entry 1" in shown and "party A2 (A): dataset noise.csv" in shown and "signed by: B, A1, A2, C" in shown
    entries = [json.loads(line) for line in (ledger / "ledger.jsonl").read_text().splitlines()]
    assert entries[1]["previous"] == entries[0]["digest"]
    assert entries[1]["fields"]["contributions"]["parties"][0]["shapley"] == pytest.approx(c["parties"][0]["shapley"])
    assert "coalitions" not in entries[1]["fields"]["contributions"]
    assert [p["dataset"] for p in entries[0]["fields"]["parties"]] == ["bank.csv", "shop.csv", "noise.csv", None]


def test_permutation_sampling_through_the_protocol_adds_up_and_reports_standard_errors(keypair):
    bank, shop, noise = parties(seed=9, rows=400)
    result = simulate([table(shop, "shop.csv"), table(noise, "noise.csv")], table(bank, "bank.csv", "y"),
                      TrainingConfig(**SETTINGS), keypair=keypair, contributions=True, contribution_permutations=6,
                      contribution_seed=2)
    c = result["contributions"]
    assert c["method"] == "permutation sampling" and c["permutations"] == 6 and c["seed"] == 2
    assert all(p["standard_error"] >= 0 for p in c["parties"])
    assert sum(p["shapley"] for p in c["parties"]) == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)
    assert c["parties"][0]["shapley"] > c["parties"][1]["shapley"]


def test_fate_motor_host_2_adds_far_more_than_host_1(keypair):
    """FATE's three-party motor example (linear regression): what each host adds to the guest's R²."""
    from tests.conftest import fate_files
    from vfl.data.table import load_csv

    guest, host_1, host_2 = fate_files("motor_hetero_guest.csv", "motor_hetero_host_1.csv", "motor_hetero_host_2.csv")
    bank = load_csv(guest, id_column="idx", label_column="motor_speed", model="linear")
    hosts = [load_csv(host_1, id_column="idx"), load_csv(host_2, id_column="idx")]
    result = simulate(hosts, bank, TrainingConfig(model="linear", key_bits=TEST_KEY_BITS, epochs=30,
                                                  validation_fraction=0.2), keypair=keypair, contributions=True)
    c = result["contributions"]
    first, second = c["parties"]
    assert c["metric"] == "r2" and c["full"] > 0.9 and c["label_party_alone"] < 0.5
    assert second["shapley"] > 0.4 and 0 < first["shapley"] < 0.05  # the measured table of the README
    assert first["shapley"] + second["shapley"] == pytest.approx(c["full"] - c["label_party_alone"], abs=1e-12)
