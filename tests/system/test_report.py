"""The job report served by party B, rendered in a real (headless) browser."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from tests.helpers import demo_job, start_cluster, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def render_in_chromium(page, profile) -> str:
    done = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--window-size=1280,3000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_report_renders_in_a_browser_with_its_figures(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=6, validation_fraction=0.2))
        try:
            async with cluster.client() as bank:
                job = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()
                status = await wait_for(bank, job["job_id"])
                page = await bank.get(f"/v1/jobs/{job['job_id']}/report")
                del bank.headers["Authorization"]
                anonymous = await bank.get(f"/v1/jobs/{job['job_id']}/report")
            async with cluster.client("party-a") as shop:
                own = (await shop.get(f"/v1/jobs/{job['job_id']}")).json()
                path = f"/v1/peer/jobs/{job['job_id']}/convergence"
                by_arbiter = await shop.get(path, headers={"X-VFL-Party": "arbiter"})
            return status, page, anonymous, own, by_arbiter
        finally:
            await cluster.stop()

    status, page, anonymous, own, by_arbiter = run(scenario())
    path = tmp_path / "report.html"
    path.write_text(page.text)

    dom = render_in_chromium(path, tmp_path / "profile")

    assert status["state"] == "succeeded"
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert anonymous.status_code == 401
    assert (tmp_path / "data" / "party-b" / "jobs" / status["job_id"] / "report.html").is_file()
    # loss, parameters, ROC and KS, gains and lift, calibration: all decode and draw, none shrunk past reading
    assert re.search(r'data-figures="5"', dom) and re.search(r'data-figures-loaded="5"', dom), dom[-500:]
    scales = [float(s) for s in re.search(r'data-figure-scales="([^"]*)"', dom).group(1).split(",")]
    assert len(scales) == 5 and min(scales) > 0.85, scales
    sections = ["Headline: what party A adds", "Job", "Party B's coefficients", "How the model ranks and decides",
                "Metrics", "Ledger", "Training", "Privacy", "Alignment (RSA blind-signature PSI)", "Timings",
                "What each party learned", "Configuration"]
    assert [html.unescape(h) for h in re.findall(r"<h2>(.*?)</h2>", dom)] == sections
    assert "No ledger entry: party B has no key to sign with" in dom  # plain HTTP and no [ledger] key here
    # The headline is the job's own numbers: federated against party B alone on the validation rows.
    job_dir = tmp_path / "data" / "party-b" / "jobs" / status["job_id"]
    record = json.loads((job_dir / "job.json").read_text())["data"]
    uplift = dict(re.findall(r'<tr data-metric="(\w+)"><td>[^<]*</td><td><span data-value="([^"]+)"', dom))
    alone = dict(re.findall(r'<tr data-metric="(\w+)"><td>[^<]*</td><td>.*?</td><td><span data-value="([^"]+)"', dom))
    assert {k: float(v) for k, v in uplift.items()} == {k: record["metrics"]["validation"][k]
                                                        for k in ("auc", "ks", "recall")}
    assert {k: float(v) for k, v in alone.items()} == {k: record["baseline"]["metrics"]["validation"][k]
                                                       for k in ("auc", "ks", "recall")}
    # B's coefficients are the weights of the model it saved (the epoch it keeps), by name.
    model = json.loads((job_dir / "model.json").read_text())["data"]
    coefficients = {k: float(v) for k, v in re.findall(r'<tr data-feature="(\w+)"><td>.*?data-value="([^"]+)"', dom)}
    assert coefficients == {**dict(zip(model["feature_names"], model["weights"])), "intercept": model["intercept"]}
    assert "Party A's 7 weights stay with party A" in dom
    # Party A keeps its weights: it sees its own trajectory, B gets only its norms per epoch.
    epochs = status["epoch"]
    assert len(own["parameters"]["history"]) == epochs and len(own["parameters"]["names"]) == 7
    assert len(status["party_a_convergence"]["weight_norm"]) == epochs
    assert "history" not in status["party_a_convergence"]
    assert by_arbiter.status_code == 403
