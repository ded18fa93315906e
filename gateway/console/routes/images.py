"""Verification photos, served only under their own alarm, decrypted on request, never cached, each view audited.

A supervisor fetching a closed alarm's photos, or a restricted customer's, gives a reason: in
the console by the alarm page's form (kept for the session), in the API as `?reason=...`. The
reason is the `why` of each photo's "view image" record.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import HTTPException
from fastapi.responses import Response

from gateway.console.access import NEVER, PHOTOS, PHOTOS_READ, WITH_REASON, photo_rule
from gateway.console.auth import Session
from gateway.console.context import Clock
from gateway.console.deps import ClockDep, StoreDep, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import AlarmId, DeviceId, ImageId
from gateway.console.routes.alarms import alarm_or_404
from gateway.governance import alarms, need_to_know
from gateway.storage.keystore import KeyDestroyed
from gateway.storage.store import Store, StoreError

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def _photo(store: Store, clock: Clock, s: Session, device: str, alarm_id: str, image_id: str,
           reason: str | None = None) -> Response:
    a = alarm_or_404(store, device, alarm_id)
    rule = photo_rule(s.role, a)
    if rule == NEVER:
        if a["restricted"]:
            raise HTTPException(403, "processing of this customer's data is restricted: its photos are not shown")
        raise HTTPException(403, "this alarm is closed: its photos are no longer shown to operators")
    why = None
    if rule == WITH_REASON:
        why = need_to_know.clean_reason(reason) or s.opened.get(f"{device}/{alarm_id}")
        if not why:
            what = "its customer restricted processing" if a["restricted"] else "this alarm is closed"
            raise HTTPException(403, f"{what}: a supervisor gives a reason to see its photos (?reason=... in the "
                                     "API, the form on the alarm's page in the console); it is audited")
    with http_errors({alarms.NotFound: 404}):
        photo = alarms.photo_of_alarm(store, device, alarm_id, image_id)
    try:
        jpeg = store.images.read(photo["id"])
    except KeyDestroyed:
        raise HTTPException(410, "this photo was deleted (its retention period ended)")
    except StoreError as exc:
        raise HTTPException(404, str(exc))
    if why is None:
        alarms.record_view(store, s.user, s.role, device, alarm_id, photo, clock())
    else:
        need_to_know.record_photo_view(store, s.user, s.role, device, alarm_id, photo, why, clock())
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store, private", "Pragma": "no-cache",
                             "Content-Disposition": f'inline; filename="{image_id}.jpg"'})


@pages.get("/alarms/{device}/{alarm_id}/photos/{image_id}.jpg")
async def photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, store: StoreDep, clock: ClockDep,
                s: Session = Depends(require(*PHOTOS))):
    return _photo(store, clock, s, device, alarm_id, image_id)


@api.get("/alarms/{device}/{alarm_id}/photos/{image_id}", response_class=Response,
         responses={**API_REFUSALS, 404: refused("no such photo in this alarm"),
                    403: refused("role or scope not allowed; the alarm is closed (an operator), or a "
                                 "supervisor gave no reason for a closed or restricted alarm"),
                    410: refused("deleted"),
                    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                          "description": "the photo (audited)"}})
async def api_photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, store: StoreDep, clock: ClockDep,
                    reason: str | None = Query(None, max_length=500,
                                               description="A supervisor's reason for a closed alarm's photos, or "
                                                           "a restricted customer's (audited)"),
                    s: Session = Depends(require(*PHOTOS, scope=PHOTOS_READ))):
    """One photo of the alarm, decrypted, never cached; each one served is audited."""
    return _photo(store, clock, s, device, alarm_id, image_id, reason)
