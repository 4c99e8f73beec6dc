"""Batch scoring at party B (vfl.service.serving.batch) and `vfl score` (vfl.cli.score), over the in-process HTTP cluster.

One job is trained once for the module; each test copies its folder and starts
the services again on the copy (the job is succeeded there, nothing retrains).
"""

from __future__ import annotations

import asyncio
import math
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from parties.app import create_app as create_party_app
from tests.helpers import Cluster, add_limits, demo_job, open_cluster, start_cluster, wait_for
from vfl.service.serving import scoring
from vfl.service.config import load_config
from vfl.service.node import Node

JOB = "batch-job"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")

    async def train():
        cluster = await start_cluster(workdir, **demo_job(epochs=3))
        try:
            async with cluster.client() as bank:
                await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": JOB})
                return await wait_for(bank, JOB)
        finally:
            await cluster.stop()

    status = asyncio.run(train())
    assert status["state"] == "succeeded", status["error"]
    return workdir


@pytest.fixture
def workdir(trained, tmp_path):
    """A copy of the trained services whose party B reads batch inputs from, and writes outputs to, the copy."""
    copy = tmp_path / "w"
    shutil.copytree(trained, copy)
    config = copy / "party-b.toml"
    config.write_text(config.read_text() + '\n[scoring]\nbatch_inputs = "."\nbatch_outputs = "."\n')
    return copy


async def restart_bank(cluster: Cluster) -> None:
    """Stop party B's node and start a new one on the same data directory (as after a crash)."""
    await cluster.nodes["party-b"].shutdown()
    await asyncio.sleep(0.05)  # the cancelled batch task records that it stopped
    config = load_config(cluster.workdir / "party-b.toml")
    node = Node(config, transport=cluster.router)
    cluster.router.apps["party-b.test"] = create_party_app(config, node=node)
    await node.startup()
    cluster.nodes["party-b"] = node


def write_ids(workdir, name="ids.csv"):
    """IDs in both parties, at B only (A answers "not available"), and at neither (unknown at B), interleaved."""
    bank = pd.read_csv(workdir / "party-b" / "bank.csv", dtype=str)["customer_id"].tolist()
    shop = set(pd.read_csv(workdir / "party-a" / "shop.csv", dtype=str)["customer_id"])
    both = [i for i in bank if i in shop][:40]
    only_b = [i for i in bank if i not in shop][:5]
    nobody = [f"NOBODY-{k}" for k in range(5)]
    ids = both[:20] + only_b + nobody[:2] + both[20:] + nobody[2:]
    path = workdir / name
    pd.DataFrame({"id": ids, "other": range(len(ids))}).to_csv(path, index=False)
    return path, ids, both, only_b, nobody


async def wait_batch(bank, batch_id, states=("succeeded", "failed", "cancelled"), timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = (await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}")).json()
        if status["state"] in states:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"batch still {status['state']} after {timeout}s: {status}")
        await asyncio.sleep(0.02)


def audit_scored(workdir) -> int:
    """How many scoring requests party A has served for the job (one audit line each)."""
    log = next((workdir / "data" / "party-a" / "jobs" / JOB).glob("audit.log"), None)
    return 0 if log is None else sum(" scored " in line for line in log.read_text().splitlines())


def slow_feature_party(monkeypatch, delay=0.15):
    original = scoring.partial_scores

    async def slow(*args, **kwargs):
        await asyncio.sleep(delay)
        return await original(*args, **kwargs)

    monkeypatch.setattr(scoring, "partial_scores", slow)


