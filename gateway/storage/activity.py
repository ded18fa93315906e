"""The activity log: alarms (their captures, how each was handled) and events (arm/disarm, technical, ...).

- `Alarms`: one row per (device, alarm id), noted by the first chunk or event that names it;
  `alarm_captures` links an alarm to captures stored under another alarm id (the hold window
  before it); `alarm_handling` records how an operator acknowledged and closed it.
- `Events`: one row per activity event, stored once per `event_id` (PROTOCOL section 6).
"""

from __future__ import annotations

import json

from gateway.storage.sqldb import Database


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


class Alarms:
    def __init__(self, db: Database):
        self.db = db

    def note(self, device: str, alarm_id: str, at_ms: int, code: str | None = None, t: int | None = None) -> dict:
        """The alarm's row, created if new (received at `at_ms`); a code or time fills in what was unknown."""
        self.db.execute("INSERT INTO alarms (device, alarm_id, code, t, received_at_ms) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (device, alarm_id) DO UPDATE SET code = coalesce(excluded.code, alarms.code), "
                        "t = coalesce(excluded.t, alarms.t)", (device, alarm_id, code, t, at_ms))
        return dict(self.db.execute("SELECT * FROM alarms WHERE device = ? AND alarm_id = ?",
                                    (device, alarm_id)).fetchone())

    def link_capture(self, device: str, alarm_id: str, capture_id: str) -> None:
        self.db.execute("INSERT INTO alarm_captures (device, alarm_id, capture_id) VALUES (?, ?, ?) "
                        "ON CONFLICT (device, alarm_id, capture_id) DO NOTHING", (device, alarm_id, capture_id))

    def get(self, device: str, alarm_id: str) -> dict | None:
        """The alarm's row (code, device time `t`, `received_at_ms`), or None."""
        row = self.db.execute("SELECT * FROM alarms WHERE device = ? AND alarm_id = ?", (device, alarm_id)).fetchone()
        return None if row is None else dict(row)

    def received_at(self, device: str, alarm_id: str) -> int | None:
        """When the gateway first heard of the alarm (epoch ms): where its images' retention counts from."""
        row = self.db.execute("SELECT received_at_ms FROM alarms WHERE device = ? AND alarm_id = ?",
                              (device, alarm_id)).fetchone()
        return None if row is None else row[0]

    def list(self, device: str | None = None) -> list[dict]:
        """Alarms in the order received, each with its captures and when they were first/last stored."""
        sql, args = "SELECT * FROM alarms", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        out = []
        for r in self.db.execute(sql + " ORDER BY received_at_ms", args).fetchall():
            d = dict(r)
            d["captures"] = [x[0] for x in self.db.execute(
                "SELECT capture_id FROM alarm_captures WHERE device = ? AND alarm_id = ? "
                "UNION SELECT capture_id FROM captures WHERE device = ? AND alarm_id = ?",
                (d["device"], d["alarm_id"], d["device"], d["alarm_id"]))]
            stored = self.db.execute(
                "SELECT min(stored_at_ms), max(stored_at_ms), count(*) FROM captures WHERE device = ? "
                "AND alarm_id = ? AND status = 'stored'", (d["device"], d["alarm_id"])).fetchone()
            d["first_stored_at_ms"], d["last_stored_at_ms"], d["captures_stored"] = stored
            out.append(d)
        return out

    def first(self, device: str) -> dict | None:
        """The device's earliest alarm: alarm_id, code, t, received_at_ms, captures, first/last_stored_at_ms."""
        alarms = self.list(device)
        return alarms[0] if alarms else None

    def of_devices(self, device_ids: list[str]) -> list[dict]:
        if not device_ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT * FROM alarms WHERE device IN ({_in(device_ids)}) ORDER BY received_at_ms", device_ids)]

    # The alarm queue and handling ----------------------------------------------------------
    def queue(self, limit: int = 200) -> list[dict]:
        """Alarms not closed first, newest first: site, handling state and outcome, photos and held photos."""
        return [dict(r) for r in self.db.execute(
            "SELECT a.device, a.alarm_id, a.code, a.t, a.received_at_ms, d.site, "
            "coalesce(h.state, 'new') AS state, h.outcome, "
            "(SELECT count(*) FROM images i WHERE i.device = a.device AND i.alarm_id = a.alarm_id) AS photos, "
            "(SELECT count(*) FROM images i WHERE i.device = a.device AND i.alarm_id = a.alarm_id "
            " AND i.hold_id IS NOT NULL) AS held "
            "FROM alarms a LEFT JOIN devices d ON d.id = a.device "
            "LEFT JOIN alarm_handling h ON h.device = a.device AND h.alarm_id = a.alarm_id "
            "ORDER BY CASE coalesce(h.state, 'new') WHEN 'closed' THEN 1 ELSE 0 END, a.received_at_ms DESC "
            "LIMIT ?", (limit,)).fetchall()]

    def get_with_site(self, device: str, alarm_id: str) -> dict | None:
        """The alarm's row and its device's site, or None."""
        row = self.db.execute("SELECT a.*, d.site FROM alarms a LEFT JOIN devices d ON d.id = a.device "
                              "WHERE a.device = ? AND a.alarm_id = ?", (device, alarm_id)).fetchone()
        return dict(row) if row else None

    def handling(self, device: str, alarm_id: str) -> dict:
        """How the alarm was handled: its `alarm_handling` row, or {"state": "new"}."""
        row = self.db.execute("SELECT * FROM alarm_handling WHERE device = ? AND alarm_id = ?",
                              (device, alarm_id)).fetchone()
        return dict(row) if row else {"state": "new"}

    def acknowledge(self, device: str, alarm_id: str, user: str, at_ms: int) -> None:
        self.db.execute("INSERT INTO alarm_handling (device, alarm_id, state, acknowledged_by, acknowledged_at_ms) "
                        "VALUES (?, ?, 'acknowledged', ?, ?)", (device, alarm_id, user, at_ms))

    def close(self, device: str, alarm_id: str, user: str, outcome: str, note: str, at_ms: int) -> None:
        """Closed with an outcome (acknowledged by the same user if nobody had)."""
        self.db.execute(
            "INSERT INTO alarm_handling (device, alarm_id, state, acknowledged_by, acknowledged_at_ms, outcome, note, "
            "closed_by, closed_at_ms) VALUES (?, ?, 'closed', ?, ?, ?, ?, ?, ?) ON CONFLICT (device, alarm_id) DO "
            "UPDATE SET state = 'closed', outcome = excluded.outcome, note = excluded.note, "
            "closed_by = excluded.closed_by, closed_at_ms = excluded.closed_at_ms",
            (device, alarm_id, user, at_ms, outcome, note, user, at_ms))


