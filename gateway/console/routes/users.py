"""The console's accounts for the admin: people (names, roles, logins) and service accounts' API tokens
(created by a supervisor, listed and revoked by the admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from gateway.console.access import USERS
from gateway.console.auth import Session
from gateway.console.context import Console
from gateway.console.deps import ClockDep, ConsoleDep, StoreDep, api_action, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.models import Ok, Token, TokenCreated, User
from gateway.governance import users
from gateway.governance.alarms import fmt_ms

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])

TokenName = Annotated[str, PathParam(pattern=users.NAME.pattern, description="The service account's name")]


class TokenBody(BaseModel):
    name: str = Field(pattern=users.NAME.pattern, description="The service account's name")
    scopes: list[str] = Field(min_length=1, max_length=len(users.SCOPES),
                              description="One or more of: " + ", ".join(users.SCOPES))


def listed(console: Console, s: Session) -> list[dict]:
    """The accounts (staff's personal data: names, roles), the read audited."""
    rows = users.list_users(console.store)
    console.record_read(s, "view users", "account management", detail={"users": len(rows)},
                        shown=[(u["name"], u["role"], u["disabled"]) for u in rows])
    return rows


@pages.get("/users")
async def users_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*USERS))):
    return console.page(request, "users.html", s, users=listed(console, s),
                        tokens=users.list_tokens(console.store), fmt=fmt_ms)


@api.get("/users", responses=API_REFUSALS, response_model=list[User])
async def api_users(console: ConsoleDep, s: Session = Depends(require(*USERS))):
    """The console's accounts (admin): names, roles, whether they can log in. Audited."""
    return listed(console, s)


@api.get("/tokens", responses=API_REFUSALS, response_model=list[Token])
async def api_tokens(store: StoreDep, s: Session = Depends(require(*USERS))):
    """The service accounts' API tokens (admin): names, scopes, when created, revoked, last used; never a token."""
    return users.list_tokens(store)


@api.post("/tokens", responses={**API_REFUSALS, 400: refused("bad scope, or the name is taken")},
          response_model=TokenCreated)
async def api_token_create(body: TokenBody, store: StoreDep, clock: ClockDep,
                           s: Session = Depends(api_action())):
    """Create a service account's API token (a supervisor: a token is never given a scope its creator's
    role does not hold, so the admin cannot create one). The token is in this answer only; it is stored as a hash."""
    with http_errors({users.NotAllowed: 403, users.UserError: 400}):
        token = users.create_token(store, body.name, body.scopes, s.user, clock(), s.role)
    return {"name": body.name, "scopes": store.users.token(body.name)["scopes"].split(), "token": token}


@api.delete("/tokens/{name}", responses={**API_REFUSALS, 404: refused("no active token of that name")},
            response_model=Ok)
async def api_token_revoke(name: TokenName, store: StoreDep, clock: ClockDep,
                           s: Session = Depends(api_action(*USERS))):
    """Revoke a service account's API token (admin): its next request is a 401."""
    with http_errors({users.UserError: 404}):
        users.revoke_token(store, name, s.user, clock())
    return {"ok": True}
