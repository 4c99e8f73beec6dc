"""A 4-class label through the services: one-vs-rest training, macro and per-class metrics, class probabilities.

FATE's vehicle example (4 classes) is the job's data: party A holds the host
file, party B the guest file with the label. The job trains its first class and
one class training per other class on the same alignment; B's status shows the
macro AUC and per-class figures, predict answers every class's probability, and
party A's release ledger counts one scoring direction per class.
"""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

from tests.conftest import fate_pair
from tests.helpers import demo_job, start_cluster, wait_for
from vfl.data.table import load_csv
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig

JOB = "vehicle-ovr"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    host, guest = fate_pair("vehicle_scale")
    workdir = tmp_path_factory.mktemp("multiclass")
    extra = {
        "party-a": f'[datasets.vehicle]\npath = "{host}"\nid_column = "id"\n',
        "party-b": (f'[datasets.vehicle]\npath = "{guest}"\nid_column = "id"\nlabel_column = "y"\n\n'
                    '[scoring]\nbatch_inputs = "."\nbatch_outputs = "."\n'),
    }
    (workdir / "ids.csv").write_text("id\n1\n2\n3\nno-such-id\n")

    async def scenario():
        cluster = await start_cluster(workdir, extra=extra, **demo_job(epochs=3))
        try:
            async with cluster.client() as b:
                job = {**cluster.setup["job"], "job_id": JOB, "party_a": {"peer": "party-a", "dataset": "vehicle"},
                       "party_b": {"dataset": "vehicle"}}
                submitted = await b.post("/v1/jobs", json=job)
                assert submitted.status_code == 201, submitted.text
                status = await wait_for(b, JOB)
                answer = (await b.post(f"/v1/jobs/{JOB}/predict", json={"ids": ["1", "2", "no-such-id"]})).json()
                scorecard = await b.post("/v1/jobs", json={**job, "job_id": "vehicle-card", "scorecard": {}})
                report = await b.get(f"/v1/jobs/{JOB}/report")
                batch = await b.post(f"/v1/jobs/{JOB}/score-batch", json={
                    "input": {"path": str(workdir / "ids.csv"), "id_column": "id"},
                    "output": {"path": str(workdir / "scores.csv")}})
                assert batch.status_code == 202, batch.text
                for _ in range(600):
                    done = (await b.get(f"/v1/jobs/{JOB}/score-batch/{batch.json()['batch_id']}")).json()
                    if done["state"] in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.05)
                assert done["state"] == "succeeded", done
                promoted = {f"{JOB}.k1": await b.post("/v1/models/vehicles/promote", json={"job_id": f"{JOB}.k1"})}
                promoted["delete"] = await b.delete(f"/v1/jobs/{JOB}.k1")
                promoted["models"] = (await b.get("/v1/models")).json()
                promoted["delete job"] = await b.delete(f"/v1/jobs/{JOB}")
                promoted["left"] = [(await b.get(f"/v1/jobs/{j}")).status_code for j in (f"{JOB}.k1", f"{JOB}.k3")]
        finally:
            await cluster.stop()
        releases = json.loads(next((workdir / "data" / "party-a" / "releases").rglob("vehicle.json")).read_text())
        scores = pd.read_csv(workdir / "scores.csv", dtype={"id": str})
        return status, answer, scorecard, report, releases, scores, promoted

    return asyncio.run(scenario())


def test_the_job_trains_one_model_per_class_and_reports_macro_and_per_class_metrics(trained):
    status, *_ = trained

    validation = status["metrics"]["validation"]
    assert status["state"] == "succeeded", status.get("error")
    assert status["multiclass"]["jobs"] == [JOB, f"{JOB}.k1", f"{JOB}.k2", f"{JOB}.k3"]
    assert validation["macro_auc"] > 0.85
    assert set(validation["per_class"]) == {"0", "1", "2", "3"}
    assert 0 < validation["accuracy"] <= 1
    assert [c["epochs_run"] for c in status["multiclass"]["per_class"]] == [3, 3, 3, 3]


def test_the_job_reports_party_b_alone_one_vs_rest_as_its_baseline(trained):
    status, *_ = trained

    alone = status["baseline"]["metrics"]["validation"]

    assert set(alone["per_class"]) == {"0", "1", "2", "3"}
    assert 0.5 < alone["macro_auc"] < 1
    assert alone["macro_auc"] != status["metrics"]["validation"]["macro_auc"]


def test_the_services_reach_the_macro_auc_of_vfl_simulate_on_the_same_files(trained, keypair):
    status = trained[0]
    host, guest = fate_pair("vehicle_scale")
    config = TrainingConfig(key_bits=1024, epochs=3, validation_fraction=0.2)

    simulated = simulate(load_csv(host, id_column="id"), load_csv(guest, id_column="id", label_column="y"), config,
                         keypair=keypair, workers=1)

    for split in ("train", "validation"):
        assert abs(status["metrics"][split]["macro_auc"] - simulated["metrics"][split]["macro_auc"]) < 0.01


def test_predict_answers_each_class_probability_and_the_predicted_class(trained):
    _, answer, *_ = trained

    known, _, unknown = answer["predictions"]
    assert answer["classes"] == ["0", "1", "2", "3"]
    assert sum(known["probabilities"].values()) == pytest.approx(1.0)
    assert known["class"] == max(known["probabilities"], key=known["probabilities"].get)
    assert unknown["status"] != "ok" and unknown["probabilities"] is None


def test_a_scorecard_on_a_multiclass_label_is_refused_as_binary_only(trained):
    _, _, scorecard, *_ = trained

    assert scorecard.status_code == 422
    assert "scorecard is binary only" in scorecard.text


def test_the_report_shows_per_class_metrics(trained):
    report = trained[3]

    assert report.status_code == 200
    assert "macro AUC" in report.text and 'data-class="3"' in report.text
    # its figures: each class's ROC against the rest and each class training's loss
    assert 'alt="class_roc.png"' in report.text and 'alt="class_losses.png"' in report.text
    assert "Each class against the rest" in report.text


def test_party_a_releases_one_scoring_direction_per_class(trained):
    releases = trained[4]

    assert len(releases["data"]["directions"]) == 4


def test_batch_scoring_writes_the_class_and_each_class_probability(trained):
    scores = trained[5]

    assert list(scores.columns) == ["id", "class", "p_0", "p_1", "p_2", "p_3", "status"]
    scored = scores[scores["status"] == "ok"]
    assert len(scored) == 3
    assert scored[["p_0", "p_1", "p_2", "p_3"]].sum(axis=1).round(9).eq(1.0).all()


def test_a_class_training_is_neither_promoted_nor_deleted_alone(trained):
    promoted = trained[6]

    assert promoted[f"{JOB}.k1"].status_code == 409
    assert f"promote {JOB}" in promoted[f"{JOB}.k1"].text
    assert promoted["delete"].status_code == 409 and f"delete {JOB} first" in promoted["delete"].text


def test_the_registry_lists_the_job_as_multiclass_and_its_class_trainings_as_part_of_it(trained):
    models = {m["job_id"]: m for m in trained[6]["models"]["models"]}

    assert models[JOB]["multiclass"]["classes"] == ["0", "1", "2", "3"]
    assert models[f"{JOB}.k2"]["class_training_of"] == JOB


def test_deleting_the_multiclass_job_deletes_its_class_trainings(trained):
    promoted = trained[6]

    answer = promoted["delete job"].json()
    assert answer["status"] == "deleted"
    assert [c["status"] for c in answer["class_trainings"]] == ["deleted"] * 3
    assert promoted["left"] == [404, 404]
