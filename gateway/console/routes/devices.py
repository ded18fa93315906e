"""The devices page: every provisioned device with its site, firmware and whether its heartbeats arrive."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.console import data
from gateway.console.access import DEVICES
from gateway.console.auth import Session
from gateway.console.deps import ConsoleDep, StoreDep, require
from gateway.console.errors import API_REFUSALS
from gateway.console.models import Device

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


@pages.get("/devices")
async def devices_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*DEVICES))):
    return console.page(request, "devices.html", s, devices=data.devices(console.store))


@api.get("/devices", responses=API_REFUSALS, response_model=list[Device])
async def api_devices(store: StoreDep, s: Session = Depends(require(*DEVICES))):
    return data.devices(store)
