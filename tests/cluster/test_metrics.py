"""GET /metrics: Prometheus text, per service, behind the orchestration token or a scrape token."""

from __future__ import annotations

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import URLS, demo_job, start_cluster, wait_for
from vfl.demo.services import write_demo_files
from vfl.errors import ConfigError
from vfl.service.config import load_config

SCRAPE = "scrape-only-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_after_a_job(tmp_path, run):
    (tmp_path / "scrape-token").write_text(SCRAPE + "\n")

    async def scenario():
        extra = {"party-b": '[metrics]\nscrape_token_file = "scrape-token"\n'}
        cluster = await start_cluster(tmp_path, extra=extra, **demo_job(epochs=3, tol=0, validation_fraction=0.2))
        seen = {}
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop, \
                    cluster.client(token="not-the-token-at-all") as stranger, cluster.client(token=SCRAPE) as scraper:
                job = {**cluster.setup["job"], "job_id": "counted"}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, "counted")
                ids = pd.read_csv(tmp_path / "party-b" / "bank.csv", dtype=str)["customer_id"].head(3).tolist()
                assert (await bank.post("/v1/jobs/counted/predict", json={"ids": ids})).status_code == 200
                assert (await bank.post("/v1/jobs", json={"party_b": 1})).status_code == 422  # a refusal
                # A message for a finished job, to A's peer endpoint: refused (409 JobError).
                late = await shop.post("/v1/peer/jobs/counted/messages/anything", content=b"x",
                                       headers={"X-VFL-Party": "party-b", "Authorization": ""})
                assert late.status_code == 409, late.text

                seen["anonymous"] = await stranger.get("/metrics", headers={"Authorization": ""})
                seen["wrong"] = await stranger.get("/metrics")
                seen["scrape_elsewhere"] = await scraper.get("/v1/jobs")
                seen["scraper"] = await scraper.get("/metrics")
                seen["bank"] = await bank.get("/metrics")
                seen["shop_with_bank_scrape_token"] = await shop.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
                seen["shop"] = await shop.get("/metrics")
            return status, seen, cluster.nodes["party-b"].engine.workers
        finally:
            await cluster.stop()

    status, seen, workers = run(scenario())

    assert status["state"] == "succeeded", status["error"]
    # Without a token, with a wrong one, and the scrape token anywhere else than /metrics: 401.
    for refused in ("anonymous", "wrong", "scrape_elsewhere", "shop_with_bank_scrape_token"):
        assert seen[refused].status_code == 401, (refused, seen[refused].text)
    assert seen["scraper"].status_code == seen["bank"].status_code == seen["shop"].status_code == 200
    assert seen["bank"].headers["content-type"].startswith("text/plain")
    bank = samples(seen["scraper"].text)
    shop = samples(seen["shop"].text)

    assert bank[("vfl_jobs", (("state", "succeeded"),))] == 1
    assert bank[("vfl_jobs", (("state", "failed"),))] == 0
    assert bank[("vfl_epoch_duration_seconds_count", ())] == 3 == shop[("vfl_epoch_duration_seconds_count", ())]
    assert bank[("vfl_epoch_duration_seconds_sum", ())] > 0
    for peer in ("party-a", "arbiter"):
        for direction in ("sent", "received"):
            assert bank[("vfl_peer_messages_total", (("direction", direction), ("peer", peer)))] > 0
            assert bank[("vfl_peer_message_bytes_total", (("direction", direction), ("peer", peer)))] > 100
    assert ("vfl_peer_messages_total", (("direction", "sent"), ("peer", "party-a"))) not in shop  # each its own
    assert bank[("vfl_prediction_duration_seconds_count", (("kind", "predict"),))] == 1
    assert shop[("vfl_prediction_duration_seconds_count", (("kind", "partial_scores"),))] >= 2  # evaluation, predict
    assert bank[("vfl_refusals_total", (("reason", "BadToken"),))] == 3  # anonymous, wrong, scrape token on /v1/jobs
    assert bank[("vfl_refusals_total", (("reason", "ValidationError"),))] == 1
    assert shop[("vfl_refusals_total", (("reason", "JobError"),))] == 1
    assert shop[("vfl_refusals_total", (("reason", "BadToken"),))] == 1  # B's scrape token is B's only
    assert bank[("vfl_worker_pool_size", ())] == workers


def test_a_scrape_token_too_short_or_unreadable_stops_the_service_at_start(tmp_path):
    write_demo_files(tmp_path, urls=URLS, tls=False, population=200, key_bits=1024)
    config = tmp_path / "party-b.toml"
    base = config.read_text()
    config.write_text(base + '\n[metrics]\nscrape_token_file = "missing-token"\n')
    with pytest.raises(ConfigError, match="metrics.scrape_token_file"):
        load_config(config)
    config.write_text(base + '\n[metrics]\nscrape_token = "short"\n')
    with pytest.raises(ConfigError, match="metrics.scrape_token"):
        load_config(config)
