"""Police export: a supervisor downloads an alarm under an active hold as a zip with a manifest and chain of custody."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.exceptions import HTTPException
from fastapi.responses import Response

from gateway.console.access import HOLD
from gateway.console.auth import Session
from gateway.console.context import Clock
from gateway.console.deps import ClockDep, StoreDep, api_action, form_action
from gateway.console.errors import API_REFUSALS, refused
from gateway.console.params import AlarmId, DeviceId
from gateway.console.routes.alarms import alarm_or_404
from gateway.governance.alarms import Conflict
from gateway.governance.police_export import build_bundle
from gateway.storage.keystore import KeyDestroyed
from gateway.storage.store import Store

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["console"])


def _export(store: Store, clock: Clock, s: Session, device: str, alarm_id: str) -> Response:
    alarm_or_404(store, device, alarm_id)
    try:
        fname, blob, _ = build_bundle(store, device, alarm_id, s.user, clock())
    except Conflict as exc:
        raise HTTPException(409, str(exc))
    except KeyDestroyed:
        raise HTTPException(410, "a photo of this alarm was already deleted")
    return Response(blob, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{fname}"',
                             "Cache-Control": "no-store, private"})


@pages.post("/alarms/{device}/{alarm_id}/export")
async def export_form(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                      s: Session = Depends(form_action(*HOLD))):
    return _export(store, clock, s, device, alarm_id)


@api.post("/alarms/{device}/{alarm_id}/export", response_class=Response,
          responses={**API_REFUSALS, 404: refused("no such alarm"), 409: refused("no active police hold"),
                     200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                           "description": "the police export bundle"}})
async def api_export(device: DeviceId, alarm_id: AlarmId, store: StoreDep, clock: ClockDep,
                     s: Session = Depends(api_action(*HOLD))):
    """Police export (supervisor): photos, case.json, chain-of-custody.json, MANIFEST.sha256, as a zip."""
    return _export(store, clock, s, device, alarm_id)
