"""Police holds on an alarm's photos: a supervisor places one with a reason and a case reference, or releases it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from gateway.console.access import HOLD
from gateway.console.auth import Session
from gateway.console.context import Clock
from gateway.console.deps import ClockDep, StoreDep, api_action, form_action
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import MAX_MS, AlarmId, DeviceId
from gateway.console.models import HoldPlaced, HoldReleased
from gateway.console.routes.alarms import alarm_or_404
from gateway.governance import hold as holds
from gateway.storage.store import Store

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


class HoldBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    case: str = Field(min_length=1, max_length=100, description="The police case reference")


class ReleaseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


def _place(store: Store, clock: Clock, s: Session, device: str, alarm_id: str, reason: str, case: str) -> dict:
    alarm_or_404(store, device, alarm_id)
    with http_errors({holds.HoldError: 409}):
        return holds.place(store, f"{device}/{alarm_id}", s.user, reason, case, clock())


def _release(store: Store, clock: Clock, s: Session, hold_id: int, reason: str) -> dict:
    with http_errors({holds.HoldError: 409}):
        return holds.release(store, str(hold_id), s.user, reason, clock())


@pages.post("/alarms/{device}/{alarm_id}/hold")
async def hold_form(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                    reason: str = Form("", max_length=500), case: str = Form("", max_length=100),
                    s: Session = Depends(form_action(*HOLD))):
    h = _place(store, clock, s, device, alarm_id, reason, case)
    return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=hold-{h['hold']}-placed", status_code=303)


@pages.post("/holds/{hold_id}/release")
async def release_form(hold_id: int, store: StoreDep, clock: ClockDep, reason: str = Form("", max_length=500),
                       back: str = Form(""), s: Session = Depends(form_action(*HOLD))):
    _release(store, clock, s, hold_id, reason)
    target = back if back.startswith("/alarms/") else "/alarms"
    return RedirectResponse(f"{target}?msg=hold-{hold_id}-released", status_code=303)


@api.post("/alarms/{device}/{alarm_id}/hold", response_model=HoldPlaced,
          responses={**API_REFUSALS, 404: refused("no such alarm"), 409: refused("the hold cannot be placed")})
async def api_hold(device: DeviceId, alarm_id: AlarmId, body: HoldBody, store: StoreDep, clock: ClockDep,
                   s: Session = Depends(api_action(*HOLD))):
    """Place a police hold on the alarm's photos (supervisor): kept 30 days after the alarm."""
    return _place(store, clock, s, device, alarm_id, body.reason, body.case)


@api.post("/holds/{hold_id}/release", response_model=HoldReleased,
          responses={**API_REFUSALS, 409: refused("no such active hold")})
async def api_release(hold_id: Annotated[int, PathParam(ge=1, le=MAX_MS)], body: ReleaseBody, store: StoreDep,
                      clock: ClockDep, s: Session = Depends(api_action(*HOLD))):
    return _release(store, clock, s, hold_id, body.reason)
