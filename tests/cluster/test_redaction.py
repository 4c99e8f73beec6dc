"""Party A's errors reach party B without A's paths or file names, and A keeps the detail.

Party A's dataset is made unreadable, damaged, or given a bad column, at the three
moments A reads it for B: registration, alignment (mid-job) and scoring. Each time
B hears what went wrong, but no path of A's and not the name of A's file; A's own
log (and its job record, where it has one) keeps the full message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import httpx
import pandas as pd

from tests.helpers import demo_job, start_cluster, wait_for
from vfl.errors import DataError
from vfl.service.config import load_config
from vfl.service.redact import PLACEHOLDER, local_paths, peer_message, redact

AS_PARTY_B = {"X-VFL-Party": "party-b"}  # insecure in-process cluster: peers are known by this header


def damage(path: Path, text: str) -> None:
    """Overwrite a CSV and move its mtime on, so the service's cache cannot miss the change."""
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text)
    later = max(time.time(), before) + 10
    os.utime(path, (later, later))


def record_traffic(cluster) -> list[tuple[str, str, str, int, str]]:
    """Keep (host, path, request body, status, answer body) of every call between the services."""
    seen: list[tuple[str, str, str, int, str]] = []
    route = cluster.router.handle_async_request

    async def recording(request: httpx.Request) -> httpx.Response:
        response = await route(request)
        body = await response.aread()
        seen.append((request.url.host, request.url.path, request.content.decode(errors="replace"),
                     response.status_code, body.decode(errors="replace")))
        return response

    cluster.router.handle_async_request = recording
    return seen


def leaks(text: str, workdir: Path, dataset: Path) -> list[str]:
    """Which of A's local names appear in ``text`` (none may)."""
    names = [str(workdir), str(dataset), dataset.name, str(dataset.parent), "party-a/"]
    return [name for name in names if name in text]


# -- the redaction function ------------------------------------------------------------------


def test_redact_replaces_paths_and_file_names_but_keeps_the_problem():
    text = ("dataset 'behaviour': cannot read /srv/shop data/customers.csv ([Errno 2] No such file or directory: "
            "'/srv/shop data/customers.csv'); also ./exports/x.parquet, ~/keys/a.pem, data/shop.csv, "
            r"C:\Users\shop\sales.csv and orders_2024.csv")

    out = redact(text, ["/srv/shop data/customers.csv"])

    assert out == (f"dataset 'behaviour': cannot read {PLACEHOLDER} ([Errno 2] No such file or directory: "
                   f"'{PLACEHOLDER}'); also {PLACEHOLDER}, {PLACEHOLDER}, {PLACEHOLDER}, {PLACEHOLDER} and {PLACEHOLDER}")


def test_redact_leaves_api_routes_urls_field_names_and_fractions_alone():
    text = ("peer 'party-a' refused POST /v1/peer/jobs/j1/scores: could not reach https://10.0.0.5:8701/v1/health; "
            "training.key_bits=768 is below 1024; 3/4 of the rows; content type application/vnd.vfl.message")

    assert redact(text) == text


def test_redact_keeps_sentence_punctuation_after_a_path():
    assert redact("cannot open /var/lib/vfl/jobs: gone. See /etc/vfl/token.") == \
        f"cannot open {PLACEHOLDER}: gone. See {PLACEHOLDER}."


def test_peer_message_prefers_the_public_message_and_scrubs_the_config_paths(tmp_path):
    config_file = tmp_path / "shop.toml"
    config_file.write_text('[party]\nid = "shop"\nrole = "A"\ndata_dir = "state"\napi_token = "0123456789abcdef0"\n'
                           'insecure = true\n[datasets.behaviour]\npath = "private/shop-2024"\nid_column = "id"\n')
    config = load_config(config_file)
    dataset = str(tmp_path / "private" / "shop-2024")  # no extension: only the config can tell it is a file
    plain = DataError(f"{dataset}: no ID column 'id'")
    public = DataError(f"{dataset}: no ID column 'id'", public="dataset 'behaviour': no ID column 'id'")

    assert dataset in local_paths(config)
    assert peer_message(plain, config) == f"{PLACEHOLDER}: no ID column 'id'"
    assert peer_message(public, config) == "dataset 'behaviour': no ID column 'id'"
    assert str(public) == f"{dataset}: no ID column 'id'"  # the local message keeps the path


# -- through HTTP: what B and A's peer endpoints say, and what A keeps ---------------------------


