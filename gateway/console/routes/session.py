"""Logging in and out: the login page and form, the JSON session, who am I, and each role's home page."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from gateway.console.access import HOME
from gateway.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Session
from gateway.console.context import Console
from gateway.console.deps import ConsoleDep, LoggedIn, api_action, form_action, login_form_checked, optional_session
from gateway.console.errors import API_REFUSALS, refused
from gateway.console.models import Ok, SessionInfo
from gateway.governance import users

log = logging.getLogger("vericam.console")

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


class LoginBody(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _try_login(console: Console, request: Request, name: str, password: str) -> tuple[str | None, str | None, float]:
    """(sid, role, retry_after): a session on success; audited either way; rate-limited."""
    store, where = console.store, _client(request)
    wait = console.limiter.retry_after(where, name)
    if wait > 0:
        log.warning("console login refused by the rate limit (client %s)", where)
        return None, None, wait
    role = users.authenticate(store, name, password)
    t = console.clock()
    if role is None:
        console.limiter.failed(where, name)
        users.record_failed_login(store, name, where, t)
        return None, None, 0
    console.limiter.succeeded(where, name)
    sid, _ = console.sessions.create(name, role)
    users.record_login(store, name, role, where, t)
    return sid, role, 0


def _logout(console: Console, request: Request, s: Session) -> None:
    console.sessions.end(request.cookies.get(SESSION_COOKIE))
    users.record_logout(console.store, s.user, console.clock())


@pages.get("/")
async def home(s: Session | None = Depends(optional_session)):
    return RedirectResponse(HOME.get(s.role, "/login") if s else "/login", status_code=303)


@pages.get("/login")
async def login_page(request: Request, console: ConsoleDep, next: str = ""):
    nonce, token = console.login_form.issue()
    r = console.page(request, "login.html", None, token=token, next=next, error=None)
    console.set_cookie(r, LOGIN_COOKIE, nonce, path="/login")
    return r


@pages.post("/login", dependencies=[Depends(login_form_checked)])
async def login_submit(request: Request, console: ConsoleDep, name: str = Form("", max_length=64),
                       password: str = Form("", max_length=1024), next: str = Form("")):
    sid, role, wait = _try_login(console, request, name, password)
    if sid is None:
        nonce, token = console.login_form.issue()
        if wait:
            msg, code, hdr = (f"Too many failed logins. Try again in {int(wait) + 1} s.", 429,
                              {"Retry-After": str(int(wait) + 1)})
        else:
            msg, code, hdr = "Wrong user name or password.", 401, {}
        r = console.page(request, "login.html", None, status_code=code, headers=hdr, token=token, next=next,
                         error=msg)
        console.set_cookie(r, LOGIN_COOKIE, nonce, path="/login")
        return r
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else HOME[role]
    r = RedirectResponse(target, status_code=303)
    console.set_cookie(r, SESSION_COOKIE, sid)
    r.delete_cookie(LOGIN_COOKIE, path="/login")
    return r


@pages.post("/logout")
async def logout(request: Request, console: ConsoleDep, s: Session = Depends(form_action())):
    _logout(console, request, s)
    r = RedirectResponse("/login", status_code=303)
    r.delete_cookie(SESSION_COOKIE)
    return r


@api.post("/session", responses={401: refused("wrong name or password"),
                                 429: refused("too many failed logins")}, response_model=SessionInfo)
async def api_login(request: Request, body: LoginBody, console: ConsoleDep):
    """Log in. Returns the CSRF token to send as X-CSRF-Token; sets the session cookie."""
    sid, role, wait = _try_login(console, request, body.name, body.password)
    if sid is None:
        if wait:
            return JSONResponse({"detail": "too many failed logins"}, status_code=429,
                                headers={"Retry-After": str(int(wait) + 1)})
        return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
    s = console.sessions.get(sid)
    r = JSONResponse({"user": s.user, "role": role, "csrf_token": s.csrf})
    console.set_cookie(r, SESSION_COOKIE, sid)
    return r


@api.delete("/session", responses=API_REFUSALS, response_model=Ok)
async def api_logout(request: Request, console: ConsoleDep, s: Session = Depends(api_action())):
    _logout(console, request, s)
    r = JSONResponse({"ok": True})
    r.delete_cookie(SESSION_COOKIE)
    return r


@api.get("/me", responses=API_REFUSALS, response_model=SessionInfo)
async def api_me(s: LoggedIn):
    return {"user": s.user, "role": s.role, "csrf_token": s.csrf}
