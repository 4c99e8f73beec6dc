"""Real processes: SIGKILL a service while a multi-class job's second or last class training runs; it still ends right.

FATE's vehicle example (4 classes) trains one-vs-rest at the services: the job
itself on class 0, then the class trainings ``<job>.k1`` … ``<job>.k3``. The
victim is killed once ``<job>.k1`` (or, for party B and the arbiter, the last,
``<job>.k3``) has checkpointed an epoch, and restarted.
Resume is exact (seeded batches, checkpointed masks, exact arithmetic), so every
class's model and the macro AUC equal those of ``vfl simulate`` on the same files,
and no class training is left behind unfinished.
"""

from __future__ import annotations

import json
import signal
import ssl
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import fate_pair
from tests.helpers import get, serve
from vfl.data.table import load_csv
from vfl.demo.services import running_services, wait_healthy, write_demo_files
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig

TRAINING = {"epochs": 3, "tol": 0, "batch_size": 200, "optimizer": "adam", "validation_fraction": 0.2}
JOB = "vehicle-kill"
CLASS_TRAININGS = [f"{JOB}.k1", f"{JOB}.k2", f"{JOB}.k3"]
FINISHED = ("succeeded", "failed", "cancelled")


def wait_until(predicate, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(keypair):
    """The same job without a kill: `vfl simulate` on the same files (resume is exact, so so are the services)."""
    host, guest = fate_pair("vehicle_scale")
    return simulate(load_csv(host, id_column="id"), load_csv(guest, id_column="id", label_column="y"),
                    TrainingConfig(key_bits=1024, **TRAINING), keypair=keypair, workers=1)


@pytest.mark.parametrize("victim, during", [("party-a", 0), ("party-b", 0), ("arbiter", 0),
                                            ("party-b", 2), ("arbiter", 2)],
                         ids=["party-a-k1", "party-b-k1", "arbiter-k1", "party-b-k3", "arbiter-k3"])
def test_a_service_killed_during_a_class_training_resumes_to_the_same_per_class_models(tmp_path, uninterrupted,
                                                                                        victim, during):
    host, guest = fate_pair("vehicle_scale")
    setup = write_demo_files(tmp_path, key_bits=1024, training=TRAINING,
                             tables=(pd.read_csv(host), pd.read_csv(guest), "id", "y"))
    verify = ssl.create_default_context(cafile=setup["verify"])
    headers = {"Authorization": f"Bearer {setup['token']}"}
    shop_headers = {"Authorization": f"Bearer {setup['tokens']['party-a']}"}
    started = time.monotonic()

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, timeout=30, verify=verify) as bank, \
             httpx.Client(base_url=setup["urls"]["party-a"], headers=shop_headers, timeout=30, verify=verify) as shop:
            job = {**json.loads((tmp_path / "job.json").read_text()), "job_id": JOB}
            submitted = bank.post("/v1/jobs", json=job)
            assert submitted.status_code == 201, submitted.text

            victim_class = CLASS_TRAININGS[during]

            def class_mid_training() -> bool:
                child = bank.get(f"/v1/jobs/{victim_class}")
                return child.status_code == 200 and child.json()["stage"] == "training" and child.json()["epoch"] >= 1
            wait_until(class_mid_training, f"{victim_class} to train its first epoch")
            processes[victim].send_signal(signal.SIGKILL)
            processes[victim].wait()
            processes[victim] = serve(tmp_path, victim)

            def finished() -> bool:
                return get(bank, f"/v1/jobs/{JOB}")["state"] in FINISHED
            wait_until(finished, f"job {JOB} to finish")
            status = get(bank, f"/v1/jobs/{JOB}")
            children = {child: get(bank, f"/v1/jobs/{child}") for child in CLASS_TRAININGS}
            parts_a = [get(shop, f"/v1/jobs/{j}/model") for j in [JOB, *CLASS_TRAININGS]]
            parts_b = [get(bank, f"/v1/jobs/{j}/model") for j in [JOB, *CLASS_TRAININGS]]
            listed = {j["job_id"]: j["state"] for j in bank.get("/v1/jobs").json()["jobs"]}
    seconds = time.monotonic() - started
    reference = uninterrupted
    print(f"\n{victim}: killed during {victim_class}, job done in {seconds:.1f}s")

    assert status["state"] == "succeeded", status.get("error")
    assert status["multiclass"]["jobs"] == [JOB, *CLASS_TRAININGS]
    assert all(child["state"] == "succeeded" for child in children.values()), children
    assert children[victim_class]["resumes"] >= 1  # the class training resumed, not started over
    assert {j: s for j, s in listed.items() if j.startswith(JOB)} == dict.fromkeys([JOB, *CLASS_TRAININGS],
                                                                                    "succeeded")
    for n, (part_a, part_b) in enumerate(zip(parts_a, parts_b)):
        expected_a = reference["model_parts"]["party_a"]["parts"][n]["weights"]
        expected_b = reference["model_parts"]["party_b"]["parts"][n]["weights"]
        assert np.allclose(part_a["weights"], expected_a, atol=1e-9, rtol=0), n
        assert np.allclose(part_b["weights"], expected_b, atol=1e-9, rtol=0), n
    for split in ("train", "validation"):
        assert status["metrics"][split]["macro_auc"] == pytest.approx(reference["metrics"][split]["macro_auc"],
                                                                      abs=1e-9)
