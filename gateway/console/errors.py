"""How refusals reach the user: a login redirect or 401, an error page or a JSON detail, domain errors as statuses."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from fastapi import Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel

from gateway.console.auth import SESSION_COOKIE


class Refusal(BaseModel):
    """Why a JSON request was refused (every 4xx but 422, which has FastAPI's own list of field errors)."""
    detail: str


def refused(description: str) -> dict:
    """One refusal's entry in a route's `responses`, with its body's schema."""
    return {"description": description, "model": Refusal}


# The refusals every JSON route may answer with, for its OpenAPI description.
API_REFUSALS = {401: refused("not logged in, or an unknown or revoked API token"),
                403: refused("role or token scope not allowed, or CSRF token missing")}


class NeedLogin(Exception):
    """No valid session: a page redirects to the login form, the JSON API answers 401."""


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def need_login(request: Request, exc: NeedLogin):
    if is_api(request):
        return JSONResponse({"detail": "log in first (POST /api/session)"}, status_code=401)
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


async def http_error(request: Request, exc: HTTPException):
    if is_api(request) or exc.status_code < 400:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    console = request.app.state.console
    s = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    return console.page(request, "error.html", s, status_code=exc.status_code, headers=exc.headers,
                        status=exc.status_code, message=exc.detail)


@contextmanager
def http_errors(statuses: dict[type[Exception], int]) -> Iterator[None]:
    """Turn the domain errors in `statuses` into HTTP errors with that status and the error's own message."""
    try:
        yield
    except tuple(statuses) as exc:
        status = next(code for kind, code in statuses.items() if isinstance(exc, kind))
        raise HTTPException(status, str(exc)) from exc
