"""Police hold: keep an alarm's images up to 30 days after the alarm for an investigation, audited.

Placing a hold needs the supervisor role, a reason and a case reference. It re-wraps each
image's data key from the KEK of its 7-day deletion day to a KEK of the hold's own for the
day `hold_days` (30) after the alarm (named `DAY/hold-N`), and moves `delete_at_ms` there:
never beyond. The hold's own KEK is destroyed on that day by the sweeper, or as soon as a
release has moved or deleted all its images: a late release leaves no live key for the
deleted images in any backup. The blob file is not
touched (it stays under `blobs/<first deletion day>/`; the row's `kek_day` is authoritative),
so placing and releasing are one row update each, atomic with their audit record.

Releasing puts each image back on the 7-day schedule: re-wrapped under that day's KEK if
the day is still ahead, otherwise deleted at once (files first, then rows, as the sweeper).

Handing over to the police (`hand_over`) records who at the police asked for the material and
under which reference. What it does to the hold is counsel's choice in `retention.toml`
(`handover`): `end` (the default, after SOS Alarm's policy: material is kept at most until it
is handed over) releases the hold; `shorten` keeps the images at most `handover_days` after the
handover; `keep` lets the hold run to its day.

Who may do it. If the `users` table has accounts (`vericam users add`), the role comes from
there and `--role` is refused. Until accounts exist, the caller must state `--role supervisor`;
the hold records `role_source = 'asserted (no user accounts)'` so an auditor can see the role
was claimed, not checked.
"""

from __future__ import annotations

import re

from gateway.governance import audit
from gateway.governance.retention import (RetentionConfigError, RetentionPolicy, alarm_ms, delete_images,
                                          deletion_day, destroy_kek_if_spent)
from gateway.storage.captures import due_at_ms
from gateway.storage.store import Store

HOLD_ROLE = "supervisor"
ASSERTED = "asserted (no user accounts)"
IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")


class HoldError(Exception):
    pass


def check_role(store: Store, user: str, asserted_role: str | None, needed: str = HOLD_ROLE) -> str:
    """Returns the role source, or raises HoldError. See the module docstring."""
    if not user:
        raise HoldError("say who you are: --by USER")
    if store.users.count():
        if asserted_role is not None:
            raise HoldError("user accounts exist: the role comes from the users table, drop --role")
        account = store.users.get(user)
        if account is None or account["disabled"]:
            raise HoldError(f"{user} is not an active user of this gateway")
        if account["role"] != needed:
            raise HoldError(f"{user} has the role {account['role']}; a police hold needs the {needed} role")
        return "users table"
    if asserted_role != needed:
        raise HoldError(f"no user accounts exist yet: state --role {needed} (recorded as asserted, "
                        "not checked), or create accounts with `vericam users add`")
    return ASSERTED


def _targets(store: Store, target: str) -> list[dict]:
    """Image id, ALARM_ID, or DEVICE/ALARM_ID -> image rows."""
    if IMAGE_ID.match(target):
        rows = store.images.by_id(target)
        if rows:
            return rows
    if "/" in target:
        device, alarm = target.split("/", 1)
        return store.images.of_alarm(device, alarm)
    rows = store.images.of_alarm(None, target)
    if len({r["device"] for r in rows}) > 1:
        raise HoldError(f"alarm id {target} is used by several devices: name it as DEVICE/ALARM_ID")
    return rows


def policy_of(store: Store, policy: RetentionPolicy | None) -> RetentionPolicy:
    """The rules given, else the ones configured for the store's data directory (`retention.toml`):
    a caller that passes none (the console) still gets counsel's lower `hold_days`, never the defaults."""
    if policy is not None:
        return policy
    try:
        return RetentionPolicy.load(store.data_dir)
    except RetentionConfigError as exc:
        raise HoldError(str(exc)) from None


def _alarm_time(store: Store, row) -> int:
    return alarm_ms(store, row["device"], row["alarm_id"])


