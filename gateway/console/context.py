"""The console's parts, built once by the app factory and handed to routes through `deps.get_console`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from gateway.console.auth import LoginForm, LoginLimiter, Session, Sessions
from gateway.governance import need_to_know
from gateway.storage.store import Store

Clock = Callable[[], int]  # epoch milliseconds


@dataclass
class Console:
    store: Store
    sessions: Sessions
    login_form: LoginForm
    limiter: LoginLimiter
    templates: Jinja2Templates
    clock: Clock
    secure_cookies: bool
    reads: need_to_know.Reads = field(default_factory=need_to_know.Reads)

    def record_read(self, s: Session, what: str, why: str, *, subject: str | None = None, detail: dict | None = None,
                    shown=None) -> None:
        """Audit that the session's person (or API token) read `what` (need_to_know.record_read)."""
        need_to_know.record_read(self.store, s.user, s.role, what, why, self.clock(), subject=subject, detail=detail,
                                 reads=self.reads, shown=shown)

    def page(self, request: Request, name: str, s: Session | None, *, status_code: int = 200,
             headers: dict | None = None, **ctx) -> HTMLResponse:
        """Template `name` rendered with the session `s` (None before login) and `ctx`."""
        return self.templates.TemplateResponse(request, name, {"s": s, **ctx}, status_code=status_code,
                                               headers=headers)

    def set_cookie(self, response: Response, key: str, value: str, path: str = "/") -> None:
        response.set_cookie(key, value, httponly=True, samesite="strict", secure=self.secure_cookies, path=path)
