"""The web dashboard (/ui), its cookie sessions, and /docs without a CDN.

The plain tests drive in-process services over httpx (cookies set by hand:
httpx keeps Secure cookies for https only). The last test starts the three
services as real TLS processes and logs in, submits, watches and opens the
report in headless Chromium over the DevTools protocol.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.services.browser import CHROMIUM, Browser
from tests.services.conftest import URLS, demo_job, start_cluster
from vfl.demo.services import running_services, wait_healthy, write_demo_files
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


# -- in a real browser ----------------------------------------------------------------------------

@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_dashboard_in_chromium_logs_in_watches_a_job_cancels_one_and_opens_a_report(tmp_path):
    # Every epoch runs (no early stop), in mini-batches so that the page has a few to show.
    training = {"epochs": 10, "tol": 0, "early_stopping_rounds": 0, "batch_size": 128}
    setup = write_demo_files(tmp_path / "demo", population=600, key_bits=1024, training=training)
    bank, shop = setup["urls"]["party-b"], setup["urls"]["party-a"]
    with running_services(tmp_path / "demo") as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path / "demo", verify=setup["verify"])
        # The demo CA is not in Chromium's store; the services still present their certificates.
        with Browser(tmp_path / "profile", "--ignore-certificate-errors") as browser:
            browser.goto(f"{bank}/ui")
            browser.wait_for("location.pathname === '/ui/login' && !!document.getElementById('token')")
            browser.evaluate(f"document.getElementById('token').value = {json.dumps(setup['token'])};"
                             "document.querySelector('form.login button').click()")
            browser.wait_for("location.pathname === '/ui' && !!document.getElementById('jobs-body')")
            script_sees_cookie = browser.evaluate("document.cookie")

            # Submit through the page's form, then watch the row.
            browser.evaluate(f"document.querySelector('details.submit').open = true;"
                             f"document.getElementById('spec').value = {json.dumps(json.dumps(setup['job']))};"
                             "document.querySelector('#submit-form button').click()")
            submitted = browser.wait_for("(t => t.startsWith('submitted') || t.startsWith('refused') ? t : '')"
                                         "(document.getElementById('submit-result').textContent)")
            row = f"document.querySelector('#jobs-body tr[data-job-id=\"{submitted.split()[-1]}\"]')"
            seen: list[tuple[str, int, str]] = []
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                state = browser.evaluate(f"{row} ? [{row}.dataset.state, +{row}.dataset.epoch, "
                                         f"{row}.querySelector('.epoch').textContent] : null")
                if state and (not seen or tuple(state) != seen[-1]):
                    seen.append(tuple(state))
                if state and state[0] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.1)
            bar = browser.evaluate(f"[{row}.querySelector('progress').value, {row}.querySelector('progress').max]")
            cancel_hidden = browser.evaluate(f"{row}.querySelector('button.cancel').hidden")
            metrics = browser.evaluate(f"{row}.querySelector('td.metrics').textContent")

            # A second, long job, cancelled with the page's two-step button (a same-origin POST with the cookie).
            long_job = {**setup["job"], "training": {**setup["job"]["training"], "epochs": 500}}
            browser.evaluate(f"document.getElementById('spec').value = {json.dumps(json.dumps(long_job))};"
                             "document.getElementById('submit-result').textContent = '';"
                             "document.querySelector('#submit-form button').click()")
            second = browser.wait_for("(t => t.startsWith('submitted') || t.startsWith('refused') ? t : '')"
                                      "(document.getElementById('submit-result').textContent)")
            second_row = f"document.querySelector('#jobs-body tr[data-job-id=\"{second.split()[-1]}\"]')"
            browser.wait_for(f"!!{second_row}")
            browser.evaluate(f"{second_row}.querySelector('button.cancel').click()")
            armed = browser.evaluate(f"{second_row}.querySelector('button.cancel').textContent")
            browser.evaluate(f"{second_row}.querySelector('button.cancel').click()")
            second_state = browser.wait_for(f"(r => r.dataset.state === 'cancelled' ? r.dataset.state : '')"
                                            f"({second_row})", timeout=20)

            browser.evaluate(f"{row}.querySelector('a.report').click()")
            browser.wait_for("location.pathname.endsWith('/report') && document.readyState === 'complete'")
            report_text = browser.evaluate("document.body.innerText")

            browser.goto(f"{bank}/docs")
            docs_title = browser.wait_for("(document.querySelector('.swagger-ui .info .title') || {}).textContent",
                                          timeout=20)

            # Party A's own page: the same job, no cancel, no submit.
            browser.goto(f"{shop}/ui/login")
            browser.wait_for("!!document.getElementById('token')")
            browser.evaluate(f"document.getElementById('token').value = {json.dumps(setup['tokens']['party-a'])};"
                             "document.querySelector('form.login button').click()")
            shop_state = browser.wait_for("(r => r && r.dataset.state === 'succeeded' ? r.dataset.state : '')"
                                          f"({row})")
            shop_controls = browser.evaluate("[document.querySelectorAll('button.cancel').length,"
                                             " !!document.getElementById('submit-form'),"
                                             " !!document.querySelector('#jobs-body a.model')]")

            # Log out at A; B's session (its own cookie, though on the same host) lives on until B's logout.
            browser.evaluate("document.querySelector('nav form button').click()")
            browser.wait_for(f"location.href === {json.dumps(shop + '/ui/login')}")
            pages = []
            for _ in range(2):
                browser.goto(f"{bank}/ui")
                pages.append(browser.wait_for(f"location.href.startsWith({json.dumps(bank)}) && "
                                              "document.readyState === 'complete' && location.pathname"))
                if pages[-1] == "/ui":
                    browser.evaluate("document.querySelector('nav form button').click()")
                    browser.wait_for(f"location.href === {json.dumps(bank + '/ui/login')}")

    assert submitted.startswith("submitted"), submitted
    assert second.startswith("submitted") and armed == "Confirm cancel" and second_state == "cancelled"
    assert script_sees_cookie == ""  # HttpOnly: the page's script cannot read the session
    states = [s for s, _, _ in seen]
    epochs = [e for _, e, _ in seen]
    assert states[-1] == "succeeded", seen
    assert epochs == sorted(epochs) and epochs[-1] == 10, seen
    assert any(0 < e < 10 for e in epochs), f"no progress seen mid-training: {seen}"
    assert seen[-1][2] == "epoch 10/10" and bar == [10, 10]
    assert cancel_hidden is True
    assert "validation: auc" in metrics
    assert "Metrics" in report_text and "Privacy" in report_text
    assert docs_title and "vfl party B" in docs_title
    assert shop_state == "succeeded" and shop_controls == [0, False, True]
    assert pages == ["/ui", "/ui/login"]
