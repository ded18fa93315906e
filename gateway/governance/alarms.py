"""Alarm handling: the alarm queue, one alarm with its photos, acknowledging and closing it with an outcome, audited.

An operator sees photos only through an alarm they are handling (design rule 6): `alarm()`
gives an alarm's photos, `photo_of_alarm()` finds a photo only under its own alarm, and
`record_view()` audits each view. Acknowledging and closing write the audit record in the same
transaction as the change. Nothing here checks roles: the console (or CLI) does, before calling.
"""

from __future__ import annotations

import datetime as dt

from gateway.governance import audit
from gateway.storage.store import Store

OUTCOMES = {
    "verified-burglary": "Verified burglary",
    "verified-fire": "Verified fire",
    "verified-other": "Verified emergency (other)",
    "false-user-error": "False alarm: user error",
    "false-technical": "False alarm: technical",
    "test": "Test or maintenance",
    "no-conclusion": "Could not verify",
}


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def fmt_ms(ms: int | None) -> str:
    """Epoch ms as `YYYY-MM-DD HH:MM:SS UTC` ("-" for none)."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def device_time_ms(t: int | None) -> int | None:
    """Device timestamps are epoch seconds (PROTOCOL.md); tolerate milliseconds."""
    if t is None:
        return None
    return int(t) if t > 100_000_000_000 else int(t) * 1000


def alarm_queue(store: Store, limit: int = 200) -> list[dict]:
    """Open alarms first, newest first, with site, state, outcome and photo counts."""
    out = []
    for d in store.alarms.queue(limit):
        d["alarm_at_ms"] = device_time_ms(d["t"]) or d["received_at_ms"]
        d["alarm_at"] = fmt_ms(d["alarm_at_ms"])
        d["received_at"] = fmt_ms(d["received_at_ms"])
        d["site"] = d["site"] or "(unknown device)"
        d["code"] = d["code"] or "alarm"
        out.append(d)
    return out


def alarm(store: Store, device: str, alarm_id: str) -> dict:
    """One alarm: its row and site, how it was handled, its photos and the holds on them."""
    d = store.alarms.get_with_site(device, alarm_id)
    if d is None:
        raise NotFound(f"no alarm {alarm_id} from device {device}")
    d["code"] = d["code"] or "alarm"
    d["alarm_at_ms"] = device_time_ms(d["t"]) or d["received_at_ms"]
    d["alarm_at"] = fmt_ms(d["alarm_at_ms"])
    d["received_at"] = fmt_ms(d["received_at_ms"])
    d["handling"] = store.alarms.handling(device, alarm_id)
    d["photos"] = photos(store, device, alarm_id)
    d["holds"] = store.holds.by_ids({p["hold_id"] for p in d["photos"] if p["hold_id"] is not None})
    return d


def photos(store: Store, device: str, alarm_id: str) -> list[dict]:
    """The alarm's photos, newest first (by the camera's frame time, then capture order)."""
    out = []
    for d in store.images.photos_of_alarm(device, alarm_id):
        d["taken_at"] = fmt_ms(device_time_ms(d["frame_t"]))
        d["stored_at"] = fmt_ms(d["stored_at_ms"])
        d["delete_on"] = fmt_ms(d["delete_at_ms"])[:10] if d["delete_at_ms"] else "-"
        out.append(d)
    return out


def photo_of_alarm(store: Store, device: str, alarm_id: str, image_id: str) -> dict:
    """The image row, only if it belongs to this alarm: a guessed id under another alarm is not found."""
    row = store.images.photo_of_alarm(device, alarm_id, image_id)
    if row is None:
        raise NotFound("no such photo in this alarm")
    return row


def acknowledge(store: Store, device: str, alarm_id: str, user: str, now_ms: int) -> None:
    alarm(store, device, alarm_id)
    with store.transaction():
        h = store.alarms.handling(device, alarm_id)
        if h["state"] != "new":
            raise Conflict(f"the alarm was already {h['state']} by "
                           f"{h.get('closed_by') or h.get('acknowledged_by')}")
        store.alarms.acknowledge(device, alarm_id, user, now_ms)
        audit.append(store, user, "acknowledge alarm", "operator took the alarm for verification", at_ms=now_ms,
                     subject=f"alarm:{device}/{alarm_id}")


def close(store: Store, device: str, alarm_id: str, user: str, outcome: str, note: str, now_ms: int) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    note = (note or "").strip()[:1000]
    alarm(store, device, alarm_id)
    with store.transaction():
        h = store.alarms.handling(device, alarm_id)
        if h["state"] == "closed":
            raise Conflict(f"the alarm was already closed by {h['closed_by']}")
        store.alarms.close(device, alarm_id, user, outcome, note, now_ms)
        audit.append(store, user, "close alarm", f"outcome: {OUTCOMES[outcome]}", at_ms=now_ms,
                     subject=f"alarm:{device}/{alarm_id}", detail={"outcome": outcome},
                     texts={"note": note})  # its length and keyed hash: the note itself is erased after its rule


def record_view(store: Store, user: str, role: str, device: str, alarm_id: str, photo: dict, now_ms: int) -> None:
    """Audit that `user` viewed one photo of the alarm they are handling."""
    with store.transaction():
        audit.append(store, user, "view image", f"verifying alarm {alarm_id} of device {device}", at_ms=now_ms,
                     subject=photo["id"], content_hash=photo["sha256"],
                     detail={"device": device, "alarm": alarm_id, "role": role, "frame": photo["frame_index"]})
