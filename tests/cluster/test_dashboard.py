"""The web dashboard (/ui), its cookie sessions, and /docs without a CDN.

The tests drive in-process services over httpx (cookies set by hand: httpx
keeps Secure cookies for https only). tests/system/test_dashboard_browser.py
starts the three services as real TLS processes and logs in, submits, watches
and opens the report in headless Chromium over the DevTools protocol.
"""

from __future__ import annotations

import re

from tests.helpers import URLS, demo_job, start_cluster, wait_for
from vfl.service.http.auth import Sessions, cookie_name

B_ORIGIN = URLS["party-b"]  # http://party-b.test


async def log_in(client, token: str, name: str = "party-b") -> str:
    """POST the login form of service ``name``; return the session id from the Set-Cookie header."""
    answer = await client.post("/ui/login", data={"token": token}, headers={"Authorization": ""})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui", answer.text
    match = re.match(rf"{re.escape(cookie_name(name))}=([^;]+);", answer.headers["set-cookie"])
    assert match, answer.headers["set-cookie"]
    return match.group(1)


def cookie(session: str, name: str = "party-b") -> dict[str, str]:
    return {"Cookie": f"{cookie_name(name)}={session}"}


def test_login_sets_a_strict_session_cookie_and_logout_ends_it(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                token = cluster.token
                del bank.headers["Authorization"]
                anonymous = await bank.get("/ui")
                form = await bank.get("/ui/login")
                wrong = await bank.post("/ui/login", data={"token": "not-the-token-at-all"})
                empty = await bank.post("/ui/login", content=b"")
                good = await bank.post("/ui/login", data={"token": token})
                session = re.match(rf"{re.escape(cookie_name('party-b'))}=([^;]+);", good.headers["set-cookie"]).group(1)
                page = await bank.get("/ui", headers=cookie(session))
                forged = await bank.get("/ui", headers=cookie("x" * 43))
                foreign_logout = await bank.post("/ui/logout", headers={**cookie(session),
                                                                          "Origin": "https://evil.example"})
                still = await bank.get("/v1/jobs", headers=cookie(session))
                logout = await bank.post("/ui/logout", headers={**cookie(session), "Origin": B_ORIGIN})
                after = await bank.get("/v1/jobs", headers=cookie(session))
                page_after = await bank.get("/ui", headers=cookie(session))
            return token, anonymous, form, wrong, empty, good, session, page, forged, foreign_logout, still, \
                logout, after, page_after
        finally:
            await cluster.stop()

    (token, anonymous, form, wrong, empty, good, session, page, forged, foreign_logout, still, logout, after,
     page_after) = run(scenario())

    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/login"
    assert form.status_code == 200 and 'type="password"' in form.text
    assert wrong.status_code == 401 and "Wrong token" in wrong.text and "set-cookie" not in wrong.headers
    assert empty.status_code == 401
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in good.headers["set-cookie"].split(";")}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(attributes)
    assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"] == "Path=/"
    assert token not in good.headers["set-cookie"] and token not in good.headers["location"]
    assert len(session) >= 40 and session != token
    assert page.status_code == 200 and 'id="jobs"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # Nothing on the page comes from elsewhere.
    assert not re.search(r'(?:src|href)="(?!/)', page.text)
    assert forged.status_code == 303
    assert foreign_logout.status_code == 403 and still.status_code == 200
    assert logout.status_code == 303 and logout.headers["location"] == "/ui/login"
    assert good.headers["set-cookie"].startswith("__Host-vfl-session-party-b=")
    assert f'{cookie_name("party-b")}=""' in logout.headers["set-cookie"] and "Max-Age=0" in logout.headers["set-cookie"]
    assert after.status_code == 401 and page_after.status_code == 303


