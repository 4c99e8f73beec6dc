"""The three services as real `vfl serve` processes on loopback, driven like curl would."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import httpx
import pandas as pd

from vfl.demo.services import running_services, wait_healthy, write_demo_files


def test_three_processes_run_a_posted_job_json(tmp_path):
    setup = write_demo_files(tmp_path, population=900, key_bits=1024, training={"epochs": 5})  # validation 0.2
    job = json.loads((tmp_path / "job.json").read_text())
    headers = {"Authorization": f"Bearer {(tmp_path / 'party-b' / 'token').read_text()}"}

    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        verify = ssl.create_default_context(cafile=setup["verify"])
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, timeout=60, verify=verify) as bank:
            submitted = bank.post("/v1/jobs", json=job)
            assert submitted.status_code == 201
            job_id = submitted.json()["job_id"]
            for _ in range(1200):
                status = bank.get(f"/v1/jobs/{job_id}").json()
                if status["state"] in ("succeeded", "failed", "cancelled"):
                    break
                subprocess.run(["sleep", "0.1"], check=True)
            ids = sorted(set(pd.read_csv(tmp_path / "party-b" / "bank.csv")["customer_id"]) &
                         set(pd.read_csv(tmp_path / "party-a" / "shop.csv")["customer_id"]))[:3]
            predicted = bank.post(f"/v1/jobs/{job_id}/predict", json={"ids": ids})
            docs = bank.get("/docs")
            openapi = bank.get("/openapi.json").json()

    assert status["state"] == "succeeded", status["error"]
    assert status["epoch"] == 5 and status["metrics"]["train"]["auc"] > 0.7
    # The same job through `vfl simulate --config job.json` gives the same model.
    simulated = tmp_path / "simulated.json"
    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "simulate", "--party-a", str(tmp_path / "party-a" / "shop.csv"), "--party-b",
         str(tmp_path / "party-b" / "bank.csv"), "--id-column", "customer_id", "--label-column", "default",
         "--config", str(tmp_path / "job.json"), "--out", str(simulated), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    expected = json.loads(simulated.read_text())["metrics"]
    for split in ("train", "validation"):
        for name, value in expected[split].items():
            if isinstance(value, float):
                assert abs(status["metrics"][split][name] - value) < 0.005, (split, name)
    assert [p["id"] for p in predicted.json()["predictions"]] == ids
    assert docs.status_code == 200
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/predict", "/v1/jobs/{job_id}/cancel"} <= set(openapi["paths"])
    assert all(p.returncode is not None for p in processes.values())  # all three stopped afterwards


def test_vfl_demo_end_to_end(tmp_path):
    out = tmp_path / "metrics.json"

    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "demo", "--workdir", str(tmp_path / "work"), "--out", str(out),
         "--customers", "1500", "--key-bits", "1024", "--epochs", "8"],
        capture_output=True, text=True, timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for side in ("federated", "baseline"):
        assert set(result[side]["metrics"]) >= {"auc", "accuracy", "precision", "recall", "f1"}
    assert result["federated"]["metrics"]["auc"] > result["baseline"]["metrics"]["auc"]
    for name in ("party-a.toml", "party-b.toml", "arbiter.toml", "job.json", "party-a/shop.csv", "party-b/bank.csv"):
        assert (tmp_path / "work" / name).is_file()
    assert "federated" in done.stdout and "bank only" in done.stdout


def test_vfl_demo_scorecard_prints_the_banks_points_a_partners_range_and_an_applicants_reasons(tmp_path):
    # Arrange / Act: the joint scorecard over three real services (issue 28).
    done = subprocess.run(
        [sys.executable, "-m", "vfl.cli", "demo", "--scorecard", "--workdir", str(tmp_path / "work"),
         "--customers", "2000", "--key-bits", "1024", "--epochs", "8"],
        capture_output=True, text=True, timeout=600,
    )

    # Assert
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "the bank's points table (kept by the bank):" in out
    assert "party-a's points (each table kept by its owner): totals from" in out
    reasons = next(line for line in out.splitlines() if line.startswith("applicant "))
    assert "principal reasons:" in reasons and reasons.count(";") <= 3  # at most four reasons
    job = json.loads((tmp_path / "work" / "job.json").read_text())
    assert job["scorecard"] == {}
    # The shop's table never reaches the bank: no line of the printout names a shop characteristic's bin.
    shop_columns = (tmp_path / "work" / "party-a" / "shop.csv").read_text().splitlines()[0].split(",")[1:]
    table = out.split("the bank's points table (kept by the bank):")[1].split("'s points (each table")[0]
    assert not any(line.split()[0] in shop_columns for line in table.strip().splitlines()[:-1] if line.strip())


def test_vfl_jobs_watch_follows_a_job_to_the_end(tmp_path):
    setup = write_demo_files(tmp_path, population=600, key_bits=1024, training={"epochs": 4})
    with running_services(tmp_path) as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path, verify=setup["verify"])
        verify = ssl.create_default_context(cafile=setup["verify"])
        headers = {"Authorization": f"Bearer {setup['token']}"}
        with httpx.Client(base_url=setup["urls"]["party-b"], headers=headers, verify=verify) as bank:
            job_id = bank.post("/v1/jobs", json=setup["job"]).json()["job_id"]
        watched = subprocess.run(
            [sys.executable, "-m", "vfl.cli", "jobs", "watch", setup["urls"]["party-b"], job_id, "--ca",
             setup["verify"], "--interval", "0.2"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "VFL_TOKEN": setup["token"]},
        )

    assert watched.returncode == 0, watched.stderr
    assert "succeeded (max_epochs)" in watched.stderr and "[########################] epoch 4/4" in watched.stderr
    assert "auc" in watched.stdout
