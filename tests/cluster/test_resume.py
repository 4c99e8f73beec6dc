"""A service that dies mid-training comes back and the job ends with the uninterrupted model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from tests.helpers import demo_job, start_cluster, submit_until_epoch, wait_for
from vfl.ml.config import TrainingConfig
from vfl.data.table import load_csv
from vfl.service.config import load_config
from vfl.service.lifecycle import Stage
from vfl.service.node import Node
from vfl.service.stages.pipeline import LABEL_PARTY, Step
from vfl.local.simulate import simulate

SETTINGS = dict(epochs=10, tol=0, batch_size=150, validation_fraction=0.2, optimizer="adam")


async def crash_and_restart(cluster, name: str, downtime: float = 0.3) -> None:
    """Stop a node without telling anyone, as a kill would, and start a new one on its data."""
    host = f"{name}.test"
    victim = cluster.nodes[name]
    del cluster.router.apps[host]
    await victim.stop_tasks()
    await asyncio.sleep(downtime)
    config = load_config(cluster.workdir / f"{name}.toml")
    node = Node(config, transport=cluster.router)
    app = create_arbiter_app(config, node=node) if name == "arbiter" else create_party_app(config, node=node)
    cluster.router.apps[host] = app
    cluster.nodes[name] = node
    await node.startup()


def uninterrupted(tmp_path, keypair, training):
    shop = load_csv(tmp_path / "party-a" / "shop.csv", id_column="customer_id")
    bank = load_csv(tmp_path / "party-b" / "bank.csv", id_column="customer_id", label_column="default", model="logistic")
    return simulate(shop, bank, TrainingConfig(**training), keypair=keypair)


# Each victim is also SIGKILLed for real in tests/system/test_faults.py; party A stays here in-process.
@pytest.mark.parametrize("victim", ["party-a", pytest.param("party-b", marks=pytest.mark.slow),
                                    pytest.param("arbiter", marks=pytest.mark.slow)])
def test_a_crashed_service_resumes_and_the_model_is_unchanged(tmp_path, run, keypair, victim):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(**SETTINGS))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, cluster.setup["job"], 3)
                await crash_and_restart(cluster, victim)
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                status = await wait_for(bank, job["job_id"])
                models = [(await c.get(f"/v1/jobs/{job['job_id']}/model")).json() for c in (shop, bank)]
            checkpoint_dirs = [p for p in tmp_path.glob("data/*/jobs/*/checkpoints") if any(p.iterdir())]
            return status, models, checkpoint_dirs
        finally:
            await cluster.stop()

    status, (model_a, model_b), leftover = run(scenario())
    reference = uninterrupted(tmp_path, keypair, {**SETTINGS, "key_bits": 1024})

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] == 1
    assert np.allclose(model_a["weights"], reference["model_parts"]["party_a"]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(model_b["weights"], reference["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-12)
    assert leftover == []  # checkpoints (which hold the arbiter's key) are gone once B has the model


def test_a_peer_that_stays_down_fails_the_job_with_a_readable_error(tmp_path, run):
    async def scenario():
        limits = {name: {"peer_timeout": 1.5, "heartbeat": 0.5} for name in ("party-a", "party-b", "arbiter")}
        cluster = await start_cluster(tmp_path, limits=limits, **demo_job(epochs=400, tol=0))
        try:
            async with cluster.client() as bank:
                job = await submit_until_epoch(bank, cluster.setup["job"], 2)
                del cluster.router.apps["party-a.test"]  # A goes away and never comes back
                await cluster.nodes["party-a"].stop_tasks()
                return await wait_for(bank, job["job_id"], timeout=60)
        finally:
            await cluster.stop()

    status = run(scenario())

    assert status["state"] == "failed"
    assert "party-a" in status["error"] and "unreachable for" in status["error"] and "peer_timeout = 1.5s" in status["error"]


def test_party_b_restarted_after_training_ended_everywhere_takes_up_its_final_model(tmp_path, run, keypair):
    """As when B stops while a multi-class job's class trainings run: the peers finished the job, B did not.

    B is held in its evaluation (training has ended, and every other party's part is saved), then killed; the
    restarted B must not ask the finished peers to train again, but evaluate its own final model.
    """
    held = asyncio.Event()

    async def hold(ctx):  # B's evaluation never ends: the restarted B (with the usual steps) does it
        held.set()
        await asyncio.Event().wait()

    steps = tuple(Step(step.stage, hold) if step.stage is Stage.EVALUATING else step for step in LABEL_PARTY)
    settings = {**SETTINGS, "epochs": 3}

    async def scenario():
        cluster = await start_cluster(tmp_path, bank_steps=steps, **demo_job(**settings))
        try:
            async with cluster.client() as bank:
                job = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()
                await asyncio.wait_for(held.wait(), timeout=120)
                await crash_and_restart(cluster, "party-b")
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                status = await wait_for(bank, job["job_id"])
                models = [(await c.get(f"/v1/jobs/{job['job_id']}/model")).json() for c in (shop, bank)]
            return status, models
        finally:
            await cluster.stop()

    status, (model_a, model_b) = run(scenario())
    reference = uninterrupted(tmp_path, keypair, {**settings, "key_bits": 1024})

    assert status["state"] == "succeeded", status["error"]
    assert status["resumes"] == 1 and status["epoch"] == reference["epochs_run"]
    assert np.allclose(model_a["weights"], reference["model_parts"]["party_a"]["weights"], atol=1e-12, rtol=0)
    assert np.allclose(model_b["weights"], reference["model_parts"]["party_b"]["weights"], atol=1e-12, rtol=0)
    assert status["loss_history"] == pytest.approx(reference["loss_history"], abs=1e-12)
