"""Data-subject rights: customers, their export (access, portability) and erasure, each audited.

A customer owns devices (`devices.customer_id`, migration 2). The customer's relationship
has a start and, once it ends, an end date; the activity log is kept until `activity_years`
after the end (an open relationship keeps it).

Export writes `export.json` (customer, devices without keys, events, alarms, captures, image
metadata), the still-retained images decrypted as `images/<id>.jpg`, and `MANIFEST.sha256`
(`sha256sum -c` format) over all of them.

The access report (household transparency) lists who viewed which of the household's photos,
when and why, from the audit trail: every photo view, every opening of photos with a reason,
every police export of them, and the household's own exports. It holds nothing else of any
staff member (`gateway.storage.access_report` selects by the household's devices), and its own
reading is audited.

Erase deletes what may be deleted now: images not under a police hold (files, rows; their
data keys stay wrapped under the deletion day's KEK in older backups until that day's KEK is
destroyed, at most `image_days` later) and unfinished uploads. It keeps, and reports, images
under a hold and the activity log under the legal duty. It can also set the restriction flag.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from gateway.governance import audit, need_to_know
from gateway.governance.alarms import fmt_ms
from gateway.governance.retention import RetentionPolicy, delete_images, years_after
from gateway.storage.store import Store

CUSTOMER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SubjectError(Exception):
    pass


def add_customer(store: Store, customer: str, name: str | None, by: str, now_ms: int,
                 started_at_ms: int | None = None) -> None:
    if not CUSTOMER_ID.match(customer or ""):
        raise SubjectError(f"customer id {customer!r} must be 1-64 letters, digits or ._-")
    with store.transaction():
        if not store.customers.add(customer, name, started_at_ms or now_ms):
            raise SubjectError(f"customer {customer} exists already")
        audit.append(store, by, "configure customer", "customer relationship recorded", at_ms=now_ms,
                     subject=customer)


def link_device(store: Store, device: str, customer: str, by: str, now_ms: int) -> None:
    with store.transaction():
        _customer(store, customer)
        if not store.devices.link_customer(device, customer):
            raise SubjectError(f"no device {device}: provision it with `vericam gateway add-device`")
        audit.append(store, by, "configure device", f"device linked to customer {customer}", at_ms=now_ms,
                     subject=customer, detail={"device": device})


def set_restricted(store: Store, customer: str, restricted: bool, by: str, why: str, now_ms: int) -> None:
    with store.transaction():
        _customer(store, customer)
        store.customers.set_restricted(customer, restricted)
        audit.append(store, by, "restrict processing" if restricted else "lift restriction", why,
                     at_ms=now_ms, subject=customer)


def _customer(store: Store, customer: str) -> dict:
    row = store.customers.get(customer)
    if row is None:
        raise SubjectError(f"no customer {customer}: add it with `vericam subject add-customer`")
    return row


def export(store: Store, customer: str, out: Path, by: str, why: str, now_ms: int) -> dict:
    """Write the customer's data to `out` (must not exist or be empty); returns the summary."""
    cust = _customer(store, customer)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SubjectError(f"{out} is not empty: export into a new directory")
    (out / "images").mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    devs = store.devices.of_customer(customer)
    doc = {"format": "vericam-subject-export/1", "exported_at_ms": now_ms, "customer": cust,
           "devices": [], "events": [], "alarms": [], "captures": [], "images": []}
    if devs:
        doc["devices"] = store.devices.for_export(devs)
        doc["events"] = store.events.of_devices(devs)
        doc["alarms"] = store.alarms.of_devices(devs)
        doc["captures"] = store.captures.of_devices(devs)
        for d in store.images.for_export(devs):
            jpeg = store.images.read(d["id"])
            name = f"images/{d['id']}.jpg"
            _write(out / name, jpeg)
            d["file"] = name
            doc["images"].append(d)
    _write(out / "export.json", json.dumps(doc, indent=2, sort_keys=True).encode())
    manifest = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        manifest.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}")
    text = "\n".join(manifest) + "\n"
    _write(out / "MANIFEST.sha256", text.encode())
    summary = {"customer": customer, "devices": len(doc["devices"]), "events": len(doc["events"]),
               "alarms": len(doc["alarms"]), "images": len(doc["images"]),
               "manifest_sha256": hashlib.sha256(text.encode()).hexdigest()}
    with store.transaction():
        audit.append(store, by, "export subject data", why, at_ms=now_ms, subject=customer,
                     content_hash=summary["manifest_sha256"], detail={k: v for k, v in summary.items()
                                                                      if k != "manifest_sha256"})
        store.exports.add("subject export", str(out.resolve()), customer, by, now_ms, summary["manifest_sha256"])
    return summary  # retention deletes the directory `export_days` later (issue 15)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def verify_manifest(out: Path) -> list[str]:
    """Problems with an export directory against its MANIFEST.sha256 ([] if it checks)."""
    problems = []
    listed = set()
    for line in (Path(out) / "MANIFEST.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed.add(rel)
        p = Path(out) / rel
        if not p.exists():
            problems.append(f"{rel} is missing")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            problems.append(f"{rel} does not match its SHA-256")
    for p in Path(out).rglob("*"):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and rel != "MANIFEST.sha256" and rel not in listed:
            problems.append(f"{rel} is not in the manifest")
    return problems


def erase(store: Store, customer: str, by: str, why: str, now_ms: int, restrict: bool = False,
          policy: RetentionPolicy | None = None) -> dict:
    """Erase what may be erased; report what a hold or the legal duty keeps."""
    policy = policy or RetentionPolicy()
    cust = _customer(store, customer)
    devs = store.devices.of_customer(customer)
    report = {"customer": customer, "images_erased": 0, "uploads_dropped": 0, "kept": []}
    if devs:
        with store.exclusive():
            rows = store.retention.unheld_images_of(devs)
            if rows:
                report["images_erased"] = delete_images(store, rows, by, f"data-subject erasure: {why}", now_ms)
            with store.transaction():
                report["uploads_dropped"] = store.spool.drop_devices(devs)
        for h in store.holds.held_on_devices(devs):
            report["kept"].append({"what": f"{h['n']} images", "why": f"police hold #{h['id']} "
                                   f"(case {h['case_ref']})", "until": h["until"]})
        n = store.retention.activity_count(devs)
        if n:
            until = ("3 years after the customer relationship ends (it is open)" if cust["ended_at_ms"] is None
                     else f"{policy.activity_years} years after the relationship ended: "
                          f"{years_after(cust['ended_at_ms'], policy.activity_years)} ms")
            report["kept"].append({"what": f"{n} activity-log records (arm/disarm, alarms, technical "
                                   "alarms, capture receipts)", "why": "legal duty: the alarm activity log "
                                   "must be kept", "until": until})
    with store.transaction():
        if restrict:
            store.customers.set_restricted(customer, True)
        audit.append(store, by, "erase subject data", why, at_ms=now_ms, subject=customer,
                     detail={"images_erased": report["images_erased"], "uploads_dropped": report["uploads_dropped"],
                             "kept": report["kept"], "restricted": restrict})
    report["refused"] = report["images_erased"] == 0 and bool(report["kept"])
    return report


def access_report(store: Store, customer: str, by: str, role: str, now_ms: int,
                  reads: need_to_know.Reads | None = None) -> dict:
    """Who viewed which of the household's photos, when and why (see the module docstring). Audited."""
    _customer(store, customer)
    devs = store.devices.of_customer(customer)
    out = []
    for r in need_to_know.photo_reads(store, devs, customer):
        d = r["detail"]
        if r["what"] == "view image":
            photos = [r["subject"]]
        elif r["what"] == "police export":
            photos = list(d.get("images") or [])
        else:
            photos = []
        out.append({"at_ms": r["at_ms"], "at": fmt_ms(r["at_ms"]), "who": r["who"], "role": d.get("role"),
                    "what": r["what"], "why": r["why"], "device": d.get("device"), "alarm": d.get("alarm"),
                    "photos": photos, "audit_seq": r["seq"]})
    readers: dict[str, int] = {}
    for r in out:
        readers[r["who"]] = readers.get(r["who"], 0) + 1
    need_to_know.record_read(store, by, role, "view access report", "household transparency", now_ms,
                             subject=customer, detail={"devices": devs, "reads": len(out)}, reads=reads,
                             shown=[r["audit_seq"] for r in out])
    return {"customer": customer, "devices": devs, "reads": out, "readers": readers}
