"""The devices page: every provisioned device with its site, firmware and whether its heartbeats arrive; each read audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.console import data
from gateway.console.access import DEVICES
from gateway.console.auth import Session
from gateway.console.context import Console
from gateway.console.deps import ConsoleDep, require
from gateway.console.errors import API_REFUSALS
from gateway.console.models import Device
from gateway.governance import need_to_know

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def listed(console: Console, s: Session) -> list[dict]:
    """The devices (a restricted customer's without its site), the read audited."""
    rows = data.devices(console.store, need_to_know.restricted_devices(console.store))
    console.record_read(s, "view devices", "device supervision", detail={"devices": len(rows)},
                        shown=[(d["id"], d["site"]) for d in rows])
    return rows


@pages.get("/devices")
async def devices_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*DEVICES))):
    return console.page(request, "devices.html", s, devices=listed(console, s))


@api.get("/devices", responses=API_REFUSALS, response_model=list[Device])
async def api_devices(console: ConsoleDep, s: Session = Depends(require(*DEVICES))):
    """Every device with its site and state (audited; a restricted customer's site is hidden)."""
    return listed(console, s)