def test_a_csv_batch_equals_one_predict_call_and_a_repeat_does_no_work(workdir, run):
    path, ids, both, only_b, nobody = write_ids(workdir)
    out = workdir / "scores.csv"
    request = {"input": {"path": str(path), "id_column": "id"}, "output": {"path": str(out)}, "chunk_rows": 7}

    async def scenario():
        cluster = await open_cluster(workdir)
        shop = cluster.nodes["party-a"]
        try:
            async with cluster.client() as bank:
                submitted = await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)
                final = await wait_batch(bank, submitted.json()["batch_id"])
                scored_after_batch = shop.job(JOB).record.scored_ids
                audit_after_batch = audit_scored(workdir)
                repeated = await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)
                await asyncio.sleep(0.2)  # a second run, if one had started, would be scoring now
                listed = (await bank.get(f"/v1/jobs/{JOB}/score-batch")).json()
                download = await bank.get(f"/v1/jobs/{JOB}/score-batch/{final['batch_id']}/result")
                scored_end, audit_end = shop.job(JOB).record.scored_ids, audit_scored(workdir)
                direct = await bank.post(f"/v1/jobs/{JOB}/predict", json={"ids": both + only_b})
            return (submitted, final, repeated, listed, download, direct, scored_after_batch, audit_after_batch,
                    scored_end, audit_end)
        finally:
            await cluster.stop()

    (submitted, final, repeated, listed, download, direct, scored_after_batch, audit_after_batch,
     scored_end, audit_end) = run(scenario())

    assert submitted.status_code == 202, submitted.text
    assert final["state"] == "succeeded", final["error"]
    assert final["rows_done"] == len(ids) and final["chunks_done"] == math.ceil(len(ids) / 7)
    assert final["rows_total"] is None and final["started_at"] <= final["finished_at"]
    assert sum(final["counts"].values()) == len(ids) and final["counts"]["ok"] == len(both)
    result = pd.read_csv(out, dtype={"id": str})
    assert result["id"].tolist() == ids  # input order, each ID once
    expected = {p["id"]: p for p in direct.json()["predictions"]}
    for row in result.itertuples():
        if row.id in nobody:
            assert row.status != "ok" and math.isnan(row.score)
        else:
            assert row.status == expected[row.id]["status"]
            if row.status == "ok":
                assert row.score == pytest.approx(expected[row.id]["score"], abs=1e-12)
                assert row.label == expected[row.id]["label"]
    assert set(result.loc[result["id"].isin(only_b), "status"]) == {"not available at party-a"}
    assert repeated.status_code == 202 and repeated.json()["batch_id"] == final["batch_id"]
    assert repeated.json()["state"] == "succeeded"
    assert scored_end == scored_after_batch and audit_end == audit_after_batch  # the repeat scored nothing
    assert [b["batch_id"] for b in listed["batches"]] == [final["batch_id"]]
    assert download.status_code == 200 and download.content == out.read_bytes()
    assert not list(workdir.glob("scores.csv.*.partial"))


def test_a_dataset_batch_writes_parquet_with_rows_total(workdir, run):
    out = workdir / "scores.parquet"
    request = {"input": {"dataset": "credit"}, "output": {"path": str(out)}, "chunk_rows": 250}

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                submitted = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()
                return await wait_batch(bank, submitted["batch_id"])
        finally:
            await cluster.stop()

    final = run(scenario())

    bank_ids = pd.read_csv(workdir / "party-b" / "bank.csv", dtype=str)["customer_id"].tolist()
    assert final["state"] == "succeeded", final["error"]
    assert final["rows_total"] == final["rows_done"] == len(bank_ids)
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == bank_ids
    assert table.schema.names[:4] == ["id", "score", "label", "status"]
    assert pq.ParquetFile(out).num_row_groups == math.ceil(len(bank_ids) / 250) == final["chunks_done"]
    assert final["counts"]["ok"] == sum(s == "ok" for s in table.column("status").to_pylist()) > 0


def test_cancel_stops_after_a_chunk_publishes_nothing_and_a_repeat_resumes(workdir, run, monkeypatch):
    path, ids, both, _, _ = write_ids(workdir)
    out = workdir / "scores.csv"
    request = {"input": {"path": str(path)}, "output": {"path": str(out)}, "chunk_rows": 5}
    slow_feature_party(monkeypatch)

    async def scenario():
        cluster = await open_cluster(workdir)
        shop = cluster.nodes["party-a"]
        scored_before = shop.job(JOB).record.scored_ids  # training's own evaluation asked A too
        try:
            async with cluster.client() as bank:
                batch_id = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()["batch_id"]
                while (await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}")).json()["chunks_done"] < 1:
                    await asyncio.sleep(0.01)
                cancel = await bank.post(f"/v1/jobs/{JOB}/score-batch/{batch_id}/cancel")
                cancelled = await wait_batch(bank, batch_id)
                published_after_cancel = out.exists()
                result_refused = await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}/result")
                resumed = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()
                final = await wait_batch(bank, batch_id)
            scored = shop.job(JOB).record.scored_ids - scored_before
            return cancel, cancelled, published_after_cancel, result_refused, resumed, final, scored
        finally:
            await cluster.stop()

    cancel, cancelled, published_after_cancel, result_refused, resumed, final, scored = run(scenario())

    assert cancel.status_code == 200, cancel.text
    assert cancelled["state"] == "cancelled" and 1 <= cancelled["chunks_done"] < math.ceil(len(ids) / 5)
    assert not published_after_cancel and result_refused.status_code == 409
    assert resumed["batch_id"] == cancelled["batch_id"] and final["state"] == "succeeded" and final["runs"] == 2
    assert pd.read_csv(out, dtype={"id": str})["id"].tolist() == ids
    known_at_b = len(ids) - 5  # the NOBODY IDs never reach A
    assert scored == known_at_b  # no chunk was sent to A twice