class Events:
    def __init__(self, db: Database):
        self.db = db

    def add(self, device: str, event: dict, at_ms: int, clock_unset: bool) -> int | None:
        """Store one activity event; its row id, or None if its `event_id` is stored already.

        A device seals an event again when its first envelope may have gone stale on the way
        (PROTOCOL section 6); when that first copy did arrive, the second is the same event.
        Events without an `event_id` (older firmware, the gateway's own) are always stored."""
        slot = event.get("slot")
        t = event.get("t")
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 64:
            event_id = None
        row = self.db.execute(
            "INSERT INTO events (device, alarm_id, kind, code, slot, t, clock_unset, received_at_ms, json, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, event_id) DO NOTHING RETURNING id",
            (device, _str_or_none(event.get("alarm_id")), str(event["kind"]), _str_or_none(event.get("code")),
             slot if isinstance(slot, int) and not isinstance(slot, bool) else None,
             t if isinstance(t, int) and not isinstance(t, bool) else None,
             int(clock_unset), at_ms, json.dumps(event, separators=(",", ":"), sort_keys=True),
             event_id)).fetchone()
        return row[0] if row else None

    def list(self, device: str | None = None) -> list[dict]:
        """Events in the order stored, each with its decoded `event`."""
        sql, args = "SELECT * FROM events", ()
        if device is not None:
            sql, args = sql + " WHERE device = ?", (device,)
        return [_decoded(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def of_devices(self, device_ids: list[str]) -> list[dict]:
        if not device_ids:
            return []
        return [_decoded(r) for r in self.db.execute(
            f"SELECT * FROM events WHERE device IN ({_in(device_ids)}) ORDER BY id", device_ids)]

    def activity(self, site: str | None, from_ms: int | None, to_ms: int | None, limit: int = 500) -> list[dict]:
        """Events with their device's site, newest first, optionally of one site and time range (received)."""
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
        return [dict(r) for r in self.db.execute(sql + " ORDER BY e.received_at_ms DESC, e.id DESC LIMIT ?",
                                                 (*args, limit))]


def _decoded(row) -> dict:
    d = dict(row)
    d["event"] = json.loads(d.pop("json"))
    return d


def _str_or_none(v) -> str | None:
    return None if v is None else str(v)[:200]
