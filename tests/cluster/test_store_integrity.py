"""Damaged files and secrets that outlive their use (issue 11, items 7 and 8).

Unit tests of the job store first, then the same rules through three in-process services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from tests.helpers import demo_job, start_cluster, submit_until_epoch, wait_for
from tests.cluster.test_resume import SETTINGS, uninterrupted
from vfl.errors import JobError
from vfl.service import retention
from vfl.service.config import load_config
from vfl.service.node import Node
from vfl.service.record import JobRecord
from vfl.service.store import JobStore

NAMES = ("party-a", "party-b", "arbiter")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def truncate(path: Path) -> None:
    """Cut a file in half, as a full disk or a crash of the file system might."""
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def checkpoint_files(root: Path) -> list[Path]:
    """Every file left in any party's checkpoint folders, half-written temporaries included."""
    return [p for p in root.glob("data/*/jobs/*/checkpoints/*") if p.is_file()]


# -- the store on its own ------------------------------------------------------------------------


def test_a_file_carries_its_checksum_and_stays_readable_json(tmp_path):
    store = JobStore(tmp_path / "data")
    model = {"weights": [0.1, -2.5e-17, 3.0], "party": "A", "names": {"1": "x"}}

    store.save_model("job", model)

    on_disk = json.loads((store.job_dir("job") / "model.json").read_text())
    assert set(on_disk) == {"sha256", "data"} and re.fullmatch(r"[0-9a-f]{64}", on_disk["sha256"])
    assert on_disk["data"] == model
    assert store.load_model("job") == model


def test_reindenting_a_file_keeps_it_valid_but_editing_a_value_does_not(tmp_path):
    store = JobStore(tmp_path / "data")
    store.save_model("job", {"weights": [1.0, 2.0]})
    file = store.job_dir("job") / "model.json"
    content = json.loads(file.read_text())

    file.write_text(json.dumps(content))  # same content, other layout
    reformatted = store.load_model("job")
    content["data"]["weights"][1] = 2.5
    file.write_text(json.dumps(content, indent=2))
    with pytest.raises(JobError) as edited:
        store.load_model("job")

    assert reformatted == {"weights": [1.0, 2.0]}
    assert "checksum" in str(edited.value) and str(file) in str(edited.value)


def test_a_file_written_before_checksums_still_loads(tmp_path):
    store = JobStore(tmp_path / "data")
    folder = store.job_dir("old")
    folder.mkdir()
    (folder / "job.json").write_text(JobRecord(job_id="old", role="B", state="succeeded").model_dump_json())
    (folder / "alignment.json").write_text(json.dumps({"ids": ["a", "b"]}))

    records = store.load_all(role="B")

    assert records["old"].state == "succeeded"
    assert store.load_alignment("old") == ["a", "b"]


def test_a_truncated_checkpoint_is_skipped_with_a_warning_and_loading_it_is_a_job_error(tmp_path, caplog):
    store = JobStore(tmp_path / "data")
    for epoch in (-1, 0, 1):
        store.save_checkpoint("job", epoch, {"epoch": epoch, "private_key": "secret"})
    damaged = store.job_dir("job") / "checkpoints" / "epoch-1.json"
    truncate(damaged)

    with caplog.at_level(logging.WARNING, logger="vfl.service"):
        listed = store.checkpoints("job")
    with pytest.raises(JobError) as loading:
        store.load_checkpoint("job", 1)

    assert listed == [-1, 0]
    assert str(damaged) in caplog.text
    assert str(damaged) in str(loading.value) and "not valid JSON" in str(loading.value)
    assert store.load_checkpoint("job", 0)["epoch"] == 0  # the older one is still there to resume from


def test_pruning_keeps_the_start_and_the_last_two_epochs_even_when_one_is_damaged(tmp_path):
    store = JobStore(tmp_path / "data")
    for epoch in (-1, 0, 1, 2):
        store.save_checkpoint("job", epoch, {"epoch": epoch})
    truncate(store.job_dir("job") / "checkpoints" / "epoch-2.json")

    store.save_checkpoint("job", 3, {"epoch": 3})

    assert store.checkpoints("job") == [-1, 3]  # 2 is damaged; 0 and 1 were pruned
    assert sorted(p.name for p in (store.job_dir("job") / "checkpoints").iterdir()) == [
        "epoch--1.json", "epoch-2.json", "epoch-3.json"]


@pytest.mark.parametrize("name, load, fix", [
    ("model.json", lambda s: s.load_model("job"), "retrain"),
    ("alignment.json", lambda s: s.load_alignment("job"), "submit the job again"),
])
def test_a_damaged_model_or_alignment_is_a_job_error_naming_the_file_and_the_fix(tmp_path, name, load, fix):
    store = JobStore(tmp_path / "data")
    store.save_model("job", {"weights": [1.0, 2.0, 3.0]})
    store.save_alignment("job", [f"id-{i}" for i in range(50)])
    truncate(store.job_dir("job") / name)

    with pytest.raises(JobError) as error:
        load(store)

    assert str(store.job_dir("job") / name) in str(error.value)
    assert fix in str(error.value)