def test_a_failed_chunk_fails_the_batch_and_a_repeat_after_a_restart_resumes(workdir, run):
    path, ids, _, _, _ = write_ids(workdir)
    out = workdir / "scores.csv"
    request = {"input": {"path": str(path)}, "output": {"path": str(out)}, "chunk_rows": 5}
    add_limits(workdir, {"party-b": {"peer_timeout": 0.3}})
    chunks = math.ceil(len(ids) / 5)

    async def scenario():
        cluster = await open_cluster(workdir)
        shop_app = cluster.router.apps["party-a.test"]
        original = scoring.partial_scores
        calls = 0

        async def down_after_two(*args, **kwargs):
            nonlocal calls
            calls += 1
            answer = await original(*args, **kwargs)
            if calls == 2:
                cluster.router.apps.pop("party-a.test")  # party A becomes unreachable after two chunks
            return answer

        scoring.partial_scores = down_after_two
        try:
            async with cluster.client() as bank:
                batch_id = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()["batch_id"]
                failed = await wait_batch(bank, batch_id)
            published_after_failure = out.exists()
            scoring.partial_scores = original
            cluster.router.apps["party-a.test"] = shop_app
            await restart_bank(cluster)
            async with cluster.client() as bank:
                after_restart = (await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}")).json()
                resumed = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()
                final = await wait_batch(bank, batch_id)
            return failed, published_after_failure, after_restart, resumed, final
        finally:
            scoring.partial_scores = original
            await cluster.stop()

    audit_before = audit_scored(workdir)
    failed, published_after_failure, after_restart, resumed, final = run(scenario())

    assert failed["state"] == "failed" and "unreachable" in failed["error"] and failed["chunks_done"] == 2
    assert not published_after_failure
    assert after_restart["state"] == "failed" and after_restart["chunks_done"] == 2
    assert resumed["batch_id"] == failed["batch_id"]
    assert final["state"] == "succeeded" and final["rows_done"] == len(ids) and final["chunks_done"] == chunks
    result = pd.read_csv(out, dtype={"id": str})
    assert result["id"].tolist() == ids and result["id"].is_unique
    assert audit_scored(workdir) - audit_before == chunks  # the chunks done before the failure were not scored again


def test_stopping_b_mid_batch_then_repeating_resumes_with_each_id_once(workdir, run, monkeypatch):
    path, ids, _, _, _ = write_ids(workdir)
    out = workdir / "scores.parquet"
    request = {"input": {"path": str(path)}, "output": {"path": str(out)}, "chunk_rows": 5}
    slow_feature_party(monkeypatch)

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                batch_id = (await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)).json()["batch_id"]
                while (await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}")).json()["chunks_done"] < 2:
                    await asyncio.sleep(0.01)
            await restart_bank(cluster)
            async with cluster.client() as bank:
                stopped = (await bank.get(f"/v1/jobs/{JOB}/score-batch/{batch_id}")).json()
                await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)
                final = await wait_batch(bank, batch_id)
            return stopped, final
        finally:
            await cluster.stop()

    audit_before = audit_scored(workdir)
    stopped, final = run(scenario())

    assert stopped["state"] == "failed" and "repeat" in stopped["error"] and 2 <= stopped["chunks_done"]
    assert final["state"] == "succeeded" and final["runs"] == 2
    assert pq.read_table(out).column("id").to_pylist() == ids
    # At most the chunk in flight when B stopped went to A twice.
    assert math.ceil(len(ids) / 5) <= audit_scored(workdir) - audit_before <= math.ceil(len(ids) / 5) + 1


