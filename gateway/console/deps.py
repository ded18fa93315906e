"""The console's FastAPI dependencies: its parts, the logged-in session, and the CSRF and role checks.

A route names what it needs in its signature; the checks run before its body, in this order:
session or API token (else a login redirect or 401), then the CSRF token of a form or of the X-CSRF-Token
header, then the role. Every dependency is `async def`, like every handler, so all of them run
one at a time on the event loop and the console's single store connection is never used by two
threads at once.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Form, Header, Request
from fastapi.exceptions import HTTPException
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gateway.console.access import SERVICE
from gateway.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Session, csrf_ok
from gateway.console.context import Clock, Console
from gateway.console.errors import NeedLogin
from gateway.governance import users
from gateway.storage.store import Store


async def get_console(request: Request) -> Console:
    return request.app.state.console


async def get_store(console: Console = Depends(get_console)) -> Store:
    return console.store


async def get_clock(console: Console = Depends(get_console)) -> Clock:
    return console.clock


async def optional_session(request: Request, console: Console = Depends(get_console)) -> Session | None:
    """The session of the request's cookie, if any, without re-reading the role (for redirects only)."""
    return console.sessions.get(request.cookies.get(SESSION_COOKIE))


def _bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header on a JSON request (pages take cookies only)."""
    if not request.url.path.startswith("/api/"):
        return None
    kind, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if kind.lower() == "bearer" else None


# Only for the OpenAPI schema, like API_TOKEN below: the session cookie a login sets.
SESSION = APIKeyCookie(name=SESSION_COOKIE, scheme_name="session", auto_error=False,
                       description="The cookie POST /api/session sets; send its csrf_token as X-CSRF-Token "
                                   "on every POST/DELETE")


async def current_session(request: Request, console: Console = Depends(get_console),
                          _: str | None = Depends(SESSION)) -> Session:
    """The logged-in session, with the role re-read from the users table; a disabled account is logged out.

    A JSON request with a bearer token gets a session of its own for this request: the service
    account's name as `token:NAME`, the role `service` and the token's scopes. A revoked or
    unknown token is a 401, checked again on every request."""
    token = _bearer(request)
    if token is not None:
        found = users.authenticate_token(console.store, token, console.clock())
        if found is None:
            raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        name, scopes = found
        now = time.monotonic()
        return Session(users.token_actor(name), SERVICE, "", now, now, scopes=scopes)
    sid = request.cookies.get(SESSION_COOKIE)
    s = console.sessions.get(sid)
    if s is None:
        raise NeedLogin()
    role = users.role_of(console.store, s.user)
    if role is None:
        console.sessions.end(sid)
        raise NeedLogin()
    s.role = role
    return s


def _check_role(s: Session, roles: tuple[str, ...], scope: str | None = None) -> None:
    if s.scopes is not None:
        if scope is None or scope not in s.scopes:
            raise HTTPException(403, f"this API token's scopes ({' '.join(sorted(s.scopes))}) do not allow this")
        return
    if roles and s.role not in roles:
        raise HTTPException(403, f"the {s.role} role may not do this")


# Only for the OpenAPI schema: it names the bearer scheme on the routes a token may call.
# `current_session` reads the header itself, so a missing one here is not an error.
API_TOKEN = HTTPBearer(auto_error=False, scheme_name="apiToken",
                       description="A service account's API token (`vericam users token create`), "
                                   "for the routes its scope names; read-only, no CSRF token needed")


def require(*roles: str, scope: str | None = None):
    """A logged-in session whose role is one of `roles`, or an API token that has `scope` (None: no token)."""
    async def role_checked(s: Session = Depends(current_session)) -> Session:
        _check_role(s, roles, scope)
        return s

    async def role_or_token_checked(_: HTTPAuthorizationCredentials | None = Depends(API_TOKEN),
                                    s: Session = Depends(current_session)) -> Session:
        _check_role(s, roles, scope)
        return s
    return role_checked if scope is None else role_or_token_checked


def form_action(*roles: str):
    """A form post that changes something: a session, the form's `csrf_token`, then one of `roles` (none: any)."""
    async def form_checked(csrf_token: str = Form(""), s: Session = Depends(current_session)) -> Session:
        if not csrf_ok(s, csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        _check_role(s, roles)
        return s
    return form_checked


def api_action(*roles: str):
    """A JSON request that changes something: a session, the X-CSRF-Token header, then one of `roles` (none: any)."""
    async def header_checked(x_csrf_token: str | None = Header(None), s: Session = Depends(current_session)) -> Session:
        if s.scopes is not None:
            raise HTTPException(403, "an API token only reads: changes need a person's login")
        if not csrf_ok(s, x_csrf_token):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header")
        _check_role(s, roles)
        return s
    return header_checked


async def login_form_checked(request: Request, csrf_token: str = Form(""),
                             console: Console = Depends(get_console)) -> None:
    """The login form came from this console: its signed token matches the nonce in the login cookie."""
    if not console.login_form.check(request.cookies.get(LOGIN_COOKIE), csrf_token):
        raise HTTPException(403, "the login form expired or did not come from this console: reload it")


ConsoleDep = Annotated[Console, Depends(get_console)]
StoreDep = Annotated[Store, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]


async def person(s: Session = Depends(current_session)) -> Session:
    """A logged-in person (any role); an API token is refused."""
    _check_role(s, ())
    return s


LoggedIn = Annotated[Session, Depends(person)]
