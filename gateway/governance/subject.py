"""Data-subject rights: customers, their export (access, portability) and erasure, each audited.

A customer owns devices (`devices.customer_id`, migration 2). The customer's relationship
has a start and, once it ends, an end date; the activity log is kept until `activity_years`
after the end (an open relationship keeps it).

Export writes `export.json` (customer, devices without keys, events, alarms, captures, image
metadata), the still-retained images decrypted as `images/<id>.jpg`, and `MANIFEST.sha256`
(`sha256sum -c` format) over all of them.

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

from gateway.governance import audit
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
        if store.db.execute("SELECT 1 FROM customers WHERE id = ?", (customer,)).fetchone():
            raise SubjectError(f"customer {customer} exists already")
        store.db.execute("INSERT INTO customers (id, name, started_at_ms) VALUES (?, ?, ?)",
                         (customer, name, started_at_ms or now_ms))
        audit.append(store, by, "configure customer", "customer relationship recorded", at_ms=now_ms,
                     subject=customer)


def link_device(store: Store, device: str, customer: str, by: str, now_ms: int) -> None:
    with store.transaction():
        _customer(store, customer)
        if store.db.execute("UPDATE devices SET customer_id = ? WHERE id = ?", (customer, device)).rowcount == 0:
            raise SubjectError(f"no device {device}: provision it with `vericam gateway add-device`")
        audit.append(store, by, "configure device", f"device linked to customer {customer}", at_ms=now_ms,
                     subject=customer, detail={"device": device})


def end_relationship(store: Store, customer: str, ended_at_ms: int, by: str, now_ms: int) -> None:
    with store.transaction():
        _customer(store, customer)
        store.db.execute("UPDATE customers SET ended_at_ms = ? WHERE id = ?", (ended_at_ms, customer))
        audit.append(store, by, "configure customer", "customer relationship ended", at_ms=now_ms,
                     subject=customer, detail={"ended_at_ms": ended_at_ms})


def set_restricted(store: Store, customer: str, restricted: bool, by: str, why: str, now_ms: int) -> None:
    with store.transaction():
        _customer(store, customer)
        store.db.execute("UPDATE customers SET restricted = ? WHERE id = ?", (int(restricted), customer))
        audit.append(store, by, "restrict processing" if restricted else "lift restriction", why,
                     at_ms=now_ms, subject=customer)


def _customer(store: Store, customer: str) -> dict:
    row = store.db.execute("SELECT * FROM customers WHERE id = ?", (customer,)).fetchone()
    if row is None:
        raise SubjectError(f"no customer {customer}: add it with `vericam subject add-customer`")
    return dict(row)


def _devices(store: Store, customer: str) -> list[str]:
    return [r[0] for r in store.db.execute("SELECT id FROM devices WHERE customer_id = ? ORDER BY id", (customer,))]


def _in(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


def export(store: Store, customer: str, out: Path, by: str, why: str, now_ms: int) -> dict:
    """Write the customer's data to `out` (must not exist or be empty); returns the summary."""
    cust = _customer(store, customer)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SubjectError(f"{out} is not empty: export into a new directory")
    (out / "images").mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    devs = _devices(store, customer)
    doc = {"format": "vericam-subject-export/1", "exported_at_ms": now_ms, "customer": cust,
           "devices": [], "events": [], "alarms": [], "captures": [], "images": []}
    if devs:
        doc["devices"] = [dict(r) for r in store.db.execute(
            f"SELECT id, site, customer_id, revoked, online, fw, last_seen_ms, created_at_ms FROM devices "
            f"WHERE id IN ({_in(devs)}) ORDER BY id", devs)]
        for r in store.db.execute(f"SELECT * FROM events WHERE device IN ({_in(devs)}) ORDER BY id", devs):
            d = dict(r)
            d["event"] = json.loads(d.pop("json"))
            doc["events"].append(d)
        doc["alarms"] = [dict(r) for r in store.db.execute(
            f"SELECT * FROM alarms WHERE device IN ({_in(devs)}) ORDER BY received_at_ms", devs)]
        doc["captures"] = [dict(r) for r in store.db.execute(
            f"SELECT * FROM captures WHERE device IN ({_in(devs)}) ORDER BY id", devs)]
        for r in store.db.execute(
                f"SELECT id, device, capture_id, alarm_id, frame_index, frame_t, sha256, size, stored_at_ms, "
                f"kek_day AS delete_on, hold_id FROM images WHERE device IN ({_in(devs)}) "
                f"ORDER BY stored_at_ms, frame_index", devs).fetchall():
            d = dict(r)
            jpeg = store.read_image(d["id"])
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
    return summary


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
    devs = _devices(store, customer)
    report = {"customer": customer, "images_erased": 0, "uploads_dropped": 0, "kept": []}
    if devs:
        with store._lock:
            rows = store.db.execute(
                f"SELECT id, device, alarm_id, blob_path, kek_day, sha256, delete_at_ms FROM images "
                f"WHERE device IN ({_in(devs)}) AND hold_id IS NULL", devs).fetchall()
            if rows:
                report["images_erased"] = delete_images(store, rows, by, f"data-subject erasure: {why}", now_ms)
            with store.transaction():
                report["uploads_dropped"] = store.db.execute(
                    f"DELETE FROM chunks WHERE device IN ({_in(devs)})", devs).rowcount
        for h in store.db.execute(
                f"SELECT h.id, h.case_ref, count(*) AS n, min(i.kek_day) AS until FROM images i "
                f"JOIN holds h ON h.id = i.hold_id WHERE i.device IN ({_in(devs)}) GROUP BY h.id", devs):
            report["kept"].append({"what": f"{h['n']} images", "why": f"police hold #{h['id']} "
                                   f"(case {h['case_ref']})", "until": h["until"]})
        n = store.db.execute(
            f"SELECT (SELECT count(*) FROM events WHERE device IN ({_in(devs)})) + "
            f"(SELECT count(*) FROM alarms WHERE device IN ({_in(devs)})) + "
            f"(SELECT count(*) FROM captures WHERE device IN ({_in(devs)}))", devs * 3).fetchone()[0]
        if n:
            until = ("3 years after the customer relationship ends (it is open)" if cust["ended_at_ms"] is None
                     else f"{policy.activity_years} years after the relationship ended: "
                          f"{years_after(cust['ended_at_ms'], policy.activity_years)} ms")
            report["kept"].append({"what": f"{n} activity-log records (arm/disarm, alarms, technical "
                                   "alarms, capture receipts)", "why": "legal duty: the alarm activity log "
                                   "must be kept", "until": until})
    with store.transaction():
        if restrict:
            store.db.execute("UPDATE customers SET restricted = 1 WHERE id = ?", (customer,))
        audit.append(store, by, "erase subject data", why, at_ms=now_ms, subject=customer,
                     detail={"images_erased": report["images_erased"], "uploads_dropped": report["uploads_dropped"],
                             "kept": report["kept"], "restricted": restrict})
    report["refused"] = report["images_erased"] == 0 and bool(report["kept"])
    return report
