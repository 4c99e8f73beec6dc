"""The web dashboard in headless Chromium over the DevTools protocol, against the three services as real TLS
processes: log in, submit, watch, cancel, open the report (the in-process tests are in tests/cluster/test_dashboard.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.browser import CHROMIUM, Browser
from vfl.demo.services import running_services, wait_healthy, write_demo_files


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