def test_a_truncated_job_record_is_listed_as_damaged_and_left_as_it_is(tmp_path, caplog):
    store = JobStore(tmp_path / "data")
    store.save(JobRecord(job_id="job", role="A", state="succeeded"))
    store.save_model("job", {"weights": [1.0]})
    truncate(store.job_dir("job") / "job.json")
    before = {p.name: p.read_bytes() for p in store.job_dir("job").iterdir()}

    restarted = JobStore(tmp_path / "data")
    with caplog.at_level(logging.ERROR, logger="vfl.service"):
        record = restarted.load_all(role="A")["job"]
    with pytest.raises(JobError):
        record.state = "training"  # what a resume would do first
    with pytest.raises(JobError):
        restarted.create(JobRecord(job_id="job", role="A"))

    assert record.state == "damaged" and record.finished
    assert "job.json" in record.error and "not valid JSON" in record.error
    assert "job job is damaged" in caplog.text
    assert restarted.checkpoints("job") == []  # never resumed
    assert {p.name: p.read_bytes() for p in restarted.job_dir("job").iterdir()} == before


def test_a_record_stopped_time_is_set_when_it_stops_and_cleared_when_it_resumes(tmp_path):
    store = JobStore(tmp_path / "data")
    record = JobRecord(job_id="job", role="B", state="training")
    store.save(record)
    running = record.stopped_at

    record.state = "failed"
    store.save(record)
    failed = record.stopped_at
    store.save(record)  # a later save of the failed job does not restart its window
    record.state = "training"
    store.save(record)

    assert running is None and failed is not None
    assert record.stopped_at is None


def test_a_sealed_job_takes_no_more_checkpoints(tmp_path):
    store = JobStore(tmp_path / "data")
    store.save_checkpoint("job", 0, {"private_key": "secret"})

    store.drop_checkpoints("job", seal=True)
    with pytest.raises(JobError):
        store.save_checkpoint("job", 1, {"private_key": "secret"})

    assert not store.has_checkpoints("job")


def test_every_file_is_owner_only_in_owner_only_folders(tmp_path):
    data = tmp_path / "data"
    store = JobStore(data)
    store.save(JobRecord(job_id="job", role="C"))
    store.save_model("job", {"weights": []})
    store.save_report("job", "<html></html>")
    store.save_alignment("job", ["a"])
    store.save_checkpoint("job", 0, {"private_key": "secret"})
    store.audit("job", "refused something")
    store.close()  # the audit log stays open for the next line until then
    folder = store.job_dir("job")

    folders = [data, data / "jobs", folder, folder / "checkpoints"]
    files = ["job.json", "model.json", "report.html", "alignment.json", "checkpoints/epoch-0.json", "audit.log"]

    assert {str(f): mode(f) for f in folders} == {str(f): 0o700 for f in folders}
    assert {name: mode(folder / name) for name in files} == {name: 0o600 for name in files}


def test_folders_and_logs_from_older_versions_are_made_private(tmp_path):
    folder = tmp_path / "data" / "jobs" / "old"
    folder.mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "data", 0o755)
    (folder / "audit.log").write_text("an old line\n")
    os.chmod(folder / "audit.log", 0o644)

    store = JobStore(tmp_path / "data")
    store.audit("old", "a new line")
    store.close()

    assert mode(tmp_path / "data") == mode(folder) == 0o700
    assert mode(folder / "audit.log") == 0o600
    assert (folder / "audit.log").read_text().startswith("an old line\n")


# -- through the services ------------------------------------------------------------------------


async def stop(cluster, name: str) -> None:
    """Stop a node without telling anyone, as a kill would."""
    victim = cluster.nodes[name]
    del cluster.router.apps[f"{name}.test"]
    await victim.stop_tasks()


def sweep(node: Node) -> list[str]:
    return retention.sweep_checkpoints(node.jobs.records(), node.store, node.config.limits)


async def restart(cluster, name: str) -> None:
    config = load_config(cluster.workdir / f"{name}.toml")
    node = Node(config, transport=cluster.router)
    app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
    cluster.router.apps[f"{name}.test"] = app
    cluster.nodes[name] = node
    await node.startup()


