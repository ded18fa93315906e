"""What the console shows, read from the gateway's store: alarm queue, one alarm, devices, activity, audit.

Also the two things the console writes besides holds: how an alarm was handled
(acknowledged, closed with an outcome) and the police export bundle. Each write goes into the
audit trail in the same transaction. Nothing here checks roles: `app.py` does, before calling.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile

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
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def device_time_ms(t: int | None) -> int | None:
    """Device timestamps are epoch seconds (PROTOCOL.md); tolerate milliseconds."""
    if t is None:
        return None
    return int(t) if t > 100_000_000_000 else int(t) * 1000


def _handling(store: Store, device: str, alarm_id: str) -> dict:
    row = store.db.execute("SELECT * FROM alarm_handling WHERE device = ? AND alarm_id = ?",
                           (device, alarm_id)).fetchone()
    return dict(row) if row else {"state": "new"}


def alarm_queue(store: Store, limit: int = 200) -> list[dict]:
    rows = store.db.execute(
        "SELECT a.device, a.alarm_id, a.code, a.t, a.received_at_ms, d.site, "
        "coalesce(h.state, 'new') AS state, h.outcome, "
        "(SELECT count(*) FROM images i WHERE i.device = a.device AND i.alarm_id = a.alarm_id) AS photos, "
        "(SELECT count(*) FROM images i WHERE i.device = a.device AND i.alarm_id = a.alarm_id "
        " AND i.hold_id IS NOT NULL) AS held "
        "FROM alarms a LEFT JOIN devices d ON d.id = a.device "
        "LEFT JOIN alarm_handling h ON h.device = a.device AND h.alarm_id = a.alarm_id "
        "ORDER BY CASE coalesce(h.state, 'new') WHEN 'closed' THEN 1 ELSE 0 END, a.received_at_ms DESC "
        "LIMIT ?", (limit,)).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["alarm_at_ms"] = device_time_ms(d["t"]) or d["received_at_ms"]
        d["alarm_at"] = fmt_ms(d["alarm_at_ms"])
        d["received_at"] = fmt_ms(d["received_at_ms"])
        d["site"] = d["site"] or "(unknown device)"
        d["code"] = d["code"] or "alarm"
        out.append(d)
    return out


def alarm(store: Store, device: str, alarm_id: str) -> dict:
    row = store.db.execute("SELECT a.*, d.site FROM alarms a LEFT JOIN devices d ON d.id = a.device "
                           "WHERE a.device = ? AND a.alarm_id = ?", (device, alarm_id)).fetchone()
    if row is None:
        raise NotFound(f"no alarm {alarm_id} from device {device}")
    d = dict(row)
    d["code"] = d["code"] or "alarm"
    d["alarm_at_ms"] = device_time_ms(d["t"]) or d["received_at_ms"]
    d["alarm_at"] = fmt_ms(d["alarm_at_ms"])
    d["received_at"] = fmt_ms(d["received_at_ms"])
    d["handling"] = _handling(store, device, alarm_id)
    d["photos"] = photos(store, device, alarm_id)
    holds = {p["hold_id"] for p in d["photos"] if p["hold_id"] is not None}
    d["holds"] = [dict(h) for h in store.db.execute(
        f"SELECT * FROM holds WHERE id IN ({','.join('?' * len(holds))})", sorted(holds))] if holds else []
    return d


def photos(store: Store, device: str, alarm_id: str) -> list[dict]:
    """The alarm's photos, newest first (by the camera's frame time, then capture order)."""
    rows = store.db.execute(
        "SELECT i.id, i.capture_id, i.frame_index, i.frame_t, i.sha256, i.size, i.stored_at_ms, i.kek_day, "
        "i.hold_id, i.delete_at_ms, c.trigger FROM images i LEFT JOIN captures c ON c.device = i.device "
        "AND c.capture_id = i.capture_id WHERE i.device = ? AND i.alarm_id = ? "
        "ORDER BY i.frame_t DESC, i.stored_at_ms DESC, i.frame_index DESC", (device, alarm_id)).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["taken_at"] = fmt_ms(device_time_ms(d["frame_t"]))
        d["stored_at"] = fmt_ms(d["stored_at_ms"])
        d["delete_on"] = fmt_ms(d["delete_at_ms"])[:10] if d["delete_at_ms"] else "-"
        out.append(d)
    return out


def photo_of_alarm(store: Store, device: str, alarm_id: str, image_id: str) -> dict:
    """The image row, only if it belongs to this alarm: a guessed id under another alarm is not found."""
    row = store.db.execute("SELECT id, sha256, frame_index, capture_id FROM images WHERE id = ? AND device = ? "
                           "AND alarm_id = ?", (image_id, device, alarm_id)).fetchone()
    if row is None:
        raise NotFound("no such photo in this alarm")
    return dict(row)


def acknowledge(store: Store, device: str, alarm_id: str, user: str, now_ms: int) -> None:
    alarm(store, device, alarm_id)
    with store.transaction():
        h = _handling(store, device, alarm_id)
        if h["state"] != "new":
            raise Conflict(f"the alarm was already {h['state']} by "
                           f"{h.get('closed_by') or h.get('acknowledged_by')}")
        store.db.execute("INSERT INTO alarm_handling (device, alarm_id, state, acknowledged_by, acknowledged_at_ms) "
                         "VALUES (?, ?, 'acknowledged', ?, ?)", (device, alarm_id, user, now_ms))
        audit.append(store, user, "acknowledge alarm", "operator took the alarm for verification", at_ms=now_ms,
                     subject=f"alarm:{device}/{alarm_id}")


def close(store: Store, device: str, alarm_id: str, user: str, outcome: str, note: str, now_ms: int) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    note = (note or "").strip()[:1000]
    alarm(store, device, alarm_id)
    with store.transaction():
        h = _handling(store, device, alarm_id)
        if h["state"] == "closed":
            raise Conflict(f"the alarm was already closed by {h['closed_by']}")
        store.db.execute(
            "INSERT INTO alarm_handling (device, alarm_id, state, acknowledged_by, acknowledged_at_ms, outcome, note, "
            "closed_by, closed_at_ms) VALUES (?, ?, 'closed', ?, ?, ?, ?, ?, ?) ON CONFLICT (device, alarm_id) DO "
            "UPDATE SET state = 'closed', outcome = excluded.outcome, note = excluded.note, "
            "closed_by = excluded.closed_by, closed_at_ms = excluded.closed_at_ms",
            (device, alarm_id, user, now_ms, outcome, note, user, now_ms))
        audit.append(store, user, "close alarm", f"outcome: {OUTCOMES[outcome]}", at_ms=now_ms,
                     subject=f"alarm:{device}/{alarm_id}", detail={"outcome": outcome, "note": note})


def record_view(store: Store, user: str, role: str, device: str, alarm_id: str, photo: dict, now_ms: int) -> None:
    with store.transaction():
        audit.append(store, user, "view image", f"verifying alarm {alarm_id} of device {device}", at_ms=now_ms,
                     subject=photo["id"], content_hash=photo["sha256"],
                     detail={"device": device, "alarm": alarm_id, "role": role, "frame": photo["frame_index"]})


def police_export(store: Store, device: str, alarm_id: str, user: str, now_ms: int) -> tuple[str, bytes, dict]:
    """A zip for the police: photos, metadata, chain of custody, SHA-256 manifest. Needs an active hold."""
    a = alarm(store, device, alarm_id)
    active = [h for h in a["holds"] if h["released_at_ms"] is None]
    if not a["photos"] or not active:
        raise Conflict("a police export needs the alarm's photos under an active police hold (it names the case)")
    hold = active[0]
    ids = [p["id"] for p in a["photos"]]
    subjects = set(ids) | {f"alarm:{device}/{alarm_id}"} | {f"hold:{h['id']}" for h in a["holds"]}
    custody = []
    for c in store.db.execute("SELECT capture_id, trigger, captured_at, sha256, size, frames, received_at_ms, "
                              "stored_at_ms FROM captures WHERE device = ? AND alarm_id = ? AND status = 'stored' "
                              "ORDER BY id", (device, alarm_id)):
        custody.append({"at": fmt_ms(device_time_ms(c["captured_at"])), "who": f"device {device}",
                        "what": "captured and sealed at the lens", "capture": c["capture_id"],
                        "trigger": c["trigger"]})
        custody.append({"at": fmt_ms(c["received_at_ms"]), "who": "gateway", "what": "first chunk received",
                        "capture": c["capture_id"]})
        custody.append({"at": fmt_ms(c["stored_at_ms"]), "who": "gateway",
                        "what": "verified (MAC, counter), decrypted, re-encrypted at rest and stored durably",
                        "capture": c["capture_id"], "sealed_sha256": c["sha256"], "sealed_size": c["size"]})
    for r in store.db.execute(
            f"SELECT * FROM audit WHERE subject IN ({','.join('?' * len(subjects))}) ORDER BY seq", sorted(subjects)):
        custody.append({"at": fmt_ms(r["at_ms"]), "who": r["who"], "what": r["what"], "why": r["why"],
                        "subject": r["subject"], "audit_seq": r["seq"], "audit_hash": r["hash"]})
    head = store.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    files: dict[str, bytes] = {}
    meta = []
    for p in sorted(a["photos"], key=lambda p: (p["frame_t"], p["frame_index"])):
        jpeg = store.images.read(p["id"])
        name = f"photos/{p['capture_id'][:8]}-{p['frame_index']:02d}-{p['id'][:12]}.jpg"
        files[name] = jpeg
        meta.append({"file": name, "image_id": p["id"], "sha256": p["sha256"], "size": p["size"],
                     "frame_index": p["frame_index"], "taken_at": p["taken_at"], "stored_at": p["stored_at"],
                     "trigger": p["trigger"]})
        del jpeg
    case = {"format": "vericam-police-export/1", "exported_at": fmt_ms(now_ms), "exported_by": user,
            "case_reference": hold["case_ref"], "hold": {k: hold[k] for k in ("id", "reason", "placed_by",
                                                                              "placed_at_ms", "role_source")},
            "alarm": {"device": device, "site": a["site"], "alarm_id": alarm_id, "type": a["code"],
                      "alarm_at": a["alarm_at"], "received_at": a["received_at"],
                      "handling": a["handling"]},
            "photos": meta}
    files["case.json"] = json.dumps(case, indent=2, sort_keys=True).encode()
    files["chain-of-custody.json"] = json.dumps(
        {"events": custody, "audit_head_at_export": {"seq": head["seq"], "hash": head["hash"]} if head else None,
         "note": "audit_seq/audit_hash refer to the gateway's hash-chained audit log; "
                 "`vericam audit verify` on the gateway checks the chain"}, indent=2).encode()
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    files["MANIFEST.sha256"] = manifest.encode()
    manifest_sha = hashlib.sha256(files["MANIFEST.sha256"]).hexdigest()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(files.items()):
            z.writestr(name, data)
    files.clear()
    with store.transaction():
        audit.append(store, user, "police export", f"export for police case {hold['case_ref']}", at_ms=now_ms,
                     subject=f"hold:{hold['id']}", content_hash=manifest_sha,
                     detail={"device": device, "alarm": alarm_id, "images": ids, "case": hold["case_ref"]})
    fname = f"vericam-{device}-{alarm_id}-case-{_safe(hold['case_ref'])}.zip"
    return fname, buf.getvalue(), {"manifest_sha256": manifest_sha, "images": len(ids), "case": hold["case_ref"]}


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)[:40]


def devices(store: Store) -> list[dict]:
    out = []
    for d in store.devices.list():
        if d["online"] is None:
            state = "never seen"
        elif d["online"]:
            state = "online"
        else:
            state = f"offline since {fmt_ms(d['last_seen_ms'])}"
        out.append({"id": d["id"], "site": d["site"], "revoked": bool(d["revoked"]), "online": d["online"],
                    "state": state, "fw": d["fw"], "last_heartbeat_ms": d["last_seen_ms"],
                    "last_heartbeat": fmt_ms(d["last_seen_ms"])})
    return out


def sites(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("SELECT DISTINCT site FROM devices ORDER BY site")]


def activity(store: Store, site: str | None, from_ms: int | None, to_ms: int | None, limit: int = 500) -> list[dict]:
    sql = ("SELECT e.id, e.device, d.site, e.alarm_id, e.kind, e.code, e.slot, e.t, e.received_at_ms "
           "FROM events e LEFT JOIN devices d ON d.id = e.device")
    conds, args = [], []
    if site:
        conds.append("d.site = ?")
        args.append(site)
    if from_ms is not None:
        conds.append("e.received_at_ms >= ?")
        args.append(from_ms)
    if to_ms is not None:
        conds.append("e.received_at_ms < ?")
        args.append(to_ms)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    out = []
    for r in store.db.execute(sql + " ORDER BY e.received_at_ms DESC, e.id DESC LIMIT ?", (*args, limit)):
        d = dict(r)
        d["at"] = fmt_ms(device_time_ms(d["t"]) or d["received_at_ms"])
        out.append(d)
    return out


def audit_trail(store: Store, what: str | None, who: str | None, subject: str | None,
                from_ms: int | None, to_ms: int | None, limit: int = 500) -> list[dict]:
    sql = "SELECT seq, at_ms, who, what, why, subject, key_id, content_hash, detail, hash FROM audit"
    conds, args = [], []
    for col, val in (("what", what), ("who", who), ("subject", subject)):
        if val:
            conds.append(f"{col} = ?")
            args.append(val)
    if from_ms is not None:
        conds.append("at_ms >= ?")
        args.append(from_ms)
    if to_ms is not None:
        conds.append("at_ms < ?")
        args.append(to_ms)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    out = []
    for r in store.db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)):
        d = dict(r)
        d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
        d["at"] = fmt_ms(d["at_ms"])
        out.append(d)
    return out


def audit_kinds(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("SELECT DISTINCT what FROM audit ORDER BY what")]
