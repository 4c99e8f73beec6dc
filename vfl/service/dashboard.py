"""The web dashboard at ``/ui``, its login, and the ``/docs`` page served without a CDN.

Every service serves ``/ui``: its jobs with state, stage, a progress bar
(epoch of max epochs, the last loss), metrics and links to each job's record,
model and (at party B) report. Party B's page can also submit and cancel jobs;
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

The orchestration endpoints accept that cookie instead of the bearer header:
:func:`install` overrides :func:`vfl.service.api.require_token` with a
dependency that falls back to it whenever an ``Authorization`` header is sent
or no session cookie is. With the cookie, reads (GET, HEAD) need nothing more,
so the report and model links work as plain links. Anything else (cancel,
submit) is cross-site request forgery unless proven otherwise: it needs the
header ``X-VFL-UI: 1`` (which a page of another origin cannot send without a
CORS preflight, and no service answers one) and, when the browser sends
``Origin``, the service's own origin. A session at party A or the arbiter
reads only.

``/docs``: FastAPI's Swagger UI page loads its script and stylesheet from a
CDN, so offline it is blank. Here it is built with FastAPI's own
``get_swagger_ui_html`` pointed at the copy of swagger-ui-dist under
``static/swagger-ui`` (see the README there for its version and licence).
The ReDoc page, which also needs a CDN, is not served.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("vfl.service.dashboard")

STATIC = Path(__file__).parent / "static"
#: The session cookie's name before the party id. ``__Host-`` makes browsers insist on Secure, Path=/, no Domain.
COOKIE_PREFIX = "__Host-vfl-session-"
#: The header the dashboard's script sends with every call; required with the cookie on anything but a read.
UI_HEADER = "X-VFL-UI"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 64
SAFE_METHODS = frozenset({"GET", "HEAD"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: then browsers send "Origin: null" with same-origin POSTs, and cancel would be refused.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: What each role's page offers (A and the arbiter read only).
CAPABILITIES = {
    "B": {"write": True, "submit": True, "cancel": True, "report": True, "model": True},
    "A": {"write": False, "submit": False, "cancel": False, "report": False, "model": True},
    "C": {"write": False, "submit": False, "cancel": False, "report": False, "model": False},
}
ROLE_NAMES = {"A": "feature party", "B": "label party", "C": "arbiter"}


class Sessions:
    """Dashboard sessions: random ids, kept only as SHA-256 digests, each with an expiry."""

    def __init__(self, lifetime: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self.clock = clock
        self._expiry: dict[str, float] = {}

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open(self) -> str:
        now = self.clock()
        self._expiry = {key: until for key, until in self._expiry.items() if until > now}
        while len(self._expiry) >= self.limit:  # the oldest session makes way
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        session_id = secrets.token_urlsafe(32)
        self._expiry[self._digest(session_id)] = now + self.lifetime
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        key = self._digest(session_id)
        until = self._expiry.get(key)
        if until is None:
            return False
        if until <= self.clock():
            del self._expiry[key]
            return False
        return True

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._expiry.pop(self._digest(session_id), None)

    def __len__(self) -> int:
        return len(self._expiry)


def same_origin(request: Request) -> bool:
    """Does the browser say this request comes from a page of this service? (No Origin: not a cross-site fetch.)"""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    parts = urlsplit(origin)
    return parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


def cookie_name(party_id: str) -> str:
    """The session cookie of party ``party_id``'s service (characters a cookie name cannot hold become ``_``)."""
    return COOKIE_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", party_id)


def session_of(request: Request) -> str | None:
    return request.cookies.get(request.app.state.ui_cookie)


def _check_session(request: Request) -> None:
    """The cookie's session is live, and a state-changing call carries the proof of a same-origin caller."""
    if not request.app.state.ui_sessions.valid(session_of(request)):
        raise HTTPException(401, "the dashboard session is unknown or expired: log in again at /ui/login",
                            headers={"WWW-Authenticate": "Bearer"})
    if request.method in SAFE_METHODS:
        return
    if request.headers.get(UI_HEADER) != "1" or not same_origin(request):
        raise HTTPException(403, f"a call with the session cookie that changes anything needs the header "
                                 f"{UI_HEADER}: 1 and this service's own Origin")
    role = request.app.state.node.party
    if not CAPABILITIES[role]["write"]:
        raise HTTPException(403, f"the dashboard at the {ROLE_NAMES[role]} reads only; use the bearer token")


def token_or_session(require_token: Callable[..., None]) -> Callable[..., None]:
    """A stand-in for ``require_token`` that also takes a dashboard session cookie (see the module docstring)."""

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if authorization is not None or session_of(request) is None:
            require_token(request, authorization)
        else:
            _check_session(request)

    return check


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
  <table id="jobs">
    <thead><tr><th>Job</th><th>State</th><th>Stage</th><th>Progress</th><th>Loss</th><th>Metrics</th>
    <th></th></tr></thead>
    <tbody id="jobs-body"></tbody>
  </table>
  <p id="no-jobs" class="muted" hidden>No jobs yet.</p>
</section>"""


def _page(request: Request, main: str, *, nav: str = "", script: bool = False, status: int = 200,
          data: dict[str, str] | None = None) -> HTMLResponse:
    node = request.app.state.node
    role = node.party
    party = html.escape(node.config.party.id)
    attributes = "".join(f' data-{key}="{html.escape(value)}"' for key, value in (data or {}).items())
    body = _SHELL.format(
        title=f"vfl · {party}", party=party, role=role, role_name=ROLE_NAMES[role], data=attributes, nav=nav,
        main=main, script='<script src="/static/ui/dashboard.js"></script>' if script else "",
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return _page(request, _LOGIN.format(message=note), status=status)


def _clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(request.app.state.ui_cookie, path="/", secure=True, httponly=True, samesite="strict")


def install(app: FastAPI) -> None:
    """Add ``/ui``, its login and logout, ``/static`` and ``/docs`` to a service's app (made with ``docs_url=None``)."""
    from vfl.service.api import require_token  # api imports this module

    app.state.ui_sessions = Sessions()
    app.state.ui_cookie = cookie_name(app.state.node.config.party.id)
    app.dependency_overrides[require_token] = token_or_session(require_token)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )

    @app.get("/ui/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        if app.state.ui_sessions.valid(session_of(request)):
            return RedirectResponse("/ui", status_code=303)
        return _login_page(request)

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
        given = (form.get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), app.state.token.encode()):
            client = request.client.host if request.client else "?"
            log.warning("dashboard login with a wrong token from %s", client)
            return _login_page(request, "Wrong token.", status=401)
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(app.state.ui_cookie, app.state.ui_sessions.open(), max_age=SESSION_SECONDS, path="/",
                            secure=True, httponly=True, samesite="strict")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if not same_origin(request):
            raise HTTPException(403, "log out from this service's own page")
        app.state.ui_sessions.close(session_of(request))
        response = RedirectResponse("/ui/login", status_code=303)
        _clear_cookie(request, response)
        return response

    @app.get("/ui", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        if not app.state.ui_sessions.valid(session_of(request)):
            response = RedirectResponse("/ui/login", status_code=303)
            if session_of(request) is not None:
                _clear_cookie(request, response)
            return response
        role = app.state.node.party
        can = CAPABILITIES[role]
        main = (_SUBMIT if can["submit"] else "") + _JOBS
        data = {key: "1" if allowed else "0" for key, allowed in can.items()} | {"role": role}
        return _page(request, main, nav=_LOGOUT, script=True, data=data)


__all__ = ["UI_HEADER", "Sessions", "cookie_name", "install", "same_origin"]
