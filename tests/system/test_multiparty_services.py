"""Several feature parties as real `vfl serve` processes: four and five services (B, k feature parties, C).

A job trains to success and predicts, with the model of `vfl.local.simulate` on the same
files; a refusal by the second feature party withdraws the job everywhere; a
feature party killed mid-training and restarted resumes the job at all four, to
the same model; with three feature parties, kills of the arbiter and of party B
are ridden out the same way.
"""

from __future__ import annotations

import signal
import ssl
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.helpers import add_limits, get, serve
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.demo.services import services_in, wait_healthy, write_demo_files, running_services
from vfl.local.simulate import simulate

FEATURE_PARTIES = ("shop", "telco")
TRAINING = {"epochs": 6, "tol": 0, "batch_size": 150, "optimizer": "adam", "validation_fraction": 0.2}
FAST = {"heartbeat": 0.5}


def clients(setup):
    verify = ssl.create_default_context(cafile=setup["verify"])
    return {name: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {setup['tokens'][name]}"},
                               timeout=60, verify=verify)
            for name, url in setup["urls"].items()}


def wait_final(client, job_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get(client, f"/v1/jobs/{job_id}")
        if status["state"] in ("succeeded", "failed", "cancelled", "damaged"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def kill_at_epoch(bank, processes, job_id, victim, epoch, restart_in=None):
    """SIGKILL one service once party B reports ``epoch``; start it again from ``restart_in`` if given."""
    while (now := get(bank, f"/v1/jobs/{job_id}"))["epoch"] < epoch:
        assert now["state"] in ("pending", "aligning", "training"), now
        time.sleep(0.02)
    processes[victim].send_signal(signal.SIGKILL)
    processes[victim].wait()
    if restart_in is not None:
        processes[victim] = serve(restart_in, victim)


def reference(tmp_path, keypair, partners=FEATURE_PARTIES):
    tables = [load_csv(tmp_path / name / f"{name}.csv", id_column="customer_id") for name in partners]
    bank = load_csv(tmp_path / "party-b" / "bank.csv", id_column="customer_id", label_column="default",
                    model="logistic")
    return simulate(tables, bank, TrainingConfig(key_bits=1024, **TRAINING), keypair=keypair)


def joint_ids(tmp_path, partners=FEATURE_PARTIES):
    ids = set(pd.read_csv(tmp_path / "party-b" / "bank.csv", dtype=str)["customer_id"])
    for name in partners:
        ids &= set(pd.read_csv(tmp_path / name / f"{name}.csv", dtype=str)["customer_id"])
    return sorted(ids)


@pytest.mark.parametrize("psi", [None, {"protocol": "ecdh", "unbalanced": True},
                                 {"protocol": "ecdh", "unbalanced": True, "large_side": "feature"}],
                         ids=["rsa", "unbalanced-ecdh", "unbalanced-ecdh-feature-large"])
def test_four_processes_train_two_feature_parties_and_predict(tmp_path, keypair, psi):
    if psi is not None:
        from psi import ec
        from vfl.errors import ConfigError
        try:
            ec._sodium()
        except ConfigError as exc:
            pytest.skip(f"no usable libsodium: {exc}")
    setup = write_demo_files(tmp_path, population=1200, key_bits=1024, training=TRAINING, feature_parties=2)
    # unbalanced: the large side keeps an offline set per pair (B one per feature party, or each feature party
    # its own for B); each pair is its own alignment, and the rows, and so the model, are RSA's
    if psi is not None:
        setup["job"] = {**setup["job"], "psi": {**setup["job"].get("psi", {}), **psi}}
    if psi is not None and psi.get("large_side") == "feature":  # each feature party agrees to be the large side
        for name in FEATURE_PARTIES:
            config = tmp_path / f"{name}.toml"
            config.write_text(config.read_text() + "\n[psi]\naccept_large_side = true\n")
    assert services_in(tmp_path) == ["arbiter", "shop", "telco", "party-b"]
    assert [p["peer"] for p in setup["job"]["feature_parties"]] == list(FEATURE_PARTIES)
    common = joint_ids(tmp_path)

    with running_services(tmp_path) as processes:
        assert len(processes) == 4
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        http = clients(setup)
        try:
            submitted = http["party-b"].post("/v1/jobs", json=setup["job"])
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["job_id"]
            status = wait_final(http["party-b"], job_id)
            predicted = http["party-b"].post(f"/v1/jobs/{job_id}/predict", json={"ids": common[:5]}).json()
            others = {name: http[name].get(f"/v1/jobs/{job_id}").json() for name in ("shop", "telco", "arbiter")}
            models = {name: http[name].get(f"/v1/jobs/{job_id}/model").json() for name in (*FEATURE_PARTIES, "party-b")}
        finally:
            for client in http.values():
                client.close()
    expected = reference(tmp_path, keypair)

    assert status["state"] == "succeeded", status["error"]
    assert all(o["state"] == "succeeded" for o in others.values()), others
    assert status["alignment"]["intersection"] == len(common) == expected["aligned_rows"]
    assert [p["pairwise_intersection"] for p in status["alignment"]["feature_parties"]] == [
        others[name]["alignment"]["pairwise_intersection"] for name in FEATURE_PARTIES]
    assert all(others[name]["n_rows"] == len(common) for name in FEATURE_PARTIES)
    assert status["roster"] == {"features": list(FEATURE_PARTIES), "label": "party-b", "arbiter": "arbiter"}
    assert status["epoch"] == expected["epochs_run"] and status["stop_reason"] == expected["stop_reason"]
    assert status["loss_history"] == pytest.approx(expected["loss_history"], abs=1e-12)
    for name, key in zip(FEATURE_PARTIES, ("party_a1", "party_a2")):
        assert np.allclose(models[name]["weights"], expected["model_parts"][key]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(models["party-b"]["weights"], expected["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    for split in ("train", "validation"):
        assert status["metrics"][split]["auc"] == pytest.approx(expected["metrics"][split]["auc"], abs=1e-9)
    assert [p["id"] for p in predicted["predictions"]] == common[:5]
    assert all(p["status"] == "ok" and 0 < p["score"] < 1 for p in predicted["predictions"])
    assert set(status["feature_convergence"]) == set(FEATURE_PARTIES)
    if psi is not None:
        assert status["alignment"]["method"] == "ecdh-x25519-unbalanced-psi"
        at_feature_parties = "sent" if psi.get("large_side") == "feature" else "received"
        assert all(others[name]["alignment"]["offline_set"] == at_feature_parties for name in FEATURE_PARTIES)
        assert [p["offline_set"] for p in status["alignment"]["feature_parties"]] == (
            ["received"] * 2 if psi.get("large_side") == "feature" else ["sent"] * 2)


def test_a_refusal_by_the_second_feature_party_withdraws_the_job_everywhere(tmp_path):
    setup = write_demo_files(tmp_path, population=300, key_bits=1024, training={"epochs": 2}, feature_parties=2)
    job = {**setup["job"], "job_id": "refused",
           "feature_parties": [{"peer": "shop", "dataset": "behaviour"}, {"peer": "telco", "dataset": "nope"}]}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        http = clients(setup)
        try:
            answer = http["party-b"].post("/v1/jobs", json=job)
            listed = {name: [j["job_id"] for j in client.get("/v1/jobs").json()["jobs"]]
                      for name, client in http.items()}
        finally:
            for client in http.values():
                client.close()

    assert answer.status_code == 422 and "no dataset named 'nope'" in answer.json()["detail"], answer.text
    assert listed == {name: [] for name in setup["urls"]}
    assert not any((tmp_path / "data" / name / "jobs" / "refused").exists() for name in setup["urls"])


@pytest.mark.slow  # 10+ s; the tier also keeps a sibling test of the same path
def test_a_feature_party_killed_mid_training_resumes_the_job_at_all_four_to_the_same_model(tmp_path, keypair):
    setup = write_demo_files(tmp_path, population=1200, key_bits=1024, training=TRAINING, feature_parties=2)
    add_limits(tmp_path, {name: FAST for name in setup["urls"]})

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        http = clients(setup)
        try:
            job_id = http["party-b"].post("/v1/jobs", json=setup["job"]).json()["job_id"]
            kill_at_epoch(http["party-b"], processes, job_id, "telco", 2, restart_in=tmp_path)
            status = wait_final(http["party-b"], job_id)
            others = {name: get(http[name], f"/v1/jobs/{job_id}") for name in ("shop", "telco", "arbiter")}
            models = {name: get(http[name], f"/v1/jobs/{job_id}/model") for name in (*FEATURE_PARTIES, "party-b")}
        finally:
            for client in http.values():
                client.close()
    expected = reference(tmp_path, keypair)

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] >= 1
    assert all(o["state"] == "succeeded" for o in others.values()), others
    assert status["epoch"] == expected["epochs_run"]
    for name, key in zip(FEATURE_PARTIES, ("party_a1", "party_a2")):
        assert np.allclose(models[name]["weights"], expected["model_parts"][key]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(models["party-b"]["weights"], expected["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)


def test_a_feature_party_killed_for_good_fails_the_job_at_every_other_party(tmp_path):
    setup = write_demo_files(tmp_path, population=1200, key_bits=1024, training=TRAINING, feature_parties=2)
    fast = {**FAST, "peer_timeout": 2.0, "request_timeout": 5.0}
    add_limits(tmp_path, {name: fast for name in setup["urls"]})

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        http = clients(setup)
        try:
            job_id = http["party-b"].post("/v1/jobs", json=setup["job"]).json()["job_id"]
            kill_at_epoch(http["party-b"], processes, job_id, "telco", 2)
            status = wait_final(http["party-b"], job_id, timeout=120)
            others = {name: wait_final(http[name], job_id, timeout=60) for name in ("shop", "arbiter")}
        finally:
            for client in http.values():
                client.close()

    assert status["state"] == "failed" and "telco" in status["error"], status
    assert all(o["state"] == "failed" for o in others.values()), others


def test_five_processes_train_three_feature_parties_through_a_crash_of_the_arbiter_and_of_party_b(
        tmp_path, keypair):
    partners = ("shop", "telco", "utility")
    setup = write_demo_files(tmp_path, population=1200, key_bits=1024, training=TRAINING, feature_parties=3)
    add_limits(tmp_path, {name: FAST for name in setup["urls"]})
    common = joint_ids(tmp_path, partners)

    with running_services(tmp_path) as processes:
        assert list(processes) == ["arbiter", *partners, "party-b"]
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        http = clients(setup)
        try:
            job_id = http["party-b"].post("/v1/jobs", json=setup["job"]).json()["job_id"]
            for victim, epoch in (("arbiter", 2), ("party-b", 4)):
                kill_at_epoch(http["party-b"], processes, job_id, victim, epoch, restart_in=tmp_path)
            status = wait_final(http["party-b"], job_id)
            predicted = http["party-b"].post(f"/v1/jobs/{job_id}/predict", json={"ids": common[:4]}).json()
            models = {name: get(http[name], f"/v1/jobs/{job_id}/model") for name in (*partners, "party-b")}
        finally:
            for client in http.values():
                client.close()
    expected = reference(tmp_path, keypair, partners)

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] >= 2
    assert status["alignment"]["intersection"] == len(common) == expected["aligned_rows"]
    assert status["loss_history"] == pytest.approx(expected["loss_history"], abs=1e-12)
    for h, name in enumerate(partners, start=1):
        assert np.allclose(models[name]["weights"], expected["model_parts"][f"party_a{h}"]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(models["party-b"]["weights"], expected["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert [p["status"] for p in predicted["predictions"]] == ["ok"] * 4
