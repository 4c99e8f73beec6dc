"""Real processes: SIGKILL party A, then B, then the arbiter during training; the job still ends right."""

from __future__ import annotations

import json
import signal
import ssl
import time

import httpx
import numpy as np
import pytest

from tests.helpers import get, serve
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.local.simulate import simulate

TRAINING = {"tol": 0, "batch_size": 100, "optimizer": "adam", "validation_fraction": 0.2}


# 2,500 customers, 16 epochs until 9801b5c cut them to 1,600 and 11 for time: they run again as `slow`.
# The exact loss adds the arbiter's shuffled scores to what a resume must replay: B shuffles anew, and the
# arbiter's ledger must accept the same batch's scores as the same multiset.
@pytest.mark.parametrize("population, epochs, kills, extra", [
    (1600, 11, [("party-a", 2), ("party-b", 5), ("arbiter", 8)], {}),
    (800, 7, [("arbiter", 2), ("party-b", 4), ("party-a", 5)], {"loss": "exact"}),
    pytest.param(2500, 16, [("party-a", 3), ("party-b", 7), ("arbiter", 11)], {}, marks=pytest.mark.slow),
], ids=["1600x11", "exact-loss-800x7", "2500x16"])
def test_killing_each_service_in_turn_mid_training_leaves_the_model_unchanged(tmp_path, keypair, population, epochs,
                                                                               kills, extra):
    training = {**TRAINING, "epochs": epochs, **extra}
    setup = write_demo_files(tmp_path, population=population, key_bits=1024, training=training)
    verify = ssl.create_default_context(cafile=setup["verify"])
    headers = {"Authorization": f"Bearer {setup['token']}"}  # party B's; each service has its own
    shop_headers = {"Authorization": f"Bearer {setup['tokens']['party-a']}"}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, timeout=30, verify=verify) as bank, \
             httpx.Client(base_url=setup["urls"]["party-a"], headers=shop_headers, timeout=30, verify=verify) as shop:
            job_id = bank.post("/v1/jobs", json=json.loads((tmp_path / "job.json").read_text())).json()["job_id"]
            for name, epoch in kills:
                while get(bank, f"/v1/jobs/{job_id}")["epoch"] < epoch:
                    time.sleep(0.02)
                processes[name].send_signal(signal.SIGKILL)
                processes[name].wait()
                processes[name] = serve(tmp_path, name)
            for _ in range(3000):
                status = get(bank, f"/v1/jobs/{job_id}")
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.1)
            model_a = get(shop, f"/v1/jobs/{job_id}/model")
            model_b = get(bank, f"/v1/jobs/{job_id}/model")
    shop_table = load_csv(tmp_path / "party-a" / "shop.csv", id_column="customer_id")
    bank_table = load_csv(tmp_path / "party-b" / "bank.csv", id_column="customer_id", label_column="default", model="logistic")
    reference = simulate(shop_table, bank_table, TrainingConfig(key_bits=1024, **training), keypair=keypair)

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] >= 3
    assert status["epoch"] == reference["epochs_run"] and status["stop_reason"] == reference["stop_reason"]
    assert np.allclose(model_a["weights"], reference["model_parts"]["party_a"]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(model_b["weights"], reference["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-12)
