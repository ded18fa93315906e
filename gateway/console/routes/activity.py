"""The activity log: arm/disarm with the user slot, alarms and technical alarms, filtered by site and time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from gateway.console import data
from gateway.console.access import ACTIVITY
from gateway.console.auth import Session
from gateway.console.deps import ConsoleDep, StoreDep, require
from gateway.console.errors import API_REFUSALS
from gateway.console.models import Activity
from gateway.console.params import MAX_MS, parse_when

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


@pages.get("/activity")
async def activity_page(request: Request, console: ConsoleDep, site: str = Query("", max_length=200),
                        since: str = Query("", alias="from", max_length=40),
                        until: str = Query("", alias="to", max_length=40),
                        s: Session = Depends(require(*ACTIVITY))):
    store = console.store
    rows = data.activity(store, site or None, parse_when(since, "from"), parse_when(until, "to"))
    return console.page(request, "activity.html", s, rows=rows, sites=data.sites(store), site=site,
                        since=since, until=until)


@api.get("/activity", responses=API_REFUSALS, response_model=list[Activity])
async def api_activity(store: StoreDep, site: str | None = Query(None, max_length=200),
                       from_ms: int | None = Query(None, ge=0, le=MAX_MS),
                       to_ms: int | None = Query(None, ge=0, le=MAX_MS),
                       s: Session = Depends(require(*ACTIVITY))):
    """Activity log (arm/disarm with user slot, alarms, technical alarms), newest first, at most 500."""
    return data.activity(store, site, from_ms, to_ms)