def test_the_session_cookie_reads_freely_and_changes_only_from_the_page(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job(epochs=30))
        try:
            async with cluster.client() as bank:
                session = await log_in(bank, cluster.token)
                del bank.headers["Authorization"]
                ui = {**cookie(session), "X-VFL-UI": "1", "Origin": B_ORIGIN}
                jobs = await bank.get("/v1/jobs", headers=cookie(session))
                unknown = await bank.get("/v1/jobs", headers=cookie("not-a-session"))
                wrong_bearer = await bank.get("/v1/jobs", headers={**cookie(session),
                                                                   "Authorization": "Bearer wrong-token-123456"})
                submit_bare = await bank.post("/v1/jobs", json=cluster.setup["job"], headers=cookie(session))
                submitted = await bank.post("/v1/jobs", json=cluster.setup["job"], headers=ui)
                job_id = submitted.json()["job_id"]
                cancel_path = f"/v1/jobs/{job_id}/cancel"
                no_header = await bank.post(cancel_path, headers=cookie(session))
                no_header_same_origin = await bank.post(cancel_path, headers={**cookie(session), "Origin": B_ORIGIN})
                foreign = await bank.post(cancel_path, headers={**ui, "Origin": "https://evil.example"})
                cross_site = await bank.post(cancel_path, headers={**cookie(session), "X-VFL-UI": "1",
                                                                   "Sec-Fetch-Site": "cross-site"})
                running = (await bank.get(f"/v1/jobs/{job_id}", headers=cookie(session))).json()
                cancelled = await bank.post(cancel_path, headers=ui)
                record = (await bank.get(f"/v1/jobs/{job_id}", headers=cookie(session))).json()
            return jobs, unknown, wrong_bearer, submit_bare, submitted, no_header, no_header_same_origin, foreign, \
                cross_site, running, cancelled, record
        finally:
            await cluster.stop()

    (jobs, unknown, wrong_bearer, submit_bare, submitted, no_header, no_header_same_origin, foreign, cross_site,
     running, cancelled, record) = run(scenario())

    assert jobs.status_code == 200 and jobs.json() == {"jobs": []}
    assert unknown.status_code == 401
    assert wrong_bearer.status_code == 401  # a bearer header is judged on its own, cookie or not
    assert submit_bare.status_code == 403 and "X-VFL-UI" in submit_bare.json()["detail"]
    assert submitted.status_code == 201
    for refused in (no_header, no_header_same_origin, foreign, cross_site):
        assert refused.status_code == 403, refused.text
    assert running["state"] not in ("cancelled", "failed")
    assert cancelled.status_code == 200 and record["state"] == "cancelled"


