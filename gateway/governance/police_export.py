"""Police export: the bundle of one held alarm's photos for the police, with a chain of custody and a SHA-256 manifest.

A bundle is a zip of `photos/*.jpg`, `case.json` (the case reference, the hold, the alarm and
each photo's hash as recorded at the ARC), `chain-of-custody.json` (capture, receipt and
storage of each capture, then every audit record about the photos, the alarm and its holds,
with the audit head at export) and `MANIFEST.sha256` over all of them. Only photos under an
active police hold can be exported. Writing a bundle is audited with the SHA-256 of its
manifest, so a bundle handed to the police can later be matched to the audit log. The console
(supervisor) and `vericam export CASE` give the same bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from gateway.governance import audit
from gateway.governance.alarms import Conflict, alarm, device_time_ms, fmt_ms
from gateway.storage.store import Store


def build_bundle(store: Store, device: str, alarm_id: str, user: str, now_ms: int) -> tuple[str, bytes, dict]:
    """(file name, zip bytes, {manifest_sha256, images, case}) for one alarm. Needs an active hold (Conflict)."""
    a = alarm(store, device, alarm_id)
    active = [h for h in a["holds"] if h["released_at_ms"] is None]
    if not a["photos"] or not active:
        raise Conflict("a police export needs the alarm's photos under an active police hold (it names the case)")
    hold = active[0]
    ids = [p["id"] for p in a["photos"]]
    subjects = set(ids) | {f"alarm:{device}/{alarm_id}"} | {f"hold:{h['id']}" for h in a["holds"]}
    custody = []
    for c in store.captures.stored_of_alarm(device, alarm_id):
        custody.append({"at": fmt_ms(device_time_ms(c["captured_at"])), "who": f"device {device}",
                        "what": "captured and sealed at the lens", "capture": c["capture_id"],
                        "trigger": c["trigger"]})
        custody.append({"at": fmt_ms(c["received_at_ms"]), "who": "gateway", "what": "first chunk received",
                        "capture": c["capture_id"]})
        custody.append({"at": fmt_ms(c["stored_at_ms"]), "who": "gateway",
                        "what": "verified (MAC, counter), decrypted, re-encrypted at rest and stored durably",
                        "capture": c["capture_id"], "sealed_sha256": c["sha256"], "sealed_size": c["size"]})
    for r in store.audit.of_subjects(subjects):
        custody.append({"at": fmt_ms(r["at_ms"]), "who": r["who"], "what": r["what"], "why": r["why"],
                        "subject": r["subject"], "audit_seq": r["seq"], "audit_hash": r["hash"]})
    head = store.audit.head()
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
        {"events": custody, "audit_head_at_export": {"seq": head[0], "hash": head[1]} if head else None,
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
