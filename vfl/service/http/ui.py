"""The web dashboard at ``/ui``, its login, and the ``/docs`` page served without a CDN.

Every service serves ``/ui``: its jobs with state, stage, a progress bar
(epoch of max epochs; a succeeded job is full, "stopped early at epoch 12 of
30"), the last loss and metrics (party B; a feature party shows its aligned and
scored rows instead), created, finished and duration, the peers it waits for,
a search box and a state filter, and links to each job's record, model and (at
party B) report. Each job's id links to its page, ``/ui/jobs/{id}`` (facts drawn
on the server, every value escaped: :mod:`.job_page`; stage timeline, curves,
metrics, timings, model version, ledger entry, event log and the report inline
drawn by its script), which for a scorecard job also shows the record's
scorecard section (party B) and the stability of what this party served.
``/ui/models`` shows the model registry: every version and, at B, the names
that serve them. Party B's page can also submit and cancel jobs;
party A's and the arbiter's are read-only. The page is one HTML shell plus a
script and a stylesheet served by this package (``/static/ui``), so it works
with no network beyond the service itself, under a Content-Security-Policy
that allows nothing else.

Login is with the service's orchestration token. ``POST /ui/login`` compares
it in constant time and answers with a cookie holding a fresh random session
id (``__Host-vfl-session-<party id>``: HttpOnly, Secure, SameSite=Strict,
Path=/); the token itself never goes into a cookie or a URL. Cookies are per
host, not per port, so the name carries the party id: the demo's three services
on one host keep three sessions apart. Sessions live in this
process's memory, at most :data:`MAX_SESSIONS` of them, each for
:data:`SESSION_SECONDS`; ``POST /ui/logout`` ends one, and a restart ends all.

The orchestration endpoints accept that cookie instead of the bearer header,
as :mod:`vfl.service.http.auth` describes: reads need nothing more, anything
else needs proof of a same-origin caller, and a session at a feature party or
the arbiter reads only.

``/docs``: FastAPI's Swagger UI page loads its script and stylesheet from a
CDN, so offline it is blank. Here it is built with FastAPI's own
``get_swagger_ui_html`` pointed at the copy of swagger-ui-dist under
``vfl/service/static/swagger-ui`` (see the README there for its version and licence).
The ReDoc page, which also needs a CDN, is not served.
"""

from __future__ import annotations

import hmac
import html
import logging
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vfl.errors import Forbidden, VFLError
from vfl.protocol.roster import LETTERS
from vfl.service.http.auth import ROLE_NAMES, SESSION_SECONDS, client_address, same_origin, session_of, throttled
from vfl.service.http.job_page import render_job
from vfl.service.scorecards import scorecard_of
from vfl.service.serving import stability as served

log = logging.getLogger("vfl.service.dashboard")

#: The dashboard's script and stylesheet, and Swagger UI for /docs (mounted at /static by the app).
STATIC = Path(__file__).resolve().parents[1] / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: then browsers send "Origin: null" with same-origin POSTs, and cancel would be refused.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: What each role's page offers (a feature party and the arbiter read only).
CAPABILITIES = {
    "label": {"write": True, "submit": True, "cancel": True, "report": True, "model": True},
    "feature": {"write": False, "submit": False, "cancel": False, "report": False, "model": True},
    "arbiter": {"write": False, "submit": False, "cancel": False, "report": False, "model": False},
}

router = APIRouter(include_in_schema=False)

# -- pages ------------------------------------------------------------------------------------

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/static/ui/dashboard.css">
</head>
<body{data}>
<header>
  <h1>vfl <span class="party">{party}</span> <span class="role">{role_name} ({role})</span></h1>
  {nav}
</header>
<main>
{main}
</main>
{script}
</body>
</html>
"""

_LOGIN = """<form class="login" method="post" action="/ui/login">
  <h2>Log in</h2>
  <p>With this service's orchestration token (the contents of its <code>api_token_file</code>).</p>
  <label for="token">Token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Log in</button>
  {message}
</form>"""

_LOGOUT = """<nav>
  <a href="/ui">Jobs</a>
  {models}
  <a href="/docs">API</a>
  <form method="post" action="/ui/logout"><button type="submit" class="link">Log out</button></form>
</nav>"""

_SUBMIT = """<details class="submit">
  <summary>Submit a job</summary>
  <form id="submit-form">
    <label for="spec">Job spec (JSON, as for <code>POST /v1/jobs</code>)</label>
    <textarea id="spec" name="spec" rows="10" spellcheck="false" required></textarea>
    <button type="submit">Submit</button>
    <span id="submit-result" role="status"></span>
  </form>
</details>"""

_JOBS = """<section>
  <h2>Jobs <span id="refreshed" class="muted" role="status"></span></h2>
  <div class="toolbar">
    <label for="job-search">Search</label>
    <input id="job-search" type="search" placeholder="job id, dataset, party or model name" autocomplete="off">
    <label for="state-filter">State</label>
    <select id="state-filter">
      <option value="">all</option><option value="running">running</option><option value="succeeded">succeeded</option>
      <option value="failed">failed</option><option value="cancelled">cancelled</option><option value="damaged">damaged</option>
    </select>
    <span id="jobs-shown" class="muted" role="status"></span>
  </div>
  <div class="table-wrap"><table id="jobs">
    <thead><tr></tr></thead>
    <tbody id="jobs-body"></tbody>
  </table></div>
  <p id="no-jobs" class="muted" hidden>No jobs yet.</p>
