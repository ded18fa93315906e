"""Handling an alarm: an operator acknowledges it, then closes it with an outcome and a note."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form
from fastapi.exceptions import HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from gateway.console.access import HANDLE
from gateway.console.auth import Session
from gateway.console.context import Clock
from gateway.console.deps import ClockDep, StoreDep, api_action, form_action
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import AlarmId, DeviceId
from gateway.console.models import Ok
from gateway.console.routes.alarms import RESTRICTED
from gateway.governance import alarms, need_to_know
from gateway.storage.store import Store

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


class CloseBody(BaseModel):
    outcome: str = Field(description="One of: " + ", ".join(alarms.OUTCOMES), max_length=40)
    note: str = Field("", max_length=1000)


def _not_restricted(store: Store, s: Session, device: str) -> None:
    """An operator does not handle a restricted customer's alarm (it is not shown to them); a supervisor may."""
    if s.role != "supervisor" and need_to_know.is_restricted(store, device):
        raise HTTPException(403, RESTRICTED)


def _acknowledge(store: Store, clock: Clock, s: Session, device: str, alarm_id: str) -> None:
    _not_restricted(store, s, device)
    with http_errors({alarms.NotFound: 404, alarms.Conflict: 409}):
        alarms.acknowledge(store, device, alarm_id, s.user, clock())


def _close(store: Store, clock: Clock, s: Session, device: str, alarm_id: str, outcome: str, note: str) -> None:
    _not_restricted(store, s, device)
    with http_errors({alarms.NotFound: 404, alarms.Conflict: 409, ValueError: 400}):
        alarms.close(store, device, alarm_id, s.user, outcome, note, clock())


@pages.post("/alarms/{device}/{alarm_id}/acknowledge")
async def ack_form(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                   s: Session = Depends(form_action(*HANDLE))):
    _acknowledge(store, clock, s, device, alarm_id)
    return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=acknowledged", status_code=303)


@pages.post("/alarms/{device}/{alarm_id}/close")
async def close_form(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                     outcome: str = Form("", max_length=40), note: str = Form("", max_length=1000),
                     s: Session = Depends(form_action(*HANDLE))):
    _close(store, clock, s, device, alarm_id, outcome, note)
    return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=closed", status_code=303)


@api.post("/alarms/{device}/{alarm_id}/acknowledge", response_model=Ok,
          responses={**API_REFUSALS, 404: refused("no such alarm"), 409: refused("already acknowledged or closed")})
async def api_ack(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                  s: Session = Depends(api_action(*HANDLE))):
    _acknowledge(store, clock, s, device, alarm_id)
    return {"ok": True}


@api.post("/alarms/{device}/{alarm_id}/close", response_model=Ok,
          responses={**API_REFUSALS, 400: refused("unknown outcome"), 404: refused("no such alarm"),
                     409: refused("already closed")})
async def api_close(device: DeviceId, alarm_id: AlarmId, body: CloseBody, store: StoreDep, clock: ClockDep,
                    s: Session = Depends(api_action(*HANDLE))):
    _close(store, clock, s, device, alarm_id, body.outcome, body.note)
    return {"ok": True}