def place(store: Store, target: str, by: str, reason: str, case: str, now_ms: int,
          role: str | None = None, policy: RetentionPolicy | None = None) -> dict:
    policy = policy_of(store, policy)
    reason, case = (reason or "").strip(), (case or "").strip()
    if not reason:
        raise HoldError("a police hold needs a reason (--reason)")
    if not case:
        raise HoldError("a police hold needs the police case reference (--case)")
    if len(reason) > 500 or len(case) > 100:
        raise HoldError("reason is limited to 500 characters and the case reference to 100")
    role_source = check_role(store, by, role)
    with store.transaction():
        rows = _targets(store, target)
        if not rows:
            raise HoldError(f"no stored image or alarm {target}: already deleted, or never stored")
        held = [r for r in rows if r["hold_id"] is not None]
        if held:
            raise HoldError(f"{len(held)} of the images are already under hold #{held[0]['hold_id']}: "
                            "release it first or add this case to it")
        hold_id = store.holds.create(case, reason, by, role_source, now_ms, target)
        until = {}
        for r in rows:
            day = deletion_day(_alarm_time(store, r), policy.hold_days)
            if due_at_ms(day) <= now_ms:
                raise HoldError(f"image {r['id']} is past the legal maximum of {policy.hold_days} days "
                                "after its alarm: it cannot be held")
            store.images.rekey(r, f"{day}/hold-{hold_id}", hold_id)
            until[r["id"]] = day
        audit.append(store, by, "place hold", reason, at_ms=now_ms, subject=f"hold:{hold_id}",
                     detail={"case": case, "target": target, "role_source": role_source,
                             "images": sorted(until), "delete_on": sorted(set(until.values()))})
    return {"hold": hold_id, "case": case, "images": len(until), "delete_on": sorted(set(until.values())),
            "role_source": role_source}


def release(store: Store, hold: str, by: str, reason: str, now_ms: int, role: str | None = None,
            policy: RetentionPolicy | None = None) -> dict:
    """Release a hold (by hold id, image or alarm). Overdue images are deleted at once."""
    policy = policy_of(store, policy)
    reason = (reason or "").strip()
    if not reason:
        raise HoldError("releasing a hold needs a reason (--reason)")
    role_source = check_role(store, by, role)
    if hold.isdigit():
        hold_id = int(hold)
    else:
        ids = {r["hold_id"] for r in _targets(store, hold) if r["hold_id"] is not None}
        if len(ids) != 1:
            raise HoldError(f"{hold} is under {len(ids)} holds: name the hold by its number")
        hold_id = ids.pop()
    h = store.holds.get(hold_id)
    if h is None or h["released_at_ms"] is not None:
        raise HoldError(f"hold #{hold_id} does not exist or was already released")
    rewrapped, overdue = [], []
    with store.transaction():
        rows = store.images.of_hold(hold_id)
        for r in rows:
            day = deletion_day(_alarm_time(store, r), policy.image_days)
            if due_at_ms(day) <= now_ms or store.keys.is_destroyed(day):
                # Due already: back on schedule means now. The key stays under the hold day's KEK
                # until the row is gone a moment later (or the next sweep, after a crash).
                store.images.release_overdue(r["id"], due_at_ms(day))
                overdue.append(r["id"])
            else:
                store.images.rekey(r, day, None)
                rewrapped.append(r["id"])
        store.holds.mark_released(hold_id, now_ms, by, reason)
        audit.append(store, by, "release hold", reason, at_ms=now_ms, subject=f"hold:{hold_id}",
                     detail={"case": h["case_ref"], "role_source": role_source, "back_on_schedule": rewrapped,
                             "deleted_now": overdue})
    hold_keks = {r["kek_day"] for r in rows if "/hold-" in r["kek_day"]}
    with store.exclusive():
        if overdue:
            delete_images(store, store.retention.images(overdue), by, f"hold #{hold_id} released after the "
                          f"image's {policy.image_days}-day deletion day", now_ms)
        for kek in sorted(hold_keks):  # one still in use (a crash left due rows) waits for the sweeper
            destroy_kek_if_spent(store, kek, by, f"crypto-shredding: hold #{hold_id} released, none of its "
                                 "images still uses the hold's key", now_ms)
    return {"hold": hold_id, "case": h["case_ref"], "back_on_schedule": len(rewrapped), "deleted_now": len(overdue)}


