"""A scorecard job's stability at the services (issue 28, item 6): only served rows count (never the job's own
evaluation), the score's PSI and each party's CSI move with what is served and alarm on a shifted population, and
the values reach /metrics, `vfl jobs stability` and the job's dashboard page."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import numpy as np

from tests.cluster.test_dashboard import cookie, log_in
from tests.cluster.test_scorecard_service import TRAINING, _job, _points, _read, _run
from tests.helpers import URLS, start_cluster
from vfl.cli import main
from vfl.service.http.job_page import render_job

JOB = "st-1"


class _SyncToLoop(httpx.BaseTransport):
    """A synchronous transport for the CLI's httpx.Client, run in a thread: each request goes to the in-process
    services on the test's event loop."""

    def __init__(self, router, loop):
        self.router, self.loop = router, loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def send():
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            answer = await self.router.handle_async_request(forwarded)
            return answer.status_code, answer.headers, await answer.aread()

        status, headers, body = asyncio.run_coroutine_threadsafe(send(), self.loop).result(60)
        return httpx.Response(status, headers=headers, content=body, request=request)


def _metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value in a Prometheus exposition, by its name and labels (None: absent)."""
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) == labels:
            return float(match.group(2))
    return None


def test_only_served_rows_count_and_a_shifted_population_alarms_everywhere(tmp_path, run, monkeypatch, capsys):
    async def cli(cluster, *arguments):
        transport = _SyncToLoop(cluster.router, asyncio.get_running_loop())
        real = httpx.Client
        monkeypatch.setattr(httpx, "Client", lambda **options: real(transport=transport, **options))
        try:
            capsys.readouterr()
            code = await asyncio.to_thread(main, ["jobs", "stability", JOB, "--url", URLS["party-b"],
                                                  "--token", cluster.token, *arguments])
            return code, capsys.readouterr().out
        finally:
            monkeypatch.setattr(httpx, "Client", real)

    async def scenario():
        cluster = await start_cluster(tmp_path, population=500, key_bits=1024, training=TRAINING)
        seen = {}
        try:
            async with cluster.client() as bank, cluster.client("party-a") as shop:
                seen["status"] = await _run(bank, _job(cluster.setup, job_id=JOB))

                async def stability():
                    return ((await bank.get(f"/v1/jobs/{JOB}/stability")).json(),
                            (await shop.get(f"/v1/jobs/{JOB}/stability")).json())

                seen["after_job"] = await stability()
                seen["metrics_after_job"] = (await bank.get("/metrics")).text
                # Every aligned applicant's score, from each party's own card and file (what serving returns).
                ids = _read(tmp_path / "data" / "party-b" / "jobs" / JOB / "alignment.json")["ids"]
                base = _read(tmp_path / "data" / "party-b" / "jobs" / JOB / "scorecard.json")["base_points"]
                scores = (base + _points(tmp_path, "party-b", JOB, tmp_path / "party-b" / "bank.csv", "customer_id",
                                         ids)
                          + _points(tmp_path, "party-a", JOB, tmp_path / "party-a" / "shop.csv", "customer_id", ids))
                order = np.argsort(scores, kind="stable")
                worst = [ids[i] for i in order[: len(ids) // 8]]
                seen["ids"], seen["worst"] = ids, worst
                # Serve only the worst-scoring eighth: a population far from training.
                seen["worst_predicted"] = await bank.post(f"/v1/jobs/{JOB}/predict", json={"ids": worst})
                seen["shifted"] = await stability()
                seen["metrics_b"] = (await bank.get("/metrics")).text
                seen["metrics_a"] = (await shop.get("/metrics")).text
                seen["cli"] = await cli(cluster)
                seen["cli_json"] = await cli(cluster, "--json")
                session = await log_in(bank, cluster.token)
                seen["page_b"] = await bank.get(f"/ui/jobs/{JOB}", headers={**cookie(session), "Authorization": ""})
                shop_session = await log_in(shop, cluster.setup["tokens"]["party-a"], "party-a")
                seen["page_a"] = await shop.get(f"/ui/jobs/{JOB}",
                                                headers={**cookie(shop_session, "party-a"), "Authorization": ""})
                seen["page_anonymous"] = await bank.get(f"/ui/jobs/{JOB}", headers={"Authorization": ""})
                seen["page_unknown"] = await bank.get("/ui/jobs/no-such-job",
                                                      headers={**cookie(session), "Authorization": ""})
                # Then the rest of the aligned rows: the served population is now the training one, each row once.
                rest = [i for i in ids if i not in set(worst)]
                seen["rest_predicted"] = await bank.post(f"/v1/jobs/{JOB}/predict", json={"ids": rest})
                seen["whole"] = await stability()
                # Once B said the job is finished, a request that calls itself B's evaluation is served all the same.
                b = cluster.nodes["party-b"]
                await b.client.call_json("party-a", "POST", f"/v1/peer/jobs/{JOB}/scores",
                                         {"ids": ids[:5], "evaluation": True})
                seen["late_evaluation"] = await stability()
        finally:
            await cluster.stop()
        seen["stored"] = _read(tmp_path / "data" / "party-a" / "jobs" / JOB / "stability.json")
        seen["audit"] = "\n".join(p.read_text() for p in (tmp_path / "data" / "party-a" / "jobs" / JOB).glob("audit*"))
        return seen

    seen = run(scenario())
    assert seen["status"]["state"] == "succeeded", seen["status"]["error"]
    n, k = len(seen["ids"]), len(seen["worst"])

    # The job's evaluation scored every aligned row at both parties: none of it counts as served.
    bank, shop = seen["after_job"]
    assert bank["score"] == {"psi": 0.0, "status": "stable", "rows": 0}
    assert bank["characteristics"] and all(c["rows"] == 0 for c in bank["characteristics"])
    assert shop["characteristics"] and all(c["rows"] == 0 for c in shop["characteristics"])
    assert bank["bands"] == shop["bands"] == {"watch": 0.1, "alarm": 0.25}
    assert _metric(seen["metrics_after_job"], "vfl_score_psi", job=JOB) is None  # nothing served: no gauge yet

    # Serving the worst-scoring eighth moves the counts, and the score's PSI alarms.
    assert seen["worst_predicted"].status_code == 200, seen["worst_predicted"].text
    assert all(p["status"] == "ok" for p in seen["worst_predicted"].json()["predictions"])
    bank, shop = seen["shifted"]
    assert bank["score"]["rows"] == k and bank["score"]["psi"] >= 0.25 and bank["score"]["status"] == "alarm"
    assert all(c["rows"] == k and c["party"] == "party-b" for c in bank["characteristics"])
    assert all(c["rows"] == k and c["party"] == "party-a" for c in shop["characteristics"])
    assert max(c["csi"] for c in bank["characteristics"] + shop["characteristics"]) > 0.1

    # /metrics: B's score PSI with its status (2: alarm), and each party's own characteristics' CSI.
    psi = _metric(seen["metrics_b"], "vfl_score_psi", job=JOB)
    assert psi is not None and abs(psi - bank["score"]["psi"]) < 1e-9
    assert _metric(seen["metrics_b"], "vfl_score_psi_status", job=JOB) == 2
    assert _metric(seen["metrics_b"], "vfl_score_served_rows", job=JOB) == k
    for text, answer in ((seen["metrics_b"], bank), (seen["metrics_a"], shop)):
        for c in answer["characteristics"]:
            value = _metric(text, "vfl_characteristic_csi", job=JOB, characteristic=c["characteristic"])
            assert value is not None and abs(value - c["csi"]) < 1e-9
            status = _metric(text, "vfl_characteristic_csi_status", job=JOB, characteristic=c["characteristic"])
            assert status == {"stable": 0, "watch": 1, "alarm": 2}[c["status"]]
    assert _metric(seen["metrics_a"], "vfl_score_psi", job=JOB) is None  # the score is B's

    # vfl jobs stability: the PSI with its status and the bands, each characteristic's CSI; --json the answer.
    code, out = seen["cli"]
    assert code == 0, out
    assert f"score PSI {bank['score']['psi']:.4f} ALARM over {k} served scores" in out
    assert "stable < 0.1 <= watch < 0.25 <= alarm" in out and "alarm (>= 0.25): score" in out
    for c in bank["characteristics"]:
        assert re.search(rf"^{re.escape(c['characteristic'])}\s+party-b\s+{c['csi']:.4f}\s+{c['status'].upper()}\s+{k}$",
                         out, re.MULTILINE), out
    code, out = seen["cli_json"]
    assert code == 0 and json.loads(out) == bank

    # The dashboard's job page: B's scorecard summary (IV table, points, partners' range, bands) and stability.
    page = seen["page_b"]
    assert page.status_code == 200, page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    text = page.text
    for anchor in ('id="scorecard-iv"', 'class="scorecard-points"', 'id="scorecard-partners"', 'id="scorecard-bands"',
                   'id="stability"', 'id="stability-score" data-status="alarm"', 'id="stability-csi"'):
        assert anchor in text, anchor
    section = seen["status"]["scorecard"]
    for c in section["characteristics"]:
        assert f"{c['iv']:.4f}" in text and c["band"] in text
    assert f"AUC {section['score']['auc']:.4f}" in text and "status-alarm" in text
    assert "below 0.1 stable, 0.1 to 0.25 watch, 0.25 and above alarm" in text
    assert not re.search(r'(?:src|href)="(?!/)', text)  # nothing from elsewhere
    # A feature party's page: its own characteristics' CSI, no scorecard section (that is B's record).
    assert seen["page_a"].status_code == 200 and 'id="stability-csi"' in seen["page_a"].text
    assert 'id="scorecard-iv"' not in seen["page_a"].text
    assert seen["page_anonymous"].status_code == 303 and seen["page_anonymous"].headers["location"] == "/ui/login"
    assert seen["page_unknown"].status_code == 404 and "no-such-job" in seen["page_unknown"].text

    # Served population = the training one (each aligned row once): PSI and every CSI are ~0.
    assert seen["rest_predicted"].status_code == 200
    bank, shop = seen["whole"]
    assert bank["score"]["rows"] == n and bank["score"]["psi"] < 1e-9 and bank["score"]["status"] == "stable"
    assert all(c["rows"] == n and c["csi"] < 1e-9 for c in bank["characteristics"] + shop["characteristics"])
    # A claimed evaluation after B's "finished" counts as served, and the audit log says so.
    assert all(c["rows"] == n + 5 for c in seen["late_evaluation"][1]["characteristics"])
    assert "asked as an evaluation the job is past: counted as served" in seen["audit"]
    assert "for its evaluation of the job" in seen["audit"]
    # The counts are on disk (written at most once a second while serving, and at shutdown).
    assert [sum(c) for c in seen["stored"]["bin_counts"]] == [n + 5] * len(shop["characteristics"])


def test_the_job_page_escapes_every_value():
    evil = '<script>alert("x")</script>'
    record = {
        "job_id": "j<1>", "state": "succeeded", "stage": "done", "error": evil,
        "metrics": {"train": {"auc": 0.8}},
        "scorecard": {
            "scaling": {"points0": 600, "odds0": 1 / 19, "pdo": 50}, "base_points": 512,
            "characteristics": [{"party": evil, "name": evil, "iv": 0.31, "band": evil, "selected": True}],
            "points": {evil: {"party": evil, "characteristics": [
                {"name": evil, "bins": {"name": evil, "cuts": [1.5]}, "points": [10, 20, 0], "code": evil}]}},
            "partner_ranges": {evil: [-3, 40]},
            "score": {"split": evil, "auc": 0.7, "ks": 0.3, "gini": 0.4,
                      "bands": [{"lower": None, "upper": 500.0, "rows": 3, "events": 1, "bad_rate": 1 / 3},
                                {"lower": 500.0, "upper": None, "rows": 3, "events": 0, "bad_rate": 0.0}]},
        },
    }
    stability = {"job_id": "j<1>", "party": evil, "score": {"psi": 0.3, "status": evil, "rows": 6},
                 "characteristics": [{"party": evil, "characteristic": evil, "csi": 0.12, "status": "watch",
                                      "rows": 6}]}
    page = render_job(record, stability, scorecard_job=True)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert 'data-job-id="j&lt;1&gt;"' in page and "j<1>" not in page
    assert "[-inf, 1.5)" in page and "missing" in page  # the bins as people read them
    assert "status-watch" in page and "0.1200" in page and "-3 to 40" in page and "33.3%" in page
    assert 'data-status="&lt;script' in page  # a status that is no status word is shown escaped, never as HTML
    # Before the job serves: no stability yet, and why.
    assert "No stability here: job j&lt;1&gt; is running." in render_job(
        record, None, stability_error="job j<1> is running", scorecard_job=True)
