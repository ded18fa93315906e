"""The activity log: arm/disarm with the user slot, alarms and technical alarms, filtered by site and time.

Operators and supervisors only (the admin never sees it); every read is audited with its filter
and the devices it showed; a customer who restricted processing is left out.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from gateway.console import data
from gateway.console.access import ACTIVITY
from gateway.console.auth import Session
from gateway.console.context import Console
from gateway.console.deps import ConsoleDep, require
from gateway.console.errors import API_REFUSALS
from gateway.console.models import Activity
from gateway.console.params import MAX_MS, parse_when
from gateway.governance import need_to_know

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def searched(console: Console, s: Session, site: str | None, from_ms: int | None, to_ms: int | None) -> list[dict]:
    rows = data.activity(console.store, site, from_ms, to_ms, restricted=need_to_know.restricted_devices(console.store))
    console.record_read(s, "view activity log", "activity log search",
                        detail={"site": site, "from_ms": from_ms, "to_ms": to_ms, "rows": len(rows),
                                "devices": sorted({r["device"] for r in rows})},
                        shown=[r["id"] for r in rows])
    return rows


@pages.get("/activity")
async def activity_page(request: Request, console: ConsoleDep, site: str = Query("", max_length=200),
                        since: str = Query("", alias="from", max_length=40),
                        until: str = Query("", alias="to", max_length=40),
                        s: Session = Depends(require(*ACTIVITY))):
    rows = searched(console, s, site or None, parse_when(since, "from"), parse_when(until, "to"))
    sites = data.sites(console.store, need_to_know.restricted_devices(console.store))
    return console.page(request, "activity.html", s, rows=rows, sites=sites, site=site, since=since, until=until)


@api.get("/activity", responses=API_REFUSALS, response_model=list[Activity])
async def api_activity(console: ConsoleDep, site: str | None = Query(None, max_length=200),
                       from_ms: int | None = Query(None, ge=0, le=MAX_MS),
                       to_ms: int | None = Query(None, ge=0, le=MAX_MS),
                       s: Session = Depends(require(*ACTIVITY))):
    """Activity log (arm/disarm with user slot, alarms, technical alarms), newest first, at most 500.
    Operators and supervisors; audited."""
    return searched(console, s, site, from_ms, to_ms)
