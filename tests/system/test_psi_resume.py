"""Real processes: SIGKILL party A, or party B, in the middle of the PSI; the alignment resumes at its first
open bucket, and the job ends with the same intersection, order and model as without the kill."""

from __future__ import annotations

import json
import signal
import ssl
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import get, serve
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.local.simulate import simulate

TRAINING = {"epochs": 3, "tol": 0, "batch_size": 200, "optimizer": "adam", "validation_fraction": 0.2}


def bucket_files(workdir: Path, party: str, job_id: str) -> list[Path]:
    return sorted((workdir / "data" / party / "jobs" / job_id / "psi").glob("*/result-*.bin"))


def _ecdh_usable() -> str | None:
    from psi import ec
    from vfl.errors import ConfigError
    try:
        ec._sodium()
    except ConfigError as exc:
        return str(exc)
    return None


def offline_files(workdir: Path, party: str, large: str) -> list[Path]:
    """The large side's kept key (after its offline pass), or the small side's copy of its set (once received)."""
    pattern = "psi-offline/*/*/key.json" if party == large else "psi-offline-peer/*/*/peer_set.json"
    return list((workdir / "data" / party).glob(pattern))


UNBALANCED = "ecdh-x25519-unbalanced-psi"
METHODS = {"rsa": "rsa-blind-signature-psi", "ecdh": "ecdh-x25519-psi", "unbalanced": UNBALANCED,
           "unbalanced-feature-large": UNBALANCED}


@pytest.mark.parametrize("protocol", ["rsa", "ecdh", "unbalanced", "unbalanced-feature-large"])
@pytest.mark.parametrize("victim", ["party-a", "party-b"])
def test_a_party_killed_mid_psi_resumes_at_its_first_open_bucket(tmp_path, keypair, victim, protocol):
    if protocol != "rsa" and (why := _ecdh_usable()) is not None:
        pytest.skip(f"no usable libsodium: {why}")
    setup = write_demo_files(tmp_path, population=2000, key_bits=1024, training=TRAINING)
    for name in ("party-a", "party-b"):  # small buckets: K ≈ 8 for this data; A agrees to be the large side
        config = tmp_path / f"{name}.toml"
        large = "accept_large_side = true\n" if name == "party-a" else ""
        config.write_text(config.read_text() + "\n[psi]\nbucket_ids = 200\n" + large)
    verify = ssl.create_default_context(cafile=setup["verify"])
    headers = {"Authorization": f"Bearer {setup['token']}"}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, timeout=30, verify=verify) as bank:
            job = json.loads((tmp_path / "job.json").read_text())
            job["psi"] = {**job.get("psi", {}), "protocol": "rsa" if protocol == "rsa" else "ecdh"}
            # no buckets: killed once the large side's offline set, or the small side's copy of it, is on disk
            large = "party-a" if protocol == "unbalanced-feature-large" else "party-b"
            if protocol.startswith("unbalanced"):
                job["psi"]["unbalanced"] = True
            if large == "party-a":
                job["psi"]["large_side"] = "feature"
            job_id = bank.post("/v1/jobs", json=job).json()["job_id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                    len(bucket_files(tmp_path, victim, job_id)) < 2 if not protocol.startswith("unbalanced")
                    else not offline_files(tmp_path, victim, large)):
                time.sleep(0.005)
            processes[victim].send_signal(signal.SIGKILL)
            processes[victim].wait()
            kept = len(bucket_files(tmp_path, victim, job_id))
            processes[victim] = serve(tmp_path, victim)
            for _ in range(3000):
                status = get(bank, f"/v1/jobs/{job_id}")
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.1)
            model_b = get(bank, f"/v1/jobs/{job_id}/model")
    shop = load_csv(tmp_path / "party-a" / "shop.csv", id_column="customer_id")
    bank_table = load_csv(tmp_path / "party-b" / "bank.csv", id_column="customer_id", label_column="default",
                          model="logistic")
    reference = simulate(shop, bank_table, TrainingConfig(key_bits=1024, **TRAINING), keypair=keypair)

    assert status["state"] == "succeeded", status["error"]
    assert status["alignment"]["method"] == METHODS[protocol]
    assert status["resumes"] >= 1  # the alignment was resumed, not started over by a new submission
    if not protocol.startswith("unbalanced"):
        assert 2 <= kept < status["alignment"]["buckets"]  # killed with some buckets done, and some not
    assert status["n_rows"] == reference["alignment"]["intersection"]
    # Same rows in the same order, or batches (and so the model) would differ.
    assert np.allclose(model_b["weights"], reference["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert not bucket_files(tmp_path, "party-a", job_id) and not bucket_files(tmp_path, "party-b", job_id)
