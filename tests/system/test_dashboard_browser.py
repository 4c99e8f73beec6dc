"""The web dashboard in headless Chromium over the DevTools protocol, against the three services as real TLS
processes: log in, submit, watch, cancel, open the report (the in-process tests are in tests/cluster/test_dashboard.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Browser
from vfl.demo.services import running_services, wait_healthy, write_demo_files


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_dashboard_in_chromium_logs_in_watches_a_job_cancels_one_and_opens_a_report(tmp_path):
    # Every epoch runs (no early stop), in mini-batches so that the page has a few to show.
    training = {"epochs": 10, "tol": 0, "early_stopping_rounds": 0, "batch_size": 128}
    setup = write_demo_files(tmp_path / "demo", population=600, key_bits=1024, training=training)
    bank, shop = setup["urls"]["party-b"], setup["urls"]["party-a"]
    folder = os.environ.get("VFL_SCREENSHOTS")  # a folder: each page is saved there as a PNG, to look at

    def shoot(name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            browser.screenshot(Path(folder) / f"dashboard-{name}.png")

    with running_services(tmp_path / "demo") as processes:
        wait_healthy(setup["urls"], setup["token"], processes, tmp_path / "demo", verify=setup["verify"])
        # The demo CA is not in Chromium's store; the services still present their certificates.
        with Browser(tmp_path / "profile", "--ignore-certificate-errors") as browser:
            browser.goto(f"{bank}/ui")
            browser.wait_for("location.pathname === '/ui/login' && !!document.getElementById('token')")
            browser.evaluate(f"document.getElementById('token').value = {json.dumps(setup['token'])};"
                             "document.querySelector('form.login button').click()")
            # Not only the server's HTML: the page's script must have attached its handlers, or a click on
            # the form's button under load submits the form natively and the page reloads.
            browser.wait_for("location.pathname === '/ui' && !!document.getElementById('jobs-body') "
                             "&& document.body.dataset.ready === '1'")
            script_sees_cookie = browser.evaluate("document.cookie")

            # Submit through the page's form, then watch the row.
            browser.evaluate(f"document.querySelector('details.submit').open = true;"
                             f"document.getElementById('spec').value = {json.dumps(json.dumps(setup['job']))};"
                             "document.querySelector('#submit-form button').click()")
            submitted = browser.wait_for("(t => t.startsWith('submitted') || t.startsWith('refused') ? t : '')"
                                         "(document.getElementById('submit-result').textContent)", timeout=60)
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

            # The job's own page: its stages, its curves, its event log, its report inline.
            job_id = submitted.split()[-1]
            browser.goto(f"{bank}/ui/jobs/{job_id}")
            browser.wait_for("document.body.dataset.drawn === '1' && !!document.getElementById('report-frame')")
            job_page = browser.evaluate(
                "({stages: [...document.querySelectorAll('#stage-strip .seg')].map(s => s.dataset.stage),"
                " loss: [...document.querySelectorAll('#loss-chart .series path')].map(p => p.getAttribute('d').length),"
                " dots: document.querySelectorAll('#loss-chart .train circle').length,"
                " roc: !!document.querySelector('#roc-chart .roc path'),"
                " events: [...document.querySelectorAll('#events-table tbody tr td:last-child')].map(t => t.textContent),"
                " progress: document.getElementById('progress-text').textContent,"
                " ledger: (document.getElementById('ledger-table') || {}).textContent || '',"
                " timings: !!document.getElementById('timings-table'),"
                " parties: [...document.querySelectorAll('#party-timings-table tbody tr td:first-child')]"
                ".map(t => t.textContent),"
                " metrics: !!document.getElementById('metrics-table')})")
            report_frame = browser.wait_for(
                "(f => f && f.contentDocument && f.contentDocument.readyState === 'complete' &&"
                " f.contentDocument.body.innerText.length > 100 ? f.contentDocument.title : '')"
                "(document.getElementById('report-frame'))")
            shoot("job-b")

            # The models view, after promoting the job under a name from the page's own origin.
            browser.evaluate(f"fetch('/v1/models/credit/promote', {{method: 'POST', credentials: 'same-origin',"
                             f" headers: {{'X-VFL-UI': '1', 'Content-Type': 'application/json'}},"
                             f" body: JSON.stringify({{job_id: {json.dumps(job_id)}}})}}).then(r => r.status)")
            browser.goto(f"{bank}/ui/models")
            models_view = browser.wait_for(
                "(r => r ? [r.dataset.jobId, r.classList.contains('promoted'), r.textContent,"
                " document.getElementById('served').textContent] : null)"
                "(document.querySelector('#models-body tr.promoted'))")
            shoot("models-b")

            # A refusal is an error box, not plain text.
            browser.goto(f"{bank}/ui")
            browser.wait_for("!!document.querySelector('#jobs-body tr')")
            browser.evaluate("document.querySelector('details.submit').open = true;"
                             "document.getElementById('spec').value = '{\"training\": {\"epochs\": 0}}';"
                             "document.querySelector('#submit-form button').click()")
            refusal = browser.wait_for("(r => r.textContent.startsWith('refused') ?"
                                       " [r.className, r.getAttribute('role'), r.textContent] : null)"
                                       "(document.getElementById('submit-result'))")
            browser.evaluate("document.getElementById('job-search').value = "
                             f"{json.dumps(job_id)}; document.getElementById('job-search').dispatchEvent(new Event('input'))")
            searched = browser.evaluate("[...document.querySelectorAll('#jobs-body tr')].filter(r => !r.hidden)"
                                        ".map(r => r.dataset.jobId)")
            browser.evaluate("document.getElementById('job-search').value = '';"
                             "document.getElementById('state-filter').value = 'cancelled';"
                             "document.getElementById('state-filter').dispatchEvent(new Event('change'))")
            filtered = browser.evaluate("[...document.querySelectorAll('#jobs-body tr')].filter(r => !r.hidden)"
                                        ".map(r => r.dataset.state)")
            times = browser.evaluate(f"[...{row}.querySelectorAll('td.created, td.finished, td.duration')]"
                                     ".map(t => t.textContent)")
            shoot("list-b")

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
            shop_columns = browser.evaluate("[...document.querySelectorAll('#jobs thead th')].map(t => t.textContent)")
            shoot("list-a")
            browser.goto(f"{shop}/ui/jobs/{job_id}")
            browser.wait_for("document.body.dataset.drawn === '1'")
            shop_page = browser.evaluate(
                "({metrics_hidden: document.getElementById('metrics-section').hidden,"
                " norm: !!document.querySelector('#norm-chart .norm path'),"
                " weights: document.querySelectorAll('#weights-table tbody tr').length,"
                " report: !!document.getElementById('report-section'),"
                " events: document.querySelectorAll('#events-table tbody tr').length})")
            shoot("job-a")
            browser.goto(f"{shop}/ui")
            browser.wait_for("!!document.querySelector('#jobs-body tr')")
            script_errors = browser.exceptions()

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
    # The job's page: every stage it went through, its loss per epoch, its story, and the report inline.
    assert job_page["stages"][0] == "registered" and job_page["stages"][-1] == "done", job_page
    assert {"psi", "training", "evaluating"} <= set(job_page["stages"])
    assert len(job_page["loss"]) == 2 and min(job_page["loss"]) > 20 and job_page["dots"] == 10
    assert job_page["roc"] and job_page["timings"] and job_page["metrics"]
    assert {"party-a (A)", "party-b (B)", "arbiter (C)"} <= set(job_page["parties"]), job_page["parties"]
    assert job_page["events"][0].startswith("succeeded after 10 epochs")  # newest first
    assert job_page["events"][-1].startswith("submitted")
    assert sum(e.startswith("epoch ") for e in job_page["events"]) == 10
    assert job_page["progress"] == "10 of 10 epochs" and "every signature verified" in job_page["ledger"]
    assert "report" in report_frame.lower()
    assert models_view[0] == job_id and models_view[1] is True and "credit" in models_view[2]
    assert "credit" in models_view[3]
    assert refusal[0] == "alert error" and refusal[1] == "alert", refusal
    assert searched == [job_id]
    assert filtered == ["cancelled"]
    assert times[0][:4].isdigit() and times[1] and times[2].endswith("s"), times
    # Party A: what it has (its own weights, its rows), no empty loss or metrics column.
    assert "Loss" not in shop_columns and "Metrics" not in shop_columns and "Rows" in shop_columns
    assert shop_page == {"metrics_hidden": True, "norm": True, "weights": shop_page["weights"], "report": False,
                         "events": shop_page["events"]} and shop_page["weights"] > 0 and shop_page["events"] > 10
    assert script_errors == []
