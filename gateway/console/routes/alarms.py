"""The alarm queue and one alarm with its photos and holds: what an operator works from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.console.access import ALARMS_READ, HANDLE, may_see_photos
from gateway.console.auth import Session
from gateway.console.deps import ConsoleDep, StoreDep, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import AlarmId, DeviceId
from gateway.console.models import AlarmDetail, QueuedAlarm
from gateway.governance import alarms
from gateway.storage.store import Store

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def alarm_or_404(store: Store, device: str, alarm_id: str) -> dict:
    with http_errors({alarms.NotFound: 404}):
        return alarms.alarm(store, device, alarm_id)


@pages.get("/alarms")
async def queue_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*HANDLE))):
    return console.page(request, "queue.html", s, alarms=alarms.alarm_queue(console.store))


@pages.get("/alarms/rows")
async def queue_rows(request: Request, console: ConsoleDep, s: Session = Depends(require(*HANDLE))):
    return console.page(request, "_queue_rows.html", s, alarms=alarms.alarm_queue(console.store))


@pages.get("/alarms/{device}/{alarm_id}")
async def alarm_page(request: Request, device: DeviceId, alarm_id: AlarmId, console: ConsoleDep,
                     s: Session = Depends(require(*HANDLE))):
    a = alarm_or_404(console.store, device, alarm_id)
    return console.page(request, "alarm.html", s, a=a, show_photos=may_see_photos(s.role, a),
                        message=request.query_params.get("msg"))


@api.get("/alarms", responses=API_REFUSALS, response_model=list[QueuedAlarm])
async def api_alarms(store: StoreDep, s: Session = Depends(require(*HANDLE, scope=ALARMS_READ))):
    """The alarm queue: open alarms first, newest first."""
    return alarms.alarm_queue(store)


@api.get("/alarms/{device}/{alarm_id}", responses={**API_REFUSALS, 404: refused("no such alarm")},
         response_model=AlarmDetail)
async def api_alarm(device: DeviceId, alarm_id: AlarmId, store: StoreDep,
                    s: Session = Depends(require(*HANDLE, scope=ALARMS_READ))):
    a = alarm_or_404(store, device, alarm_id)
    for p in a["photos"]:
        p["url"] = f"/api/alarms/{device}/{alarm_id}/photos/{p['id']}"
    return a
