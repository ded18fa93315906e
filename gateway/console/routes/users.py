"""The console's accounts, for the admin: names, roles, whether each can log in."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.console.access import USERS
from gateway.console.auth import Session
from gateway.console.deps import ConsoleDep, StoreDep, require
from gateway.console.errors import API_REFUSALS
from gateway.governance import users
from gateway.governance.alarms import fmt_ms

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


@pages.get("/users")
async def users_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*USERS))):
    return console.page(request, "users.html", s, users=users.list_users(console.store), fmt=fmt_ms)


@api.get("/users", responses=API_REFUSALS)
async def api_users(store: StoreDep, s: Session = Depends(require(*USERS))):
    return users.list_users(store)