def test_party_a_data_problems_reach_party_b_without_party_a_paths(tmp_path, run, caplog):
    caplog.set_level(logging.INFO, logger="vfl.service")

    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=2))
        dataset = cluster.nodes["party-a"].config.datasets["behaviour"].path
        good = dataset.read_text()
        traffic = record_traffic(cluster)  # what the services told each other, as sent
        seen = {}
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                # 1. A good job, so that A has a model to score with.
                done = await wait_for(bank, (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()["job_id"])
                assert done["state"] == "succeeded", done["error"]
                job_id = done["job_id"]
                bank_ids = pd.read_csv(cluster.setup["data"]["party-b"], dtype=str)["customer_id"]
                ids = sorted(set(bank_ids) & set(pd.read_csv(dataset, dtype=str)["customer_id"]))[:2]

                # 2a. Damaged: a NaN in one row of A's features, found when B asks for partial scores.
                #     That ID is not scored; the others are.
                header, *rows = good.splitlines()
                damaged = [r if not r.startswith(ids[0] + ",") else ",".join([ids[0], "NaN", *r.split(",")[2:]])
                           for r in rows]
                damage(dataset, "\n".join([header, *damaged]) + "\n")
                seen["nan_predict"] = await bank.post(f"/v1/jobs/{job_id}/predict", json={"ids": ids})
                seen["nan_scores"] = await shop.post(f"/v1/peer/jobs/{job_id}/scores", json={"ids": ids},
                                                     headers=AS_PARTY_B)
                # 2b. Damaged: the model's columns are gone from A's file, a problem of the whole dataset.
                damage(dataset, f"customer_id,spend\n{ids[0]},1\n{ids[1]},3\n")
                seen["predict"] = await bank.post(f"/v1/jobs/{job_id}/predict", json={"ids": ids})
                seen["scores"] = await shop.post(f"/v1/peer/jobs/{job_id}/scores", json={"ids": ids}, headers=AS_PARTY_B)

                # 3. Unreadable: A's file is gone when B registers a job with A.
                dataset.unlink()
                seen["submit"] = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "gone"})
                seen["register"] = next(t for t in traffic  # B's registration of "gone" with A
                                        if t[:2] == ("party-a.test", "/v1/peer/jobs") and '"gone"' in t[2])

                # 4. A bad column, mid-job: fine when A checks it at registration, renamed before
                #    A reads it again (at the end of alignment, or for training or scoring).
                damage(dataset, good)
                started = await bank.post("/v1/jobs", json={**cluster.setup["job"], "job_id": "renamed"})
                assert started.status_code == 201, started.text
                damage(dataset, good.replace("customer_id", "client", 1))
                seen["status"] = await wait_for(bank, "renamed")
                seen["state"] = await shop.get("/v1/peer/jobs/renamed/state", headers=AS_PARTY_B)
                await asyncio.sleep(0.1)  # let A's own failure settle before reading its record
                seen["a_record"] = cluster.nodes["party-a"].job("renamed").record.error or ""
        finally:
            await cluster.stop()
        return dataset, seen, traffic

    dataset, seen, traffic = run(scenario())
    a_log = "\n".join(record.getMessage() for record in caplog.records)

    # Damaged, at scoring time.
    assert seen["nan_scores"].status_code == 200 and seen["nan_scores"].json()["status"] == ["not available", "ok"]
    assert [p["status"] for p in seen["nan_predict"].json()["predictions"]] == ["not available at party-a", "ok"]
    assert seen["scores"].status_code == 422
    assert "dataset 'behaviour'" in seen["scores"].json()["detail"] and "monthly_spend" in seen["scores"].json()["detail"]
    assert seen["predict"].status_code == 502 and "monthly_spend" in seen["predict"].json()["detail"]
    # Unreadable, at registration: A's raw answer to B, and what B tells its orchestrator.
    _, _, _, status, answer = seen["register"]
    assert status == 422
    assert json.loads(answer)["detail"] == "dataset 'behaviour': cannot read its file (No such file or directory)"
    assert seen["submit"].status_code == 422 and "cannot read its file" in seen["submit"].json()["detail"]
    # A bad column, mid-job: B's job fails and says why.
    assert seen["status"]["state"] == "failed"
    assert "no ID column 'customer_id'" in seen["status"]["error"], seen["status"]["error"]
    assert seen["state"].status_code == 200
    # A told B and C why it stopped (a fail notice), or refused B's next call.
    from_a = [t for t in traffic if t[1].endswith("/renamed/fail") and "party A" in t[2]]
    refused_by_a = [t for t in traffic if t[0] == "party-a.test" and t[3] >= 400]
    assert from_a or any("/renamed/" in t[1] for t in refused_by_a)
    # None of it names A's files: not in B's answers to its orchestrator, not in anything A sent.
    answers = [seen[k].text for k in ("scores", "predict", "nan_scores", "nan_predict", "submit", "state")] + [seen["status"]["error"]]
    answers += [t[2] for t in from_a] + [t[4] for t in refused_by_a]
    for text in answers:
        assert leaks(text, tmp_path, dataset) == [], text
    # A's own log keeps the full story: the file's path with each problem.
    assert f"{dataset} has no column(s)" in a_log and "1 invalid features" in (dataset.parent.parent / "data"
                                                                              / "party-a" / "jobs").joinpath(
        seen["nan_predict"].json()["job_id"], "audit.log").read_text()
    assert f"cannot read {dataset}" in a_log
    assert f"{dataset}: no ID column 'customer_id'" in a_log
    assert seen["a_record"]  # A's record says why the job stopped (A's own reason, or B's notice)
