"""Verification photos, served only under their own alarm, decrypted on request, never cached, each view audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.exceptions import HTTPException
from fastapi.responses import Response

from gateway.console.access import PHOTOS, PHOTOS_READ, may_see_photos
from gateway.console.auth import Session
from gateway.console.context import Clock
from gateway.console.deps import ClockDep, StoreDep, require
from gateway.console.errors import API_REFUSALS, http_errors, refused
from gateway.console.params import AlarmId, DeviceId, ImageId
from gateway.console.routes.alarms import alarm_or_404
from gateway.governance import alarms
from gateway.storage.keystore import KeyDestroyed
from gateway.storage.store import Store, StoreError

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def _photo(store: Store, clock: Clock, s: Session, device: str, alarm_id: str, image_id: str) -> Response:
    a = alarm_or_404(store, device, alarm_id)
    if not may_see_photos(s.role, a):
        raise HTTPException(403, "this alarm is closed: its photos are no longer shown to operators")
    with http_errors({alarms.NotFound: 404}):
        photo = alarms.photo_of_alarm(store, device, alarm_id, image_id)
    try:
        jpeg = store.images.read(photo["id"])
    except KeyDestroyed:
        raise HTTPException(410, "this photo was deleted (its retention period ended)")
    except StoreError as exc:
        raise HTTPException(404, str(exc))
    alarms.record_view(store, s.user, s.role, device, alarm_id, photo, clock())
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store, private", "Pragma": "no-cache",
                             "Content-Disposition": f'inline; filename="{image_id}.jpg"'})


@pages.get("/alarms/{device}/{alarm_id}/photos/{image_id}.jpg")
async def photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, store: StoreDep, clock: ClockDep,
                s: Session = Depends(require(*PHOTOS))):
    return _photo(store, clock, s, device, alarm_id, image_id)


@api.get("/alarms/{device}/{alarm_id}/photos/{image_id}", response_class=Response,
         responses={**API_REFUSALS, 404: refused("no such photo in this alarm"),
                    410: refused("deleted"),
                    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                          "description": "the photo (audited)"}})
async def api_photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, store: StoreDep, clock: ClockDep,
                    s: Session = Depends(require(*PHOTOS, scope=PHOTOS_READ))):
    return _photo(store, clock, s, device, alarm_id, image_id)
