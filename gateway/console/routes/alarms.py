"""The alarm queue and one alarm with its photos and holds: what an operator works from, each read audited.

A customer who restricted processing has their alarms left out of the queue for operators and
API tokens, and their alarm pages refused; a supervisor sees them marked, without the site, and
their photos only after giving a reason (`POST .../open`), as for a closed alarm.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import RedirectResponse

from gateway.console.access import ALARMS_READ, HANDLE, NEVER, WITH_REASON, photo_rule, why_reason
from gateway.console.auth import Session
from gateway.console.context import Console
from gateway.console.deps import ConsoleDep, form_action, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import AlarmId, DeviceId
from gateway.console.models import AlarmDetail, QueuedAlarm
from gateway.governance import alarms, need_to_know
from gateway.storage.store import Store

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])

RESTRICTED = "processing of this customer's data is restricted: a supervisor may open the alarm with a reason"


def alarm_or_404(store: Store, device: str, alarm_id: str) -> dict:
    """The alarm, with `restricted` set (and its site hidden) when its customer restricted processing."""
    with http_errors({alarms.NotFound: 404}):
        a = alarms.alarm(store, device, alarm_id)
    a["restricted"] = need_to_know.is_restricted(store, device)
    if a["restricted"]:
        a["site"] = need_to_know.RESTRICTED_SITE
    return a


def shown_alarm(console: Console, s: Session, device: str, alarm_id: str) -> dict:
    """The alarm as `s` may see it, its read audited; 403 for an operator or token on a restricted customer."""
    a = alarm_or_404(console.store, device, alarm_id)
    if a["restricted"] and s.role != "supervisor":
        raise HTTPException(403, RESTRICTED)
    console.record_read(s, "view alarm", "alarm handling", subject=f"alarm:{device}/{alarm_id}",
                        detail={"device": device, "alarm": alarm_id, "state": a["handling"]["state"],
                                "restricted": a["restricted"]},
                        shown=[a["handling"], [p["id"] for p in a["photos"]], a["restricted"]])
    return a


def queue(console: Console, s: Session) -> list[dict]:
    """The alarm queue as `s` may see it (restricted customers' alarms left out, or marked for a
    supervisor), the read audited with the alarms it showed."""
    hidden_devices = need_to_know.restricted_devices(console.store)
    rows, hidden = [], 0
    for a in alarms.alarm_queue(console.store):
        a["restricted"] = a["device"] in hidden_devices
        if a["restricted"]:
            if s.role != "supervisor":
                hidden += 1
                continue
            a["site"] = need_to_know.RESTRICTED_SITE
        rows.append(a)
    keys = [f"{a['device']}/{a['alarm_id']}" for a in rows]
    console.record_read(s, "view alarm queue", "alarm handling", detail={"alarms": keys, "restricted_hidden": hidden},
                        shown=keys)
    return rows


@pages.get("/alarms")
async def queue_page(request: Request, console: ConsoleDep, s: Session = Depends(require(*HANDLE))):
    return console.page(request, "queue.html", s, alarms=queue(console, s))


@pages.get("/alarms/rows")
async def queue_rows(request: Request, console: ConsoleDep, s: Session = Depends(require(*HANDLE))):
    return console.page(request, "_queue_rows.html", s, alarms=queue(console, s))


@pages.get("/alarms/{device}/{alarm_id}")
async def alarm_page(request: Request, device: DeviceId, alarm_id: AlarmId, console: ConsoleDep,
                     s: Session = Depends(require(*HANDLE))):
    a = shown_alarm(console, s, device, alarm_id)
    rule = photo_rule(s.role, a)
    reason = s.opened.get(f"{device}/{alarm_id}") if rule == WITH_REASON else None
    return console.page(request, "alarm.html", s, a=a, photo_rule=rule, opened_with=reason,
                        show_photos=rule != NEVER and (rule != WITH_REASON or reason is not None),
                        why_reason=why_reason(a), message=request.query_params.get("msg"))


@pages.post("/alarms/{device}/{alarm_id}/open")
async def open_form(device: DeviceId, alarm_id: AlarmId, console: ConsoleDep,
                    reason: str = Form("", max_length=500), s: Session = Depends(form_action(*HANDLE))):
    """A supervisor opens the photos of a closed alarm, or of a restricted customer's, giving a reason."""
    a = alarm_or_404(console.store, device, alarm_id)
    if photo_rule(s.role, a) != WITH_REASON:
        raise HTTPException(403, "only a supervisor opens photos with a reason, and only of a closed alarm or a "
                                 "restricted customer's")
    why = need_to_know.clean_reason(reason)
    if not why:
        raise HTTPException(400, "give a reason for opening these photos: it goes into the audit trail")
    need_to_know.record_opening(console.store, s.user, s.role, device, alarm_id, why, why_reason(a), console.clock())
    s.opened[f"{device}/{alarm_id}"] = why
    return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=photos-opened", status_code=303)


@api.get("/alarms", responses=API_REFUSALS, response_model=list[QueuedAlarm])
async def api_alarms(console: ConsoleDep, s: Session = Depends(require(*HANDLE, scope=ALARMS_READ))):
    """The alarm queue: open alarms first, newest first. A customer under restriction is left out
    (a supervisor sees their alarms marked `restricted`, without the site). Audited."""
    return queue(console, s)


@api.get("/alarms/{device}/{alarm_id}", responses={**API_REFUSALS, 404: refused("no such alarm"),
                                                   403: refused("role or scope not allowed, or the customer "
                                                                "restricted processing")},
         response_model=AlarmDetail)
async def api_alarm(device: DeviceId, alarm_id: AlarmId, console: ConsoleDep,
                    s: Session = Depends(require(*HANDLE, scope=ALARMS_READ))):
    """One alarm with its handling, photos and holds. Audited. A supervisor fetches the photos of a
    closed alarm, or of a restricted customer's, with `?reason=...` (`photos_need_reason`)."""
    a = shown_alarm(console, s, device, alarm_id)
    a["photos_need_reason"] = photo_rule(s.role, a) == WITH_REASON
    for p in a["photos"]:
        p["url"] = f"/api/alarms/{device}/{alarm_id}/photos/{p['id']}"
    return a