</section>"""

_MODELS = """<section>
  <h2>Models <span id="refreshed" class="muted" role="status"></span></h2>
  <div id="served-section"></div>
  <h3>Versions</h3>
  <p class="note">Every succeeded job with a model part at this party is a version; {whose}</p>
  <table id="models">
    <thead><tr><th>Version (job)</th><th>Model</th><th>Dataset</th><th>Features</th><th>Trained</th>
    <th>Validation</th><th>Names</th></tr></thead>
    <tbody id="models-body"></tbody>
  </table>
  <p id="no-models" class="muted" hidden>No model version yet: a job that succeeds makes one.</p>
</section>"""


def _page(request: Request, main: str, *, nav: str = "", script: str | None = None, status: int = 200,
          data: dict[str, str] | None = None) -> HTMLResponse:
    """A page of the dashboard; ``script`` names its own script under /static/ui (after the shared common.js)."""
    node = request.app.state.node
    party = html.escape(node.me)
    attributes = "".join(f' data-{key}="{html.escape(value)}"' for key, value in (data or {}).items())
    scripts = ("" if script is None else
               f'<script src="/static/ui/common.js"></script>\n<script src="/static/ui/{script}.js"></script>')
    body = _SHELL.format(
        title=f"vfl · {party}", party=party, role=LETTERS[node.kind], role_name=ROLE_NAMES[node.kind],
        data=attributes, nav=nav, main=main, script=scripts,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def _nav(request: Request) -> str:
    """The header's links: jobs, models (a party with model parts), the API, log out."""
    has_models = CAPABILITIES[request.app.state.node.kind]["model"]
    return _LOGOUT.format(models='<a href="/ui/models">Models</a>' if has_models else "")


def _data(request: Request) -> dict[str, str]:
    """What a page's script needs to know of this service: its role letter and what its page offers."""
    kind = request.app.state.node.kind
    return {key: "1" if allowed else "0" for key, allowed in CAPABILITIES[kind].items()} | {"role": LETTERS[kind]}


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return _page(request, _LOGIN.format(message=note), status=status)


def _clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(request.app.state.ui_cookie, path="/", secure=True, httponly=True, samesite="strict")


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )


@router.get("/ui/login")
async def login_form(request: Request) -> Response:
    if request.app.state.ui_sessions.valid(session_of(request)):
        return RedirectResponse("/ui", status_code=303)
    return _login_page(request)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    state = request.app.state
    address = client_address(request)
    throttled(request)  # 429 for an address that keeps guessing
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    given = (form.get("token") or [""])[0].strip()
    if not hmac.compare_digest(given.encode(), state.token.encode()):
        state.throttle.failed(address, "a dashboard login with a wrong token")
        return _login_page(request, "Wrong token.", status=401)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(state.ui_cookie, state.ui_sessions.open(), max_age=SESSION_SECONDS, path="/",
                        secure=True, httponly=True, samesite="strict")
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    if not same_origin(request):
        raise Forbidden("log out from this service's own page")
    request.app.state.ui_sessions.close(session_of(request))
    response = RedirectResponse("/ui/login", status_code=303)
    _clear_cookie(request, response)
    return response


@router.get("/ui/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    """One job's page: its state and metrics; for a scorecard job its summary (party B) and its stability."""
    if not request.app.state.ui_sessions.valid(session_of(request)):
        return RedirectResponse("/ui/login", status_code=303)
    node = request.app.state.node
    try:
        ctx = node.job(job_id)
    except VFLError as exc:
        return _page(request, f'<p><a href="/ui">← all jobs</a></p><p class="alert error">{html.escape(str(exc))}</p>',
                     nav=_nav(request), status=404)
    record = ctx.record.model_dump(mode="json")
    is_scorecard = scorecard_of(ctx.record) is not None and node.kind in ("label", "feature")
    stability, problem = None, None
    if is_scorecard:
        try:
            stability = served.stability(ctx)
        except VFLError as exc:  # not succeeded yet, or nothing to compare with
            problem = str(exc)
    main = render_job(record, stability, stability_error=problem, scorecard_job=is_scorecard,
                      report=CAPABILITIES[node.kind]["report"])
    return _page(request, main, nav=_nav(request), script="job", data=_data(request))


@router.get("/ui/models")
async def models_page(request: Request) -> Response:
    """The model registry: every version at this party and, at party B, the names that serve them."""
    if not request.app.state.ui_sessions.valid(session_of(request)):
        return RedirectResponse("/ui/login", status_code=303)
    kind = request.app.state.node.kind
    if not CAPABILITIES[kind]["model"]:
        return _page(request, '<p class="alert error">The arbiter holds no model part: there is no registry here.</p>',
                     nav=_nav(request), status=404)
    whose = ("party B promotes a version under a name, which is what scoring by name serves."
             if kind == "label" else "this party's part of each; party B decides which version serves under which name.")
    return _page(request, _MODELS.format(whose=html.escape(whose)), nav=_nav(request), script="models",
                 data=_data(request))


@router.get("/ui")
async def dashboard(request: Request) -> Response:
    if not request.app.state.ui_sessions.valid(session_of(request)):
        response = RedirectResponse("/ui/login", status_code=303)
        if session_of(request) is not None:
            _clear_cookie(request, response)
        return response
    can = CAPABILITIES[request.app.state.node.kind]
    main = (_SUBMIT if can["submit"] else "") + _JOBS
    return _page(request, main, nav=_nav(request), script="dashboard", data=_data(request))


__all__ = ["CAPABILITIES", "STATIC", "router"]