def test_bad_requests_name_the_problem(workdir, run):
    path, *_ = write_ids(workdir)
    cases = {
        "missing input": {"input": {"path": str(workdir / "nope.csv")}, "output": {"path": str(workdir / "o.csv")}},
        "no such column": {"input": {"path": str(path), "id_column": "cid"}, "output": {"path": str(workdir / "o.csv")}},
        "no output folder": {"input": {"path": str(path)}, "output": {"path": str(workdir / "none" / "o.csv")}},
        "output is input": {"input": {"path": str(path)}, "output": {"path": str(path)}},
        "output outside": {"input": {"path": str(path)}, "output": {"path": str(workdir.parent / "o.csv")}},
        "input outside": {"input": {"path": "/etc/passwd.csv"}, "output": {"path": "o.csv"}},
        "climbing out": {"input": {"path": "../w/ids.csv"}, "output": {"path": "o.csv"}},
        "bad suffix": {"input": {"path": str(path)}, "output": {"path": str(workdir / "o.txt")}},
    }

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                answers = {k: await bank.post(f"/v1/jobs/{JOB}/score-batch", json=v) for k, v in cases.items()}
                unknown_job = await bank.post("/v1/jobs/nojob/score-batch", json=cases["missing input"])
            return answers, unknown_job
        finally:
            await cluster.stop()

    answers, unknown_job = run(scenario())

    expected = {"missing input": "file not found", "no such column": "no ID column 'cid'",
                "no output folder": "missing or not a plain folder", "output is input": "is the input file",
                "output outside": "is outside", "input outside": "is outside", "climbing out": "leads outside",
                "bad suffix": ".csv or .parquet"}
    for case, words in expected.items():
        assert answers[case].status_code == 422, (case, answers[case].text)
        assert words in answers[case].json()["detail"], (case, answers[case].json())
    assert "its columns are" not in answers["no such column"].json()["detail"]  # a file's contents are not echoed
    assert unknown_job.status_code == 404



def test_a_batch_cannot_overwrite_or_read_files_outside_its_folders_nor_through_a_link(trained, tmp_path, run):
    """The orchestrator's token names files only inside party B's batch folders (issue 27, class 4)."""
    workdir = tmp_path / "w"
    shutil.copytree(trained, workdir)
    dataset = workdir / "party-b" / "bank.csv"
    before = dataset.read_bytes()
    data_dir = workdir / "data" / "party-b"
    inputs, outputs = data_dir / "batch" / "inputs", data_dir / "batch" / "outputs"  # the defaults
    ids, *_ = write_ids(workdir)

    async def scenario():
        cluster = await open_cluster(workdir)
        try:
            async with cluster.client() as bank:
                async def post(request):
                    answer = await bank.post(f"/v1/jobs/{JOB}/score-batch", json=request)
                    if answer.status_code == 202:
                        return await wait_batch(bank, answer.json()["batch_id"])
                    return answer.json()

                seen = {"dataset as output": await post({"input": {"dataset": "credit"},
                                                         "output": {"path": str(dataset)}})}
                inputs.mkdir(parents=True, exist_ok=True)
                (inputs / "ids.csv").symlink_to(ids)  # a link to a file outside the input folder
                seen["linked input"] = await post({"input": {"path": "ids.csv"}, "output": {"path": "a.csv"}})
                (outputs / "linked.csv").symlink_to(dataset)  # the output's name is a link to B's dataset
                seen["linked output"] = await post({"input": {"dataset": "credit"}, "output": {"path": "linked.csv"}})
            return seen
        finally:
            await cluster.stop()

    seen = run(scenario())

    assert "is outside" in seen["dataset as output"]["detail"]
    assert "not a plain file" in seen["linked input"]["detail"]
    assert seen["linked output"]["state"] == "succeeded"  # the link itself was replaced, not what it pointed to
    assert (outputs / "linked.csv").is_file() and not (outputs / "linked.csv").is_symlink()
    assert dataset.read_bytes() == before  # B's training data was never written
