"""Time travel: the real store, sweeper, holds and key store run for weeks under a simulated clock.

Every simulated day each device has an alarm with two images, stored as the ingest stores them.
Every third alarm is put under a police hold two hours later; of those, some are released on
day 3 (back on the 7-day schedule), some on day 10 (deleted at once) and the rest run to the
30-day limit. A "nightly backup" (the database rows and blob files) is taken every day at 03:00.

Customers own the cameras, and their relationships end during the run (`END_DAYS`): their
devices then fall silent. One more camera has no customer. Every alarm is closed an hour later
with a free-text note; every hold that runs to its end also gets a police bundle written to
disk and registered as an export. The nightly backup sets are rotated as the operator's
backup tool is told to (`backup_days`): the gateway does not enforce that, the simulation
models it so that the table has a row for it.

Every simulated hour the sweeper runs, then the rules are checked:
- the oldest image without a hold is at most `image_days` old, the oldest held one at most
  `hold_days` (ages from the alarm);
- no image is deleted early: unheld ones not before `image_days - 1` days, held ones not
  before `hold_days - 1` days unless released;
- no orphans: blob files and image rows agree (`reconcile`);
- nothing in any backup decrypts with the live key store once its image is gone;
- every other class of `gateway.governance.retention_rules` (activity log, customer identity,
  alarm notes, hold records, exports, the audit trail, backup sets): the oldest item still
  kept is at most its rule old, counted from its clock; and a deleted export's files are gone.
The report's `classes` gives each class's rule and the oldest age seen (`max_age_days`).
"""

from __future__ import annotations

import datetime as _dt
import random
import secrets
import tempfile
from pathlib import Path
from typing import Callable

from gateway.governance import alarms as alarms_mod
from gateway.governance import hold as hold_mod
from gateway.governance import subject as subject_mod
from gateway.governance.retention import (OTHER_CLASSES, RetentionPolicy, Sweeper, deletion_day, end_relationship, reconcile,
                                          register_export)
from gateway.governance.retention_rules import RULES
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage import at_rest
from gateway.storage.captures import CaptureRecord
from gateway.storage.keystore import KeyStoreError
from gateway.storage.store import Store

HOUR = 3_600_000
DAY = 24 * HOUR
DEVICES = ("sim-cam-1", "sim-cam-2", "sim-cam-3", "sim-cam-4")
OWNERS = {"sim-cam-1": "C-1", "sim-cam-2": "C-2", "sim-cam-3": "C-3"}  # sim-cam-4 has no customer
END_DAYS = {"C-3": 20, "C-1": 100}  # the day each relationship ends (if the run lasts that long)


def _store_alarm(store: Store, device: str, at_ms: int, rng: random.Random, image_days: int) -> str:
    aid, cid = secrets.token_hex(8), secrets.token_hex(8)
    with store.transaction():
        alarm = store.alarms.note(device, aid, at_ms)
        day = deletion_day(alarm["received_at_ms"], image_days)
        for i in range(2):
            jpeg = b"\xff\xd8\xff\xe0" + rng.randbytes(400) + b"\xff\xd9"
            store.images.put(jpeg, device=device, capture_id=cid, alarm_id=aid, frame_index=i, frame_t=at_ms // 1000,
                             kek_day=day, at_ms=at_ms)
        store.captures.claim(CaptureRecord(device, cid, aid, "stored", "0" * 64, 900, 2, at_ms, "intrusion",
                                           at_ms // 1000))
        store.alarms.link_capture(device, aid, cid)
    return aid


def simulate(days: int = 40, seed: int = 1, data_dir: str | Path | None = None,
             policy: RetentionPolicy | None = None, progress: Callable[[str], None] | None = None) -> dict:
    policy = policy or RetentionPolicy(batch=50)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="vericam-sim-") as tmp:
        data = Path(data_dir) if data_dir else Path(tmp) / "gw"
        init_arc(data)
        for d in DEVICES:
            add_device(data, d, "sim-site")
        start = int(_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc).timestamp() * 1000)
        clock = [start]
        store = Store.open(data)
        try:
            for dev, cust in OWNERS.items():
                subject_mod.add_customer(store, cust, f"Customer {cust}", "sim-admin", start - DAY,
                                         started_at_ms=start - DAY)
                subject_mod.link_device(store, dev, cust, "sim-admin", start - DAY)
            return _run(store, policy, rng, days, start, clock, progress or (lambda line: None), Path(tmp))
        finally:
            store.close()


