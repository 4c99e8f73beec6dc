"""A job spec's "prepare": each party prepares its own columns per job, records it, and serving follows it.

FATE's ionosphere through in-process services. Both parties' datasets fill missing numbers with the mean, and
party B one-hot encodes a text column. Two jobs on the same datasets: "plain" keeps the datasets' settings,
"tuned" asks party A for the median and missing indicators and party B for an ordinal code. Each model part
records the preparation its job used, and ``/predict`` scores a row with a missing cell by that job's own rule
(the score is recomputed here from the two model parts and the raw rows). Refusals: a party that is not in the
job, a mistyped key, ``ids`` (a dataset key only), a column party A does not have (named without listing A's
columns), and filling on a dataset that sets no ``impute``.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from tests.conftest import fate_pair
from tests.helpers import demo_job, start_cluster, wait_for
from vfl.ml.parts import ModelPartA, ModelPartB

TUNED = {"party-a": {"impute": "median", "missing_indicator": True},
         "party-b": {"categorical": {"segment": "ordinal"}, "impute": "constant", "impute_value": -1.0}}
#: Missing cells: x17 at party A (row 79), x3 at party B (row 3).
SCORED = ["79", "3", "0"]


def _files(workdir):
    host, guest = fate_pair("ionosphere_scale")
    a = pd.read_csv(host, dtype=str, keep_default_na=False)
    b = pd.read_csv(guest, dtype=str, keep_default_na=False).drop(columns=["x2"])  # x2 is missing on every row
    b["segment"] = np.where(b["sid"].astype(int) % 3 == 0, "retail", np.where(b["sid"].astype(int) % 3 == 1, "sme", ""))
    a.to_csv(workdir / "iono_a.csv", index=False)
    b.to_csv(workdir / "iono_b.csv", index=False)
    complete = a[~(a == "").any(axis=1)]  # no missing cell: a dataset that needs no impute
    complete.to_csv(workdir / "complete_a.csv", index=False)
    return a, b


def _raw(frame: pd.DataFrame, ids: list[str], part: ModelPartA | ModelPartB) -> np.ndarray:
    """The raw input columns of ``ids`` as a model part reads them: numbers, and category codes for text."""
    preparation = part.preparation
    rows = frame.set_index("sid").loc[ids]
    columns = []
    for name in preparation.inputs:
        if name in preparation.categories:
            texts = [None if t == "" else t for t in rows[name]]
            columns.append(preparation.encode(name, texts))
        else:
            columns.append(pd.to_numeric(rows[name].replace("", np.nan)).to_numpy(dtype=np.float64))
    return np.column_stack(columns)


def _expected(model_a: dict, model_b: dict, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """The probabilities the two parts give SCORED, prepared by the preparation each part records."""
    part_a, part_b = ModelPartA.from_dict(model_a), ModelPartB.from_dict(model_b)
    x_a = part_a.preparation.expand(_raw(a, SCORED, part_a))
    x_b = part_b.preparation.expand(_raw(b, SCORED, part_b))
    return part_b.predict(x_b, part_a.partial_scores(x_a))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("job-prepare")
    a, b = _files(workdir)
    extra = {
        "party-a": f'[datasets.iono]\npath = "{workdir / "iono_a.csv"}"\nid_column = "sid"\nimpute = "mean"\n\n'
                   f'[datasets.complete]\npath = "{workdir / "complete_a.csv"}"\nid_column = "sid"\n',
        "party-b": f'[datasets.iono]\npath = "{workdir / "iono_b.csv"}"\nid_column = "sid"\nlabel_column = "label"\n'
                   'impute = "mean"\ncategorical = { segment = "onehot" }\n',
    }

    async def scenario():
        out = {}
        cluster = await start_cluster(workdir, extra=extra, **demo_job(epochs=3, validation_fraction=0.2))
        base = {**cluster.setup["job"], "party_a": {"peer": "party-a", "dataset": "iono"},
                "party_b": {"dataset": "iono"}}
        try:
            async with cluster.client() as client_b, cluster.client("party-a") as client_a:
                for job_id, prepare in (("plain", None), ("tuned", TUNED)):
                    job = {**base, "job_id": job_id} | ({"prepare": prepare} if prepare else {})
                    answer = await client_b.post("/v1/jobs", json=job)
                    assert answer.status_code == 201, answer.text
                for job_id in ("plain", "tuned"):
                    out[job_id] = {
                        "record": await wait_for(client_b, job_id),
                        "predict": (await client_b.post(f"/v1/jobs/{job_id}/predict", json={"ids": SCORED})).json(),
                        "model_a": (await client_a.get(f"/v1/jobs/{job_id}/model")).json(),
                        "model_b": (await client_b.get(f"/v1/jobs/{job_id}/model")).json(),
                        "registration_a": cluster.nodes["party-a"].jobs.get(job_id).record.registration,
                        "registration_c": cluster.nodes["arbiter"].jobs.get(job_id).record.registration,
                    }
                refusals = {
                    "stranger": {**base, "job_id": "stranger", "prepare": {"party-x": {"impute": "median"}}},
                    "arbiter": {**base, "job_id": "to-arbiter", "prepare": {"arbiter": {"impute": "median"}}},
                    "typo": {**base, "job_id": "typo", "prepare": {"party-a": {"imputes": "median"}}},
                    "ids": {**base, "job_id": "ids", "prepare": {"party-a": {"ids": {"strip_leading_zeros": True}}}},
                    "no-column": {**base, "job_id": "no-column",
                                  "prepare": {"party-a": {"categorical": {"x99": "onehot"}}}},
                    "no-impute": {**base, "job_id": "no-impute", "party_a": {"peer": "party-a", "dataset": "complete"},
                                  "prepare": {"party-a": {"impute": "median"}}},
                }
                for name, job in refusals.items():
                    answer = await client_b.post("/v1/jobs", json=job)
                    out[name] = (answer.status_code, answer.json()["detail"])
                out["left_behind"] = sorted(j["job_id"] for j in (await client_a.get("/v1/jobs")).json()["jobs"])
        finally:
            await cluster.stop()
        return out

    return asyncio.run(scenario()), a, b


def test_both_jobs_succeed_on_the_same_datasets(jobs):
    out, _, _ = jobs

    assert out["plain"]["record"]["state"] == "succeeded", out["plain"]["record"].get("error")
    assert out["tuned"]["record"]["state"] == "succeeded", out["tuned"]["record"].get("error")


def test_each_model_part_records_its_jobs_preparation(jobs):
    out, _, _ = jobs
    plain_a, tuned_a = out["plain"]["model_a"]["preparation"], out["tuned"]["model_a"]["preparation"]
    plain_b, tuned_b = out["plain"]["model_b"]["preparation"], out["tuned"]["model_b"]["preparation"]

    assert plain_a["impute"] == "mean" and plain_a["indicators"] == []
    assert tuned_a["impute"] == "median" and "x17" in tuned_a["indicators"]
    assert "x17 (missing)" in out["tuned"]["model_a"]["feature_names"]
    assert plain_b["encodings"] == {"segment": "onehot"} and tuned_b["encodings"] == {"segment": "ordinal"}
    assert plain_b["impute"] == "mean" and tuned_b["impute"] == "constant" and tuned_b["fills"]["x3"] == -1.0
    assert "segment=retail" in out["plain"]["model_b"]["feature_names"]
    assert "segment" in out["tuned"]["model_b"]["feature_names"]


def test_predict_prepares_each_row_by_its_own_jobs_rule(jobs):
    out, a, b = jobs

    for job_id in ("plain", "tuned"):
        answer = out[job_id]["predict"]
        scores = np.array([p["score"] for p in answer["predictions"]])
        expected = _expected(out[job_id]["model_a"], out[job_id]["model_b"], a, b)

        assert [p["status"] for p in answer["predictions"]] == ["ok"] * len(SCORED)
        assert scores == pytest.approx(expected, abs=1e-6), job_id
    plain = out["plain"]["predict"]["predictions"][0]["score"]
    assert plain != pytest.approx(out["tuned"]["predict"]["predictions"][0]["score"], abs=1e-6)


def test_each_party_receives_only_its_own_entry(jobs):
    out, _, _ = jobs

    assert out["tuned"]["registration_a"]["prepare"]["impute"] == "median"
    assert out["tuned"]["registration_a"]["prepare"].get("categorical") is None  # B's entry stays at B
    assert out["tuned"]["registration_c"].get("prepare") is None
    assert out["plain"]["registration_a"].get("prepare") is None


def test_a_party_not_in_the_job_is_refused_naming_it_and_the_fix(jobs):
    out, _, _ = jobs

    status, detail = out["stranger"]
    assert status == 422 and "'party-x'" in detail and "party-a, party-b" in detail and "feature_parties" in detail
    status, detail = out["arbiter"]
    assert status == 422 and "holds no data" in detail


def test_a_mistyped_key_and_ids_are_refused_with_the_fix(jobs):
    out, _, _ = jobs

    status, detail = out["typo"]
    assert status == 422 and "prepare.party-a.imputes" in detail and "did you mean 'impute'" in detail
    status, detail = out["ids"]
    assert status == 422 and "set per dataset only" in detail


def test_a_column_party_a_lacks_is_refused_without_naming_its_columns(jobs):
    out, _, _ = jobs

    status, detail = out["no-column"]
    assert status == 422 and "['x99']" in detail and "prepare" in detail, detail
    assert "x16" not in detail  # party A's columns are its own


def test_filling_is_refused_on_a_dataset_that_sets_no_impute(jobs):
    out, _, _ = jobs

    status, detail = out["no-impute"]
    assert status == 422 and "datasets.complete.impute" in detail, detail
    assert out["left_behind"] == ["plain", "tuned"]  # the refused jobs left nothing at party A