def test_party_a_and_the_arbiter_serve_read_only_dashboards(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        answers = {}
        try:
            async with cluster.client() as bank:
                bank_session = await log_in(bank, cluster.token)
            for name in ("party-a", "arbiter"):
                async with cluster.client(name) as service:
                    session = await log_in(service, cluster.setup["tokens"][name], name)
                    del service.headers["Authorization"]
                    ui = {**cookie(session, name), "X-VFL-UI": "1", "Origin": URLS[name]}
                    answers[name] = {
                        "page": await service.get("/ui", headers=cookie(session, name)),
                        "jobs": await service.get("/v1/jobs", headers=cookie(session, name)),
                        "cancel": await service.post("/v1/jobs/some-job/cancel", headers=ui),
                        "b_token": await service.post("/ui/login", data={"token": cluster.token}),
                        "b_cookie": await service.get("/v1/jobs", headers=cookie(bank_session, "party-b")),
                    }
        finally:
            await cluster.stop()
        return answers

    answers = run(scenario())

    for name, answer in answers.items():
        page = answer["page"].text
        assert answer["page"].status_code == 200, name
        assert 'data-cancel="0"' in page and 'data-submit="0"' in page and 'data-report="0"' in page
        assert "submit-form" not in page and "<textarea" not in page
        assert answer["jobs"].status_code == 200
        assert answer["cancel"].status_code == 403 and "reads only" in answer["cancel"].json()["detail"]
        assert answer["b_token"].status_code == 401  # each service takes its own token only
        assert answer["b_cookie"].status_code == 401  # and its own sessions
    assert 'data-model="1"' in answers["party-a"]["page"].text
    assert 'data-model="0"' in answers["arbiter"]["page"].text


def test_docs_are_served_from_the_package(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        try:
            async with cluster.client() as bank:
                docs = await bank.get("/docs")
                assets = {url: await bank.get(url) for url in re.findall(r'(?:src|href)="([^"]+)"', docs.text)}
                redoc = await bank.get("/redoc")
                openapi = (await bank.get("/openapi.json")).json()
        finally:
            await cluster.stop()
        return docs, assets, redoc, openapi

    docs, assets, redoc, openapi = run(scenario())

    assert docs.status_code == 200
    assert not re.search(r"https?://", docs.text), "the docs page names an outside URL"
    assert {"/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"} <= set(assets)
    for url, answer in assets.items():
        assert url.startswith("/static/") and answer.status_code == 200, url
    js = assets["/static/swagger-ui/swagger-ui-bundle.js"]
    assert "charset=utf-8" in js.headers["content-type"] and len(js.content) > 500_000
    assert "'/openapi.json'" in docs.text and '"validatorUrl": null' in docs.text
    assert redoc.status_code == 404
    assert openapi["openapi"].startswith("3.1")  # why Swagger UI 5 is vendored (4.x cannot show 3.1)
    assert "/ui" not in openapi["paths"]


def test_sessions_expire_and_are_bounded():
    now = [1000.0]
    sessions = Sessions(lifetime=60, limit=3, clock=lambda: now[0])
    first = sessions.open()
    assert sessions.valid(first) and not sessions.valid("") and not sessions.valid(None)
    assert first not in sessions._expiry  # only digests are kept
    now[0] += 61
    assert not sessions.valid(first) and len(sessions) == 0
    opened = [sessions.open() for _ in range(4)]
    assert len(sessions) == 3 and not sessions.valid(opened[0]) and all(sessions.valid(s) for s in opened[1:])
    sessions.close(opened[1])
    assert not sessions.valid(opened[1])


def test_a_jobs_page_and_the_models_view_have_their_panels_and_the_status_their_story(tmp_path, run):
    async def scenario():
        cluster = await start_cluster(tmp_path, **demo_job())
        seen = {}
        try:
            async with cluster.client() as bank:
                job_id = (await bank.post("/v1/jobs", json=cluster.setup["job"])).json()["job_id"]
                seen["status"] = await wait_for(bank, job_id)
                await bank.post("/v1/models/credit/promote", json={"job_id": job_id})
                session = await log_in(bank, cluster.token)
                del bank.headers["Authorization"]
                seen["page_b"] = await bank.get(f"/ui/jobs/{job_id}", headers=cookie(session))
                seen["models_b"] = await bank.get("/ui/models", headers=cookie(session))
                seen["list_b"] = await bank.get("/ui", headers=cookie(session))
            for name in ("party-a", "arbiter"):
                async with cluster.client(name) as service:
                    seen[f"status_{name}"] = (await service.get(f"/v1/jobs/{job_id}")).json()
                    session = await log_in(service, cluster.setup["tokens"][name], name)
                    del service.headers["Authorization"]
                    seen[f"page_{name}"] = await service.get(f"/ui/jobs/{job_id}", headers=cookie(session, name))
                    seen[f"models_{name}"] = await service.get("/ui/models", headers=cookie(session, name))
        finally:
            await cluster.stop()
        return seen

    seen = run(scenario())

    status = seen["status"]
    assert status["state"] == "succeeded", status["error"]
    stages = [move["stage"] for move in status["timeline"]]
    assert stages[0] == "psi" and stages[-1] == "done" and stages.index("training") < stages.index("evaluating")
    messages = [event["message"] for event in status["events"]]
    assert messages[0].startswith("submitted") and messages[-1].startswith("succeeded after")
    assert sum(m.startswith("epoch ") for m in messages) == status["epoch"]
    assert status["progress"]["fraction"] == 1.0 and status["waiting_for"] == []
    # A feature party keeps its own story: its epochs, without the losses it does not know.
    shop = seen["status_party-a"]
    assert [m["stage"] for m in shop["timeline"]][-1] == "done"
    assert any("the losses are known to party B" in e["message"] for e in shop["events"])
    assert not any("loss 0." in e["message"] for e in shop["events"])

    page = seen["page_b"]
    assert page.status_code == 200
    for panel in ("timeline", "curves", "metrics-live", "timings", "job-models", "ledger", "events", "report"):
        assert f'id="{panel}"' in page.text, panel
    assert '<script src="/static/ui/job.js"></script>' in page.text
    assert "frame-src 'self'" in page.headers["content-security-policy"]  # the report, inline, from this service
    assert not re.search(r'(?:src|href)="(?!/)', page.text)
    assert 'id="report"' not in seen["page_party-a"].text and 'id="events"' in seen["page_party-a"].text
    assert 'id="job-search"' in seen["list_b"].text and 'id="state-filter"' in seen["list_b"].text
    assert seen["models_b"].status_code == 200 and 'id="models-body"' in seen["models_b"].text
    assert '<script src="/static/ui/models.js"></script>' in seen["models_b"].text
    assert seen["models_party-a"].status_code == 200
    assert seen["models_arbiter"].status_code == 404 and "no model part" in seen["models_arbiter"].text
    assert 'href="/ui/models"' not in seen["page_arbiter"].text