def hand_over(store: Store, hold: str, by: str, requester: str, reference: str, now_ms: int,
              role: str | None = None, policy: RetentionPolicy | None = None) -> dict:
    """Record that a hold's material was handed to the police: who there asked for it and under which
    reference (audited). Then the configured rule (`handover` in retention.toml) applies: `end`
    releases the hold (its images go back on the 7-day schedule, deleted at once if past it),
    `shorten` keeps them at most `handover_days` after the handover, `keep` changes nothing."""
    policy = policy_of(store, policy)
    requester, reference = (requester or "").strip(), (reference or "").strip()
    if not requester:
        raise HoldError("say who at the police asked for the material (--requested-by)")
    if not reference:
        raise HoldError("give the police's reference for the request (--police-ref)")
    if len(requester) > 200 or len(reference) > 100:
        raise HoldError("the requester is limited to 200 characters and the police reference to 100")
    role_source = check_role(store, by, role)
    hold_id = _hold_id(store, hold)
    h = store.holds.get(hold_id)
    if h is None or h["released_at_ms"] is not None or h["ended_at_ms"] is not None:
        raise HoldError(f"hold #{hold_id} does not exist or has ended: nothing is held to hand over")
    if h["handed_over_at_ms"] is not None:
        raise HoldError(f"hold #{hold_id} was already handed over (police reference {h['police_reference']})")
    with store.transaction():
        store.holds.mark_handed_over(hold_id, now_ms, requester, reference)
        audit.append(store, by, "hand over to police", f"material of police case {h['case_ref']} handed over at "
                     f"the request of {requester}", at_ms=now_ms, subject=f"hold:{hold_id}",
                     detail={"case": h["case_ref"], "requested_by": requester, "police_reference": reference,
                             "rule": policy.handover, "role_source": role_source})
    out = {"hold": hold_id, "case": h["case_ref"], "rule": policy.handover, "back_on_schedule": 0, "deleted_now": 0,
           "shortened": 0}
    if policy.handover == "end":
        r = release(store, str(hold_id), by, f"handed over to the police (reference {reference}): the hold ends",
                    now_ms, role=role, policy=policy)
        out.update(back_on_schedule=r["back_on_schedule"], deleted_now=r["deleted_now"])
    elif policy.handover == "shorten":
        out.update(_shorten(store, hold_id, by, reference, now_ms, policy))
    return out


def _shorten(store: Store, hold_id: int, by: str, reference: str, now_ms: int, policy: RetentionPolicy) -> dict:
    """Keep a handed-over hold's images at most `handover_days` after the handover (never longer than
    they were held already); deleted at once when that day has begun."""
    day = deletion_day(now_ms, policy.handover_days)
    moved, overdue, old_keks = [], [], set()
    with store.transaction():
        for r in store.images.of_hold(hold_id):
            if r["kek_day"].split("/")[0] <= day:
                continue
            old_keks.add(r["kek_day"])
            if due_at_ms(day) <= now_ms:
                overdue.append(r["id"])
            else:
                store.images.rekey(r, f"{day}/hold-{hold_id}", hold_id)
                moved.append(r["id"])
        audit.append(store, by, "shorten hold", f"handed over to the police (reference {reference}): kept at most "
                     f"{policy.handover_days} days after the handover", at_ms=now_ms, subject=f"hold:{hold_id}",
                     detail={"delete_on": day, "moved": moved, "deleted_now": overdue})
    with store.exclusive():
        if overdue:
            delete_images(store, store.retention.images(overdue), by, f"hold #{hold_id} handed over to the police: "
                          "its rule keeps nothing after the handover day", now_ms)
        for kek in sorted(old_keks):
            destroy_kek_if_spent(store, kek, by, f"crypto-shredding: hold #{hold_id} shortened on handover, none of "
                                 "its images still uses this key", now_ms)
    return {"shortened": len(moved), "deleted_now": len(overdue)}


def _hold_id(store: Store, hold: str) -> int:
    if hold.isdigit():
        return int(hold)
    ids = {r["hold_id"] for r in _targets(store, hold) if r["hold_id"] is not None}
    if len(ids) != 1:
        raise HoldError(f"{hold} is under {len(ids)} holds: name the hold by its number")
    return ids.pop()


def list_holds(store: Store, active_only: bool = False) -> list[dict]:
    return store.holds.list(active_only)


__all__ = ["HoldError", "place", "release", "hand_over", "check_role", "list_holds", "policy_of"]
