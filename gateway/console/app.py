"""The console's app factory: builds its parts once, then joins the security headers, error pages and routers.

The console is a FastAPI app with server-rendered pages and a JSON API behind the same roles
(`access.py` holds the table). Each resource has its own router module in `routes/`; the checks
every route needs (session, CSRF, role) are dependencies in `deps.py`; what a route shows or
changes comes from the governance and storage layers. Photos are served only under the URL of
the alarm they belong to, decrypted on request, with `Cache-Control: no-store`, and each one
served writes a "view image" audit record first.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from gateway.console.auth import LoginForm, LoginLimiter, Sessions
from gateway.console.context import Clock, Console
from gateway.console.errors import NeedLogin, http_error, need_login
from gateway.console.routes import RESOURCES
from gateway.governance.alarms import OUTCOMES
from gateway.storage.store import Store, now_ms

HERE = Path(__file__).parent

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


async def security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def create_app(data_dir: str | Path, secret: str, *, secure_cookies: bool = True, store: Store | None = None,
               clock: Clock = now_ms, limiter: LoginLimiter | None = None) -> FastAPI:
    """The console for the gateway data directory `data_dir`. `secret` signs the login form's CSRF token."""
    if not secret or len(secret) < 16:
        raise ValueError("the console secret must have at least 16 characters")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["OUTCOMES"] = OUTCOMES
    console = Console(store=store or Store.open(data_dir), sessions=Sessions(), login_form=LoginForm(secret),
                      limiter=limiter or LoginLimiter(), templates=templates, clock=clock,
                      secure_cookies=secure_cookies)

    app = FastAPI(title="Vericam operator console", version="1",
                  description="JSON API of the operator console. Log in with POST /api/session; send the "
                              "returned csrf_token as X-CSRF-Token on every POST/DELETE. A machine client "
                              "sends a service account's API token as `Authorization: Bearer vct_...` "
                              "instead (read-only, scopes alarms:read and photos:read; no CSRF).",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.console = console
    app.state.store = console.store        # closed by its owner (ConsoleServer.stop, the tests)
    app.state.sessions = console.sessions
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.middleware("http")(security_headers)
    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(HTTPException, http_error)
    for resource in RESOURCES:
        app.include_router(resource.pages)
    for resource in RESOURCES:
        app.include_router(resource.api)
    return app