def test_a_truncated_newest_checkpoint_resumes_from_an_older_one_with_the_same_model(tmp_path, run, keypair, caplog):
    checkpoints = tmp_path / "data" / "party-a" / "jobs"

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(**SETTINGS))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, cluster.setup["job"], 3)
                await stop(cluster, "party-a")
                folder = checkpoints / job["job_id"] / "checkpoints"
                newest = max(int(p.stem.removeprefix("epoch-")) for p in folder.glob("epoch-*.json"))
                truncate(folder / f"epoch-{newest}.json")
                await asyncio.sleep(0.2)
                await restart(cluster, "party-a")
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                status = await wait_for(bank, job["job_id"])
                models = [(await c.get(f"/v1/jobs/{job['job_id']}/model")).json() for c in (shop, bank)]
            return status, models, newest
        finally:
            await cluster.stop()

    with caplog.at_level(logging.WARNING, logger="vfl.service"):
        status, (model_a, model_b), truncated = run(scenario())
    # Every party logs "resumed after epoch N" (N epochs kept): one resume, from one checkpoint.
    resumed = sorted({int(e) for e in re.findall(r"resumed after epoch (\d+)", caplog.text)})
    reference = uninterrupted(tmp_path, keypair, {**SETTINGS, "key_bits": 1024})

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] == 1
    assert len(resumed) == 1 and resumed[0] - 1 < truncated  # fell back past the damaged epoch (0-based)
    assert f"epoch-{truncated}.json" in caplog.text and "skipped" in caplog.text
    assert np.allclose(model_a["weights"], reference["model_parts"]["party_a"]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(model_b["weights"], reference["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-12)


def test_a_truncated_job_record_is_listed_damaged_after_a_restart_and_its_id_stays_taken(tmp_path, run, caplog):
    data = tmp_path / "data"

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "kept-job"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, "kept-job")
            modes = {str(p.relative_to(data)): mode(p) for p in [data / n for n in NAMES] + list(data.glob("*/jobs/**/*"))}
            model = data / "party-b" / "jobs" / "kept-job" / "model.json"
            model_bytes = model.read_bytes()
            await stop(cluster, "party-b")
            truncate(data / "party-b" / "jobs" / "kept-job" / "job.json")
            with caplog.at_level(logging.ERROR, logger="vfl.service"):
                await restart(cluster, "party-b")
            async with cluster.client() as bank:
                listed = (await bank.get("/v1/jobs")).json()["jobs"]
                one = (await bank.get("/v1/jobs/kept-job")).json()
                again = await bank.post("/v1/jobs", json=job)
                resumed = await bank.post("/v1/jobs/kept-job/resume")
            return status, modes, listed, one, again, resumed, model_bytes, model.read_bytes()
        finally:
            await cluster.stop()

    status, modes, listed, one, again, resumed, model_before, model_after = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    assert {path: m for path, m in modes.items() if m != (0o700 if (data / path).is_dir() else 0o600)} == {}
    assert [(j["job_id"], j["state"]) for j in listed] == [("kept-job", "damaged")]
    assert one["state"] == "damaged" and "job.json" in one["error"] and "not valid JSON" in one["error"]
    assert "job kept-job is damaged" in caplog.text
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert resumed.status_code == 409  # a clean refusal, not a 500
    assert model_after == model_before


def test_cancelling_a_job_deletes_its_checkpoints_at_every_party(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=400, tol=0))
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, cluster.client("arbiter") as arb:
                job = await submit_until_epoch(bank, cluster.setup["job"], 2)
                during = checkpoint_files(tmp_path)
                cancelled = await bank.post(f"/v1/jobs/{job['job_id']}/cancel")
                states = [(await c.get(f"/v1/jobs/{job['job_id']}")).json()["state"] for c in (shop, bank, arb)]
                await asyncio.sleep(0.5)  # messages that were still being handled
                return during, cancelled.status_code, states, checkpoint_files(tmp_path)
        finally:
            await cluster.stop()

    during, status_code, states, after = run(scenario())

    assert {p.parts[-5] for p in during} == set(NAMES)  # every party had checkpoints while training
    assert status_code == 200
    assert states == ["cancelled"] * 3
    assert after == []


def test_a_failed_job_keeps_its_checkpoints_for_the_resume_window_only(tmp_path, run):
    window = 1.0
    limits = {name: {"resume_window": window} for name in NAMES}

    async def scenario():
        cluster = await start_cluster(tmp_path, limits=limits, **demo_job(epochs=400, tol=0))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, cluster.setup["job"], 2)
                await cluster.nodes["party-b"].job(job["job_id"]).fail("a simulated failure")  # tells A and C
                kept = {n: cluster.nodes[n].store.checkpoints(job["job_id"]) for n in NAMES}
                early_sweep = [sweep(cluster.nodes[n]) for n in NAMES]
                await asyncio.sleep(window + 0.2)
                for node in cluster.nodes.values():
                    sweep(node)  # the background sweep may well have done it already
                states = {n: cluster.nodes[n].job(job["job_id"]).record.state for n in NAMES}
                return kept, early_sweep, states, checkpoint_files(tmp_path)
        finally:
            await cluster.stop()

    kept, early_sweep, states, after = run(scenario())

    assert all(len(epochs) >= 2 for epochs in kept.values()), kept  # resumable within the window
    assert early_sweep == [[], [], []]
    assert states == {n: "failed" for n in NAMES}
    assert after == []


def test_resume_window_is_a_day_by_default(tmp_path):
    from vfl.service.sections import LimitsSection

    assert LimitsSection().resume_window == 86400
    with pytest.raises(ValueError):
        LimitsSection(resume_window=0)