def _run(store, policy, rng, days, start, clock, progress, tmp: Path) -> dict:
    sweeper = Sweeper(store, policy, clock=lambda: clock[0] / 1000)
    alarm_at: dict[str, int] = {}       # image id -> alarm time
    plan: list[tuple[int, str, object]] = []  # (at_ms, action, arg)
    backups: dict[tuple[str, bytes], tuple[str, bytes, str]] = {}  # (image, wrapped) -> (kek, blob, alarm day)
    held_now: dict[str, int] = {}       # image id -> hold id, while held
    released: set[str] = set()
    out = {"days": days, "hours": 0, "alarms": 0, "images_stored": 0, "holds_placed": 0, "holds_released": 0,
           "violations": 0, "max_age_days_unheld": 0.0, "max_age_days_held": 0.0, "orphans": 0,
           "premature_deletions": 0, "decryptable_after_expiry": 0, "backups": 0, "keks_destroyed": 0,
           "images_deleted": 0}
    decryptable_ids: set[str] = set()
    ended_devices: list[str] = []
    backup_sets: list[int] = []  # when each nightly backup set still kept was taken
    exports_dir = tmp / "exports"
    exports_dir.mkdir(exist_ok=True)
    deleted_export_files: set[str] = set()
    ages = {r.data_class: 0.0 for r in RULES}
    rule_days = {r.data_class: policy.days_of(r.data_class) for r in RULES}
    class_violations = 0
    end_at = {c: start + d * DAY + 9 * HOUR for c, d in END_DAYS.items() if d < days}
    for day in range(days):
        for d in DEVICES:
            at = start + day * DAY + rng.randrange(24) * HOUR + rng.randrange(HOUR)
            if OWNERS.get(d) in end_at and at >= end_at[OWNERS[d]]:
                continue  # the relationship has ended: the device is silent
            plan.append((at, "alarm", d))
    for cust, at in end_at.items():
        plan.append((at, "end", cust))
    plan.sort(key=lambda p: p[0])
    n_alarm = 0
    for h in range(days * 24 + 1):
        now = start + h * HOUR
        clock[0] = now
        while plan and plan[0][0] <= now:
            at, action, arg = plan.pop(0)
            clock[0] = at
            if action == "alarm":
                aid = _store_alarm(store, arg, at, rng, policy.image_days)
                out["alarms"] += 1
                ids = [r["id"] for r in store.images.of_alarm(arg, aid)]
                out["images_stored"] += len(ids)
                for i in ids:
                    alarm_at[i] = at
                n_alarm += 1
                plan.append((at + HOUR, "close", (arg, aid)))
                if n_alarm % 3 == 0:
                    plan.append((at + 2 * HOUR, "hold", f"{arg}/{aid}"))
                plan.sort(key=lambda p: p[0])
            elif action == "close":
                alarms_mod.close(store, arg[0], arg[1], "sim-operator", "false-user-error",
                                 "the resident's visitor entered the wrong code", at)
            elif action == "end":
                end_relationship(store, arg, at, "sim-admin", at, "simulated contract end", role="admin")
                ended_devices.extend(d for d, c in OWNERS.items() if c == arg)
                out["relationships_ended"] = out.get("relationships_ended", 0) + 1
            elif action == "hold":
                r = hold_mod.place(store, arg, "sim-supervisor", "simulated investigation", f"SIM-{at}", at,
                                   role="supervisor", policy=policy)
                out["holds_placed"] += 1
                for row in store.images.of_hold(r["hold"]):
                    held_now[row["id"]] = r["hold"]
                k = r["hold"] % 3
                if k:  # 1: released on day 3 (back on schedule), 2: on day 10 (deleted at once)
                    plan.append((at + (3 if k == 1 else 10) * DAY, "release", str(r["hold"])))
                    plan.sort(key=lambda p: p[0])
                else:  # runs to its end; its police bundle is written to disk
                    path = exports_dir / f"bundle-{r['hold']}.zip"
                    path.write_bytes(b"PK" + rng.randbytes(64))
                    register_export(store, "police bundle", path, f"hold:{r['hold']}", "sim-supervisor", at)
                    out["exports_written"] = out.get("exports_written", 0) + 1
            elif action == "release":
                hold_mod.release(store, arg, "sim-supervisor", "simulated case closed", at, role="supervisor",
                                 policy=policy)
                out["holds_released"] += 1
                for i, hid in list(held_now.items()):
                    if str(hid) == arg:
                        released.add(i)
                        del held_now[i]
            clock[0] = now
        before = store.images.ids()
        rep = sweeper.sweep()
        out["images_deleted"] += rep.images_deleted
        for k in OTHER_CLASSES + ("activity_purged",):
            out[k] = out.get(k, 0) + getattr(rep, k)
        out["keks_destroyed"] += len(rep.keks_destroyed)
        after = store.images.ids()
        for i in before - after:  # deleted by the sweep: never early
            age = now - alarm_at[i]
            floor = (policy.image_days - 1) * DAY if (i not in held_now or i in released) else (policy.hold_days - 1) * DAY
            if age < floor:
                out["premature_deletions"] += 1
            held_now.pop(i, None)
        out["hours"] += 1
        # The rules, checked from the outside.
        for held, limit, key in ((False, policy.image_days, "max_age_days_unheld"),
                                 (True, policy.hold_days, "max_age_days_held")):
            oldest = store.retention.oldest_alarm_ms(held)
            if oldest is not None:
                age = (now - oldest) / DAY
                out[key] = max(out[key], round(age, 3))
                if age > limit:
                    out["violations"] += 1
        class_violations += _check_classes(store, policy, now, ended_devices, backup_sets, ages, rule_days,
                                           deleted_export_files)
        rec = reconcile(store, now_ms=now, min_file_age_s=0)
        if not rec.clean:
            out["orphans"] += len(rec.files_without_rows) + len(rec.rows_without_files) + \
                len(rec.due_rows_without_files)
        # Nightly backup at 03:00: rows and blob bytes, as a backup tool would copy them.
        if (now // HOUR) % 24 == 3:
            out["backups"] += 1
            backup_sets.append(now)
            for r in store.images.key_records():
                blob = (store.data_dir / r["blob_path"]).read_bytes()
                backups.setdefault((r["id"], bytes(r["wrapped_key"])), (r["kek_day"], blob, r["id"]))
        # Everything gone from the live store must stay undecryptable from every backup.
        for (i, wrapped), (kek, blob, _) in list(backups.items()):
            if i in after:
                continue
            try:
                at_rest.unseal(store.keys, kek, wrapped, i, blob)  # it really decrypts
            except KeyStoreError:  # destroyed (KeyDestroyed) or absent: shredded for good
                del backups[(i, wrapped)]
                continue
            decryptable_ids.add(i)
        if h % 24 == 0:
            progress(f"day {h // 24:3d}: {len(after):4d} images stored, {len(held_now):3d} held, "
                     f"{out['images_deleted']:5d} deleted, {out['keks_destroyed']:3d} KEKs destroyed")
    out["decryptable_after_expiry"] = len(decryptable_ids)
    ages["image_unheld"], ages["image_held"] = out["max_age_days_unheld"], out["max_age_days_held"]
    out["classes"] = {c: {"rule_days": rule_days[c], "max_age_days": round(ages[c], 3)} for c in rule_days}
    out["class_violations"] = class_violations
    out["violations"] += out["orphans"] + out["premature_deletions"] + out["decryptable_after_expiry"] + class_violations
    from gateway.governance import audit
    out["audit_ok"] = audit.verify(store).ok
    if not out["audit_ok"]:
        out["violations"] += 1
    return out


def _check_classes(store, policy, now, ended_devices, backup_sets, ages, rule_days, deleted_export_files) -> int:
    """The oldest item of each class other than images, against its rule: violations found this hour."""
    while backup_sets and backup_sets[0] <= now - policy.backup_days * DAY:
        backup_sets.pop(0)  # the backup tool's rotation, as OPERATING.md tells the operator to set it
    oldest = {  # the start of the clock of the oldest item still kept, per class
        "customer_identity": store.retention.oldest_identity_end_ms(),
        "alarm_note": store.retention.oldest_note_ms(),
        "hold_record": store.retention.oldest_hold_end_ms(),
        "export": store.exports.oldest_live_ms(),
        "audit": store.audit.oldest_at_ms(),
        "backup": backup_sets[0] if backup_sets else None,
    }
    # The activity log: from the end for customers who left, from each record for the ownerless camera.
    candidates = []
    for dev in ended_devices:
        ended = store.retention.relationship_end_of(dev)
        if ended is not None and store.retention.activity_count([dev]):
            candidates.append(ended)
    unowned = store.retention.oldest_activity_ms(store.retention.devices_without_customer())
    if unowned is not None:
        candidates.append(unowned)
    oldest["activity"] = min(candidates) if candidates else None
    found = 0
    for cls, since in oldest.items():
        if since is None:
            continue
        age = (now - since) / DAY
        ages[cls] = max(ages[cls], age)
        if age > rule_days[cls]:
            found += 1
    for e in store.exports.list():
        if e["deleted_at_ms"] is not None and Path(e["path"]).exists():
            found += 1  # marked deleted, still on disk
    return found
